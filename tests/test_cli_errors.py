"""One error style for every ``rgbpose`` command, --debug/--version, safe checkpoint refusal,
disk-full reporting in the atomic writers and the cleanup of abandoned temp files."""

import errno
import os
import pickle
import subprocess
import sys
import time
import tomllib
import types
from pathlib import Path

import numpy as np
import pytest
import torch

import rgbpose
from rgbpose.cli import COMMANDS, main
from rgbpose.io import (
    BadSampleError,
    NoSpaceError,
    atomic_path,
    atomic_temp_destination,
    describe_error,
    dump_pickle,
    remove_stale_temps,
    write_text_atomic,
)

REPO = Path(__file__).resolve().parents[1]
POSE_CFG = REPO / "config/models/demo_pose_only.yaml"
RGBPOSE_CFG = REPO / "config/models/demo_rgbpose_conv3d.yaml"
TORCH_FULL = (
    "[enforce fail at inline_container.cc:659] . PytorchStreamWriter failed writing file "
    "data/0: file write failed"
)


def run_main(capsys, argv):
    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


# ----------------------------------------------------------------------------- version / entry
def test_version_agrees_with_pyproject_and_metadata(capsys, monkeypatch):
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert rgbpose.__version__ == project["version"] == "0.1.0"
    rc, out, _ = run_main(capsys, ["--version"])
    assert rc == 0 and out == f"rgbpose {project['version']}\n"

    from importlib import metadata

    monkeypatch.setattr(metadata, "version", lambda name: "7.7.7")
    assert run_main(capsys, ["--version"])[:2] == (0, "rgbpose 7.7.7\n")

    def not_installed(name):
        raise metadata.PackageNotFoundError(name)

    # run from a source tree (PYTHONPATH=src): the package's own __version__
    monkeypatch.setattr(metadata, "version", not_installed)
    monkeypatch.setattr(rgbpose, "__version__", "9.9.9")
    assert run_main(capsys, ["--version"])[:2] == (0, "rgbpose 9.9.9\n")


def _entry_points():
    py = [sys.executable]
    points = [py + ["-m", "rgbpose"], py + ["-m", "rgbpose.cli"]]
    script = Path(sys.executable).with_name("rgbpose")
    if script.exists():
        points.append([str(script)])
    return points


def test_module_and_script_entry_points_behave_alike(tmp_path):
    missing = tmp_path / "missing.csv"
    env = {k: v for k, v in os.environ.items() if k != "RGBPOSE_DEBUG"}
    for entry in _entry_points():
        res = subprocess.run(entry + ["--version"], capture_output=True, text=True, env=env)
        assert (res.returncode, res.stdout) == (0, f"rgbpose {rgbpose.__version__}\n"), entry
        # plot-curves leaves a missing file to the central handler: one line, no traceback
        argv = ["plot-curves", str(missing), "-o", str(tmp_path / "c.png")]
        res = subprocess.run(entry + argv, capture_output=True, text=True, env=env)
        assert res.returncode == 1, entry
        assert res.stderr == f"rgbpose plot-curves: error: {missing}: No such file or directory\n"
    # --debug before or after the command name, or RGBPOSE_DEBUG=1: the traceback first
    entry = _entry_points()[1]
    for extra, flags in (({}, ["--debug", *argv]), ({}, [argv[0], "--debug", *argv[1:]]),
                         ({"RGBPOSE_DEBUG": "1"}, argv)):  # fmt: skip
        res = subprocess.run(entry + flags, capture_output=True, text=True, env={**env, **extra})
        assert res.returncode == 1
        assert res.stderr.startswith("Traceback (most recent call last):")
        assert "FileNotFoundError" in res.stderr
        assert res.stderr.splitlines()[-1] == (
            f"rgbpose plot-curves: error: {missing}: No such file or directory"
        )
    # a command that reports its own errors sees the flag too under ``python -m rgbpose.cli``
    # (which runs cli.py as __main__, a second copy of the module)
    flags = ["--debug", "denoise", str(tmp_path / "in.pkl"), "-o", str(tmp_path / "out.pkl")]
    res = subprocess.run(entry + flags, capture_output=True, text=True, env=env)
    assert res.returncode == 1 and res.stderr.startswith("Traceback (most recent call last):")
    last = f"rgbpose denoise: error: {tmp_path / 'in.pkl'}: No such file or directory"
    assert res.stderr.splitlines()[-1] == last
    res = subprocess.run(entry + flags[1:], capture_output=True, text=True, env=env)
    assert (res.returncode, res.stderr) == (1, last + "\n")


def test_usage_and_unknown_options(capsys):
    rc, out, _ = run_main(capsys, ["--help"])
    assert rc == 0 and out.startswith("usage: rgbpose [--debug] [--version] COMMAND [ARGS...]")
    assert all(f"\n  {name:<18} " in out for name in COMMANDS)
    rc, _, err = run_main(capsys, ["--bogus", "train"])
    assert rc == 2 and err.startswith("rgbpose: error: unknown option '--bogus'")
    rc, _, err = run_main(capsys, ["trian"])
    assert rc == 2 and err.startswith("rgbpose: unknown command 'trian'")
    # argparse usage errors keep exit code 2 and argparse's own message
    with pytest.raises(SystemExit) as info:
        main(["fuse", "--debug"])
    assert info.value.code == 2
    assert "the following arguments are required: --scores" in capsys.readouterr().err


# ----------------------------------------------------------------------------- central handler
@pytest.fixture()
def fake_command(monkeypatch):
    """``rgbpose boom ARGS``: a command whose cli() records its argv and raises ``raise_``."""
    module = types.ModuleType("rgbpose_fake_command")
    module.calls, module.raise_, module.rc = [], None, 0

    def fake_cli(argv):
        module.calls.append(list(argv))
        if module.raise_ is not None:
            raise module.raise_
        return module.rc

    module.cli = fake_cli
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setitem(COMMANDS, "boom", (module.__name__, "test command"))
    monkeypatch.delenv("RGBPOSE_DEBUG", raising=False)
    return module


@pytest.mark.parametrize(
    ("exc", "line"),
    [
        (BadSampleError("/d/x.pkl", "refused to unpickle: forbidden global os.system"),
         "rgbpose boom: error: /d/x.pkl: refused to unpickle: forbidden global os.system"),
        (BadSampleError("", "no annotations given"), "rgbpose boom: error: no annotations given"),
        (FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), "/d/ann.pkl"),
         "rgbpose boom: error: /d/ann.pkl: No such file or directory"),
        (PermissionError(errno.EACCES, os.strerror(errno.EACCES), "/d/out"),
         "rgbpose boom: error: /d/out: Permission denied"),
        (IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), "/d"),
         "rgbpose boom: error: /d: Is a directory"),
        (OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/d/best.pt"),
         "rgbpose boom: error: no space left writing /d/best.pt"),
        (OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)),
         "rgbpose boom: error: no space left on device"),
        (NoSpaceError("/d/best.pt"), "rgbpose boom: error: no space left writing /d/best.pt"),
        (ValueError("--set expects key=value, got 'x'"),
         "rgbpose boom: error: --set expects key=value, got 'x'"),
        (KeyError("label"),
         "rgbpose boom: error: KeyError: 'label' (run with --debug for the traceback)"),
        (RuntimeError("CUDA out of memory"),
         "rgbpose boom: error: RuntimeError: CUDA out of memory (run with --debug for the "
         "traceback)"),
    ],
)  # fmt: skip
def test_errors_become_one_line_exit_1(fake_command, capsys, exc, line):
    fake_command.raise_ = exc
    rc, out, err = run_main(capsys, ["boom", "a"])
    assert (rc, out, err) == (1, "", line + "\n")
    assert fake_command.calls == [["a"]]


def test_debug_flag_positions_and_env(fake_command, capsys, monkeypatch):
    fake_command.raise_ = KeyError("label")
    for argv in (["--debug", "boom", "x"], ["boom", "--debug", "x"], ["boom", "x", "--debug"]):
        rc, _, err = run_main(capsys, argv)
        assert rc == 1 and err.startswith("Traceback (most recent call last):")
        assert err.endswith("KeyError: 'label'\nrgbpose boom: error: KeyError: 'label'\n")
    assert fake_command.calls == [["x"]] * 3  # the command never sees --debug
    # after "--", --debug is an argument of the command, and the flag does not stick
    rc, _, err = run_main(capsys, ["boom", "--", "--debug"])
    assert fake_command.calls[-1] == ["--", "--debug"]
    assert "Traceback" not in err and err.endswith("(run with --debug for the traceback)\n")
    monkeypatch.setenv("RGBPOSE_DEBUG", "1")
    rc, _, err = run_main(capsys, ["boom"])
    assert rc == 1 and err.startswith("Traceback") and "(run with --debug" not in err


def test_interrupt_exit_codes_and_return_values(fake_command, capsys):
    fake_command.raise_ = KeyboardInterrupt()
    assert run_main(capsys, ["boom"]) == (130, "", "rgbpose boom: interrupted\n")
    fake_command.raise_ = None
    fake_command.rc = 3  # e.g. train stopped by its time budget
    assert run_main(capsys, ["boom"])[0] == 3
    fake_command.raise_ = SystemExit(2)  # argparse: passes through untouched
    with pytest.raises(SystemExit):
        main(["boom"])


# ----------------------------------------------------------------------------- every command
def _bad_inputs(d: Path) -> dict[str, list[tuple[list[str], str]]]:
    """For every command: argv with a missing file / corrupt pickle / bad config, and the start
    of the stderr line it must print."""
    m = d / "missing"
    corrupt = d / "corrupt.pkl"
    bad_cfg = d / "bad.yaml"
    cfg = str(POSE_CFG)
    train = ["--split", "xsub", "--work-dir", str(d / "w"), "--out", str(d / "b.pt")]
    test = ["--split", "xsub_val", "--out", str(d / "s.pkl")]
    ann = ["-o", str(d / "a.pkl"), "--dataset", "demo", "--benchmarks", "xsub"]
    store = ["--video-dir", str(d), "--out-dir", str(d / "fs"), "--manifest", str(d / "fs.tsv")]
    return {
        "synthesize": [(["-o", str(d / "o"), "--config", f"{m}.yaml"],
                        f"{m}.yaml: No such file or directory")],
        "contact-sheet": [([f"{m}.avi", "-o", str(d / "s.png")], f"{m}.avi: ")],
        "scan-raw": [(["--video-dir", str(m), "--out", str(d / "s.tsv")], f"{m}: ")],
        "compress": [(["--names-file", f"{m}.txt", str(d), "--out-dir", str(d / "v"),
                       "--manifest", str(d / "m.tsv")], f"{m}.txt: No such file or directory")],
        "extract-poses": [(["--backend", "kinect", "--names-file", f"{m}.txt", str(d), "-o",
                            str(d / "p.pkl")], f"{m}.txt: No such file or directory")],
        "denoise": [([f"{m}.pkl", "-o", str(d / "d.pkl")], f"{m}.pkl: No such file or directory"),
                    ([str(corrupt), "-o", str(d / "d.pkl")], f"{corrupt}: refused to unpickle")],
        "build-annotations": [([f"{m}.pkl", *ann], f"{m}.pkl: No such file or directory"),
                              ([str(corrupt), *ann], f"{corrupt}: refused to unpickle")],
        "frame-store": [(["--ann", f"{m}.pkl", *store], f"{m}.pkl: No such file or directory"),
                        (["--ann", str(corrupt), *store], f"{corrupt}: refused to unpickle")],
        "depth-store": [(["--names-file", f"{m}.txt", "--depth-dir", str(m), "--out-dir",
                          str(d / "ds"), "--manifest", str(d / "ds.tsv")],
                         f"{m}.txt: No such file or directory")],
        "train": [(["--config", str(bad_cfg), "--ann", f"{m}.pkl", *train],
                   f"{bad_cfg}: unknown key 'optim.lrr'"),
                  (["--config", cfg, "--ann", f"{m}.pkl", *train],
                   f"{m}.pkl: No such file or directory"),
                  (["--config", cfg, "--ann", str(corrupt), *train],
                   f"{corrupt}: refused to unpickle")],
        "merge": [(["--rgb", f"{m}.pt", "--pose", f"{m}.pt", "--config", str(RGBPOSE_CFG),
                    "-o", str(d / "m.pt")], f"{m}.pt: No such file or directory")],
        "import-pyskl": [([f"{m}.pth", "--model", "pose_only", "--num-classes", "60", "-o",
                           str(d / "i.pt")], f"{m}.pth: No such file or directory")],
        "test": [(["--config", str(bad_cfg), "--checkpoint", f"{m}.pt", "--ann", f"{m}.pkl",
                   *test], f"{bad_cfg}: unknown key 'optim.lrr'"),
                 (["--config", cfg, "--checkpoint", f"{m}.pt", "--ann", f"{m}.pkl", *test],
                  f"{m}.pt: No such file or directory"),
                 (["--config", cfg, "--checkpoint", str(corrupt), "--ann", f"{m}.pkl", *test],
                  f"{corrupt}: not a")],
        "fuse": [(["--scores", f"pose_only={m}.pkl", "-o", str(d / "f.txt")],
                  f"{m}.pkl: No such file or directory"),
                 (["--scores", f"pose_only={corrupt}", "-o", str(d / "f.txt")],
                  f"{corrupt}: refused to unpickle")],
        "predict": [([f"{m}.avi", "--checkpoint", f"{m}.pt"], f"{m}.avi: no such video file")],
        "plot-curves": [([f"{m}.csv", "-o", str(d / "c.png")],
                         f"{m}.csv: No such file or directory")],
    }  # fmt: skip


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_every_command_reports_bad_input_without_traceback(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("RGBPOSE_DEBUG", raising=False)
    (tmp_path / "corrupt.pkl").write_bytes(pickle.dumps({"a": 1})[:-3])
    (tmp_path / "bad.yaml").write_text((POSE_CFG.read_text()).replace("optim:", "optim:\n  lrr: 1"))
    cases = _bad_inputs(tmp_path)
    assert set(cases) == set(COMMANDS), "add a bad-input case for every command"
    for name, runs in cases.items():
        for argv, start in runs:
            rc, _, err = run_main(capsys, [name, *argv])
            assert "Traceback" not in err, (name, err)
            assert rc == 1, (name, argv, err)
            lines = err.splitlines()
            assert lines and lines[-1].startswith(f"rgbpose {name}: error: {start}"), (name, err)
            assert "(run with --debug" not in err, (name, err)


# ----------------------------------------------------------------------------- checkpoints
class _Opaque:
    """A custom class: not something a plain-tensor checkpoint may hold."""


class _RunsCode:
    """Pickles as a call of os.system; torch.save only records the call, nothing runs."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("kind", ["custom_class", "os_system"])
def test_refused_checkpoint_never_suggests_disabling_the_check(tmp_path, capsys, kind):
    from rgbpose.engine.checkpoint import read_checkpoint_file

    marker = tmp_path / "ran"
    payload = _Opaque() if kind == "custom_class" else _RunsCode(marker)
    path = tmp_path / "evil.pt"
    torch.save({"model": {"w": torch.zeros(2)}, "meta": {"x": payload}}, path)
    refused = f"{__name__}._Opaque" if kind == "custom_class" else f"{os.system.__module__}.system"
    with pytest.raises(BadSampleError) as info:
        read_checkpoint_file(path)
    assert info.value.path == str(path)
    assert info.value.problem == (
        f"not a plain-tensor checkpoint: it contains Python objects that are not allowed "
        f"(global {refused}); rgbpose loads only tensors, numbers, strings and plain containers"
    )
    # the same through the command line
    rc, _, err = run_main(capsys, ["test", "--config", str(POSE_CFG), "--checkpoint", str(path),
                                   "--ann", str(tmp_path / "a.pkl"), "--split", "xsub_val",
                                   "--out", str(tmp_path / "s.pkl")])  # fmt: skip
    assert rc == 1
    assert err == f"rgbpose test: error: {path}: {info.value.problem}\n"
    for advice in ("weights_only=False", "weights_only` set to `False", "safe_globals", "trust"):
        assert advice not in err
    assert not marker.exists()


def test_other_checkpoint_failures_name_the_file(tmp_path):
    from rgbpose.engine.checkpoint import read_checkpoint_file

    ok = tmp_path / "ok.pt"
    torch.save({"model": {"w": torch.zeros(1000)}}, ok)
    (tmp_path / "trunc.pt").write_bytes(ok.read_bytes()[:600])
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "dir.pt").mkdir()
    expected = {
        "trunc.pt": "not a loadable checkpoint: PytorchStreamReader failed reading zip archive: "
        "failed finding central directory",
        "empty.pt": "not a loadable checkpoint: the file is empty or truncated",
        "dir.pt": "Is a directory",
        "missing.pt": "No such file or directory",
    }
    for name, problem in expected.items():
        with pytest.raises(BadSampleError) as info:
            read_checkpoint_file(tmp_path / name)
        assert (info.value.path, info.value.problem) == (str(tmp_path / name), problem)


# ----------------------------------------------------------------------------- disk full
def test_enospc_inside_atomic_path_names_destination(tmp_path):
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    dst = tmp_path / "sub" / "scores.pkl"
    with pytest.raises(NoSpaceError) as info:
        with atomic_path(dst) as tmp:
            tmp.write_bytes(b"partial")
            with open("/dev/full", "wb") as full:  # a real ENOSPC from the kernel
                full.write(b"x")
    exc = info.value
    assert str(exc) == describe_error(exc) == f"no space left writing {dst}"
    assert isinstance(exc, OSError) and exc.errno == errno.ENOSPC and exc.filename == str(dst)
    assert list((tmp_path / "sub").iterdir()) == []  # no temp file, no destination


@pytest.mark.parametrize(
    ("err", "tail"), [(errno.ENOSPC, ""), (errno.EDQUOT, " (disk quota exceeded)")]
)
def test_write_helpers_report_full_disk_not_temp_file(tmp_path, monkeypatch, err, tail):
    dst = tmp_path / "fusion.txt"

    def full_write(self, data):  # writes part of the data, then the disk is full
        with open(self, "wb") as f:
            f.write(data[:2])
        raise OSError(err, os.strerror(err), str(self))

    monkeypatch.setattr(Path, "write_bytes", full_write)
    with pytest.raises(NoSpaceError) as info:
        write_text_atomic(dst, "some text")
    assert str(info.value) == f"no space left writing {dst}{tail}"
    assert info.value.errno == err and info.value.__cause__.filename != str(dst)
    assert list(tmp_path.iterdir()) == []
    back = pickle.loads(pickle.dumps(info.value))  # survives a worker process boundary
    assert (type(back), str(back), back.errno) == (NoSpaceError, str(info.value), err)


def test_torch_save_writer_failure_is_no_space(tmp_path, monkeypatch):
    from rgbpose.engine import checkpoint

    def failing_save(obj, f, *args, **kwargs):
        Path(f).write_bytes(b"PK\x03\x04 partial zip")
        raise RuntimeError(TORCH_FULL)

    monkeypatch.setattr(torch, "save", failing_save)
    dst = tmp_path / "work" / "last.pt"
    with pytest.raises(NoSpaceError, match=r"^no space left writing .*work/last\.pt$") as info:
        checkpoint.save_checkpoint({"model": {}}, dst)
    assert info.value.path == str(dst) and str(info.value.__cause__) == TORCH_FULL
    assert list(dst.parent.iterdir()) == []

    # any other RuntimeError passes through unchanged (and still leaves no temp file)
    def other_failure(obj, f, *args, **kwargs):
        raise RuntimeError("x")

    monkeypatch.setattr(torch, "save", other_failure)
    with pytest.raises(RuntimeError, match="^x$") as other:
        checkpoint.save_checkpoint({"model": {}}, dst)
    assert not isinstance(other.value, NoSpaceError) and list(dst.parent.iterdir()) == []


def test_no_space_creating_the_temp_file(tmp_path, monkeypatch):
    import tempfile

    def no_inodes(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(tempfile, "mkstemp", no_inodes)
    with pytest.raises(NoSpaceError, match=f"^no space left writing {tmp_path / 'x.pkl'}$"):
        dump_pickle({"a": 1}, tmp_path / "x.pkl")


def test_cli_reports_full_disk(tmp_path, capsys, monkeypatch):
    scores = tmp_path / "pose.pkl"
    dump_pickle({"names": ["a", "b"], "labels": np.array([0, 1]),
                 "probs": {"pose_only": np.eye(2, dtype=np.float32)}}, scores)  # fmt: skip

    def full_write(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))

    monkeypatch.setattr(Path, "write_bytes", full_write)
    out = tmp_path / "fusion.txt"
    rc, stdout, err = run_main(capsys, ["fuse", "--scores", f"pose_only={scores}", "-o", str(out)])
    assert (rc, err) == (1, f"rgbpose fuse: error: no space left writing {out}\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pose.pkl"]


# ----------------------------------------------------------------------------- stale temps
def test_atomic_path_temp_names_are_recognised(tmp_path):
    for name in ("best.pt", "Makefile", "S001C001P001R001A001.mp4", "a.b.tar.gz", "x.abcdefgh"):
        with atomic_path(tmp_path / name) as tmp:
            assert atomic_temp_destination(tmp.name) == name, tmp.name
            assert tmp.name.startswith(f".{name}.")
    for name in ("best.pt", ".best.pt", ".best.pt.abc123.pt", ".best.pt.ABCDEFGH.pt",
                 ".best.pt.abcdefgh.pkl", ".best.pt.abcdefgh", "..abcdefgh", ".best.pt.abcdefg.pt",
                 "best.pt.abcdefgh.pt"):  # fmt: skip
        assert atomic_temp_destination(name) is None, name


def _leftover(dst: Path) -> Path:
    """The temp file a process killed inside ``atomic_path(dst)`` leaves behind (real name)."""
    with atomic_path(dst) as tmp:
        tmp.write_bytes(b"half-written")
        os.link(tmp, dst.parent / "keep")
        name = tmp.name
    os.replace(dst.parent / "keep", dst.parent / name)
    return dst.parent / name


def test_remove_stale_temps_only_removes_old_leftovers_of_atomic_path(tmp_path):
    old = time.time() - 7200
    stale = _leftover(tmp_path / "S001C001P001R001A001.mp4")
    fresh = _leftover(tmp_path / "S001C001P001R001A002.mp4")
    os.utime(stale, (old, old))
    keep = {
        "S001C001P001R001A003.mp4": "file",
        ".S001.mp4.abc.mp4": "file",  # not 8 random characters
        ".x.mp4.abcdefgh.avi": "file",  # suffix differs from the destination's
        "x.mp4.abcdefgh.mp4": "file",  # not hidden
        ".d.abcdefgh": "dir",
        ".l.pt.abcdefgh.pt": "link",
    }
    for name, kind in keep.items():
        p = tmp_path / name
        if kind == "file":
            p.write_bytes(b"x")
        elif kind == "dir":
            p.mkdir()
        else:
            p.symlink_to(tmp_path / "S001C001P001R001A003.mp4")
        os.utime(p, (old, old), follow_symlinks=False)
    sub = tmp_path / "sub"
    sub.mkdir()
    nested = _leftover(sub / "S001C001P001R001A004.mp4")
    os.utime(nested, (old, old))

    assert remove_stale_temps(tmp_path) == [stale]  # default: older than an hour
    assert fresh.exists() and nested.exists()
    assert remove_stale_temps(tmp_path, max_age_s=0) == [fresh]  # no other writer: all of ours
    left = sorted(p.name for p in tmp_path.iterdir())
    # (the finished outputs _leftover's atomic_path wrote stay too)
    assert left == sorted([*keep, "sub", "S001C001P001R001A001.mp4", "S001C001P001R001A002.mp4"])
    assert remove_stale_temps(tmp_path / "nope") == []
