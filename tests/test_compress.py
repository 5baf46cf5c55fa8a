"""compress_video / ``rgbpose compress``: size, frame count, GOP, bad inputs, skip policy."""

from __future__ import annotations

import subprocess
from pathlib import Path

import imageio_ffmpeg
import pytest

from rgbpose.data.video import import_decord
from rgbpose.io import BadSampleError, read_skip_tsv
from rgbpose.preprocess.compress import cli, compress_video, scaled_size
from rgbpose.preprocess.stage import collect_inputs

decord = import_decord()

NAME_A = "S001C001P001R001A001"
NAME_B = "S001C002P002R001A002"
NAME_P = "S002C003P003R002A003"


def make_video(path: Path, width: int, height: int, frames: int = 10, rate: int = 25) -> Path:
    """A short H.264 AVI from ffmpeg's test pattern (like a raw NTU file)."""
    cmd = [
        imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi",
        "-i", f"testsrc=size={width}x{height}:rate={rate}", "-frames:v", str(frames),
        "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(path),
    ]  # fmt: skip
    subprocess.run(cmd, check=True)
    return path


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("raw")
    make_video(d / f"{NAME_A}_rgb.avi", 1920, 1080)
    make_video(d / f"{NAME_P}_rgb.avi", 360, 640, frames=6)
    return d


def test_scaled_size_matches_ffmpeg_rule():
    assert scaled_size(1920, 1080) == (960, 540)
    assert scaled_size(640, 480) == (720, 540)
    assert scaled_size(1000, 1000) == (540, 540)
    assert scaled_size(360, 640) == (540, 960)  # portrait: width is the short side
    # 540 * 1000 / 999 = 540.54 -> 270.27 pairs -> 540; 540 * 1366 / 768 = 960.47 -> 960
    assert scaled_size(1000, 999) == (540, 540)
    assert scaled_size(1366, 768) == (960, 540)
    assert scaled_size(1920, 1080, 270) == (480, 270)


def test_landscape_1080p_to_540p_same_frames_and_short_gop(raw, tmp_path):
    dst = tmp_path / "out" / f"{NAME_A}.mp4"
    info = compress_video(raw / f"{NAME_A}_rgb.avi", dst, gop=4)
    assert (info.frames, info.width, info.height) == (10, 960, 540)
    assert info.fps == pytest.approx(25.0)
    vr = decord.VideoReader(str(dst))
    assert len(vr) == 10 and vr[9].shape == (540, 960, 3)
    assert list(vr.get_key_indices()) == [0, 4, 8]  # -g 4
    assert [p.name for p in dst.parent.iterdir()] == [dst.name]  # no temp file left


def test_portrait(raw, tmp_path):
    info = compress_video(raw / f"{NAME_P}_rgb.avi", tmp_path / "p.mp4")
    assert (info.frames, info.width, info.height) == (6, 540, 960)


@pytest.fixture()
def bad_dir(raw, tmp_path) -> Path:
    d = tmp_path / "bad"
    d.mkdir()
    (d / f"{NAME_B}_rgb.avi").write_bytes(b"")  # zero bytes
    data = (raw / f"{NAME_A}_rgb.avi").read_bytes()
    (d / "S003C001P001R001A001_rgb.avi").write_bytes(data[: len(data) // 2])  # truncated
    (d / "S004C001P001R001A001_rgb.avi").write_text("this is not a video\n")
    return d


@pytest.mark.parametrize(
    "stem, problem",
    [
        (f"{NAME_B}_rgb", "video file is empty"),
        ("S003C001P001R001A001_rgb", ""),
        ("S004C001P001R001A001_rgb", "unreadable or corrupt video"),
    ],
)
def test_bad_inputs_raise_naming_file(bad_dir, tmp_path, stem, problem):
    src = bad_dir / f"{stem}.avi"
    dst = tmp_path / "o" / "x.mp4"
    with pytest.raises(BadSampleError) as ei:
        compress_video(src, dst)
    assert ei.value.path == str(src) and str(src) in str(ei.value)
    assert problem in ei.value.problem
    assert not dst.parent.exists() or list(dst.parent.iterdir()) == []


def test_truncated_is_detected(bad_dir, tmp_path):
    with pytest.raises(BadSampleError, match="corrupt|truncated|mismatch"):
        compress_video(bad_dir / "S003C001P001R001A001_rgb.avi", tmp_path / "x.mp4")


def test_cli_skip_policy(raw, bad_dir, tmp_path, capsys):
    other = tmp_path / "S005C001P001R001A001.avi"  # not <name>_rgb.avi
    other.write_bytes((raw / f"{NAME_A}_rgb.avi").read_bytes())
    out = tmp_path / "videos"
    rc = cli(
        [str(raw / f"{NAME_A}_rgb.avi"), str(bad_dir), str(other), "--out-dir", str(out),
         "--manifest", str(tmp_path / "m.tsv"), "--on-bad-sample", "skip",
         "--skipped", str(tmp_path / "skipped.tsv"), "--jobs", "2"]
    )  # fmt: skip
    assert rc == 0
    assert sorted(p.name for p in out.iterdir()) == [f"{NAME_A}.mp4"]
    lines = (tmp_path / "m.tsv").read_text().splitlines()
    assert lines == ["name\tframes\twidth\theight\tfps", f"{NAME_A}\t10\t960\t540\t25"]
    rows = read_skip_tsv(tmp_path / "skipped.tsv")
    assert [r[0] for r in rows] == [
        NAME_B,
        "S003C001P001R001A001",
        "S004C001P001R001A001",
        "S005C001P001R001A001",
    ]
    assert all(r[1] == "compress" for r in rows)
    assert rows[0][2] == str(bad_dir / f"{NAME_B}_rgb.avi")
    assert "file name is not" in rows[3][3]
    assert "compressed 1 video(s)" in capsys.readouterr().out


def test_cli_fail_policy_names_file(bad_dir, tmp_path, capsys):
    rc = cli([str(bad_dir / f"{NAME_B}_rgb.avi"), "--out-dir", str(tmp_path / "v"),
              "--manifest", str(tmp_path / "m.tsv")])  # fmt: skip
    assert rc == 1
    assert f"{NAME_B}_rgb.avi: video file is empty" in capsys.readouterr().err
    assert not (tmp_path / "m.tsv").exists()


def test_cli_names_file_and_empty_skip_tsv(raw, tmp_path):
    names = tmp_path / "names.txt"
    names.write_text(f"# shard 0\n{NAME_P}\n")
    rc = cli([str(raw), "--names-file", str(names), "--out-dir", str(tmp_path / "v"),
              "--manifest", str(tmp_path / "m.tsv"), "--on-bad-sample", "skip",
              "--skipped", str(tmp_path / "s.tsv")])  # fmt: skip
    assert rc == 0
    assert [p.name for p in (tmp_path / "v").iterdir()] == [f"{NAME_P}.mp4"]
    assert (tmp_path / "s.tsv").read_text() == "sample\tstage\tfile\treason\n"


def test_collect_inputs_missing_listed_sample_is_kept(raw, tmp_path):
    names = tmp_path / "n.txt"
    names.write_text(f"{NAME_B}\n{NAME_A}\n")
    got = collect_inputs([raw], "_rgb.avi", names)
    assert got == [raw / f"{NAME_B}_rgb.avi", raw / f"{NAME_A}_rgb.avi"]
    names.write_text("../etc/passwd\n")
    with pytest.raises(ValueError, match="not an NTU sample name"):
        collect_inputs([raw], "_rgb.avi", names)


def test_decord_imported_through_the_package_leaves_opencv_png_working() -> None:
    """decord's bundled zlib breaks an OpenCV loaded after it ("libpng error: bad parameters to
    zlib"): the depth and frame stores read PNG in the same processes that decode videos.  A
    fresh interpreter, decord first through rgbpose: PNG still round-trips."""
    import sys

    code = (
        "from rgbpose.data.video import import_decord; import_decord()\n"
        "import cv2, numpy as np\n"
        "img = (np.arange(48 * 3) % 256).astype(np.uint16).reshape(12, 12)\n"
        "ok, buf = cv2.imencode('.png', img)\n"
        "back = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)\n"
        "assert ok and back is not None and (back == img).all(), 'png broken'\n"
        "print('png ok')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert proc.returncode == 0 and proc.stdout.strip() == "png ok", proc.stderr
