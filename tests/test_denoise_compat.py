"""denoise --compat infogcn|pyskl: hand-built .skeleton files, expected rows written out.

Every expectation below was derived by hand from the reference scripts' rules (InfoGCN's
get_raw_skes_data.py + get_raw_denoised_data.py, PYSKL's tools/data/ntu_preproc.py); they were
also checked against those scripts run on the same files.  An expected slot is a list with, per
output row, ``(body, video frame)`` whose joints the row must hold, or ``None`` (empty).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import yaml

from rgbpose.io import BadSampleError, dump_pickle, load_pickle
from rgbpose.preprocess.denoise import cli, denoise_kinect, denoise_pose
from rgbpose.preprocess.denoise_compat import denoise_kinect_compat
from rgbpose.preprocess.poses import extract_kinect

NAME = "S001C001P001R001A050"
IDS = {"A": "72057594037931101", "B": "72057594037931102", "C": "72057594037931103"}
NUM = {"A": 1, "B": 2, "C": 3}
V = 25
J = np.arange(V)


@dataclass
class Spec:
    """One body of a hand-built file: the frames it is listed in and how it moves."""

    frames: set[int]
    speed: float  # x shift per frame: more speed, more motion
    wide: bool = False  # x extent 2.0 > 0.8 * y extent 1.2 in every frame
    zero: set[int] = field(default_factory=set)  # frames it is listed with all-zero joints


def span(a: int, b: int) -> set[int]:
    """Frames a..b inclusive."""
    return set(range(a, b + 1))


def xyz(spec: Spec, f: int) -> np.ndarray:
    """The body's 3D joints in frame f, [25, 3] metres (as written, 4 decimals)."""
    if f in spec.zero:
        return np.zeros((V, 3))
    x = (0.5 if spec.wide else 0.1) * (J % 5) + spec.speed * f
    return np.round(np.stack([x, 0.05 * J, np.full(V, 3.0)], axis=1), 4)


def colour(body: str, f: int) -> np.ndarray:
    """colorX = 100 * body number + joint, colorY = 10 * frame + joint: names (body, frame)."""
    return np.stack([100 * NUM[body] + J, 10 * f + J], axis=1).astype(float)


def write_file(tmp_path: Path, T: int, bodies: dict[str, Spec]) -> Path:
    """A .skeleton file of T frames listing each body in its frames (A before B before C)."""
    lines = [str(T)]
    for f in range(T):
        listed = [b for b, spec in bodies.items() if f in spec.frames]
        lines.append(str(len(listed)))
        for b in listed:
            lines += [f"{IDS[b]} 0 1 1 1 1 0 0.1 -0.2 2", "25"]
            for (x, y, z), (cx, cy) in zip(xyz(bodies[b], f), colour(b, f)):
                lines.append(f"{x:.4f} {y:.4f} {z:.4f} 250 200 {cx:g} {cy:g} 0.5 0 0.5 0 2")
    path = tmp_path / f"{NAME}.skeleton"
    path.write_text("\n".join(lines) + "\n")
    return path


def rows(body: str, a: int, b: int) -> list[tuple[str, int] | None]:
    """Rows holding ``body``'s frames a..b in order."""
    return [(body, f) for f in range(a, b + 1)]


def empty(n: int) -> list[tuple[str, int] | None]:
    return [None] * n


def check(out: dict, bodies: dict[str, Spec], slots: list[list], frame_inds=None) -> None:
    """``out`` holds exactly ``slots`` (rows of (body, frame) or None) and ``frame_inds``."""
    T = len(slots[0])
    assert out["keypoint3d"].shape == (len(slots), T, V, 3)
    assert out["keypoint"].shape == (len(slots), T, V, 2) and out["total_frames"] == T
    for k, expected in enumerate(slots):
        assert len(expected) == T
        for t, src in enumerate(expected):
            if src is None:
                assert not out["present"][k, t], (k, t)
                assert not out["keypoint3d"][k, t].any() and not out["keypoint"][k, t].any()
                continue
            body, f = src
            assert out["present"][k, t], (k, t)
            np.testing.assert_array_equal(out["keypoint3d"][k, t], np.float32(xyz(bodies[body], f)))
            np.testing.assert_array_equal(out["keypoint"][k, t], colour(body, f), err_msg=(k, t))
    if frame_inds is None:
        assert "frame_inds" not in out
    else:
        np.testing.assert_array_equal(out["frame_inds"], frame_inds)
    assert "body_ids" not in out


def denoise_file(tmp_path: Path, T: int, bodies: dict[str, Spec], mode: str, notes=None) -> dict:
    pose = extract_kinect(write_file(tmp_path, T, bodies))
    if mode == "none":
        return denoise_kinect(pose)
    return denoise_kinect_compat(pose, mode, "shard.pkl", notes)


# ---------------------------------------------------------------------------------------------
# One test per reference rule
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["infogcn", "pyskl"])
def test_body_missing_mid_sequence_is_packed_earlier(tmp_path, mode):
    # A in all 20 frames; B absent in frames 5-7 while A is listed.  Both references place B's
    # 17 appearances at rows 0-16: B's frames 8-19 move to rows 5-16.
    bodies = {"A": Spec(span(0, 19), 0.05), "B": Spec(span(0, 4) | span(8, 19), 0.01)}
    out = denoise_file(tmp_path, 20, bodies, mode)
    check(out, bodies, [rows("A", 0, 19), rows("B", 0, 4) + rows("B", 8, 19) + empty(3)])
    # our default keeps B on its own frames
    default = denoise_file(tmp_path, 20, bodies, "none")
    check(default, bodies, [rows("A", 0, 19), rows("B", 0, 4) + empty(3) + rows("B", 8, 19)])


@pytest.mark.parametrize("mode", ["infogcn", "pyskl"])
def test_body_ending_before_actor2_first_body_is_discarded(tmp_path, mode):
    # Motion A > B > C.  A opens slot 1 (rows 0-29); B (15-29) overlaps it -> slot 2, whose hull
    # becomes [0, 29] (placeholder start 0); C (0-13) overlaps A and that hull -> discarded.
    bodies = {
        "A": Spec(span(0, 29), 0.05),
        "B": Spec(span(15, 29), 0.03),
        "C": Spec(span(0, 13), 0.01),
    }
    out = denoise_file(tmp_path, 30, bodies, mode)
    check(out, bodies, [rows("A", 0, 29), empty(15) + rows("B", 15, 29)])
    # our default compares with B's own span: C fits in slot 2 before B
    default = denoise_file(tmp_path, 30, bodies, "none")
    check(default, bodies, [rows("A", 0, 29), rows("C", 0, 13) + empty(1) + rows("B", 15, 29)])


def test_touching_spans(tmp_path):
    # A (0-19, more motion) and B (19-34) share frame 19 only.
    bodies = {"A": Spec(span(0, 19), 0.05), "B": Spec(span(19, 34), 0.01)}
    # InfoGCN: min(19, 34) - max(0, 19) = 0 -> no overlap: B joins slot 1 and overwrites row 19;
    # slot 2 stays empty but is output (two bodies survived: 150 values per row).
    out = denoise_file(tmp_path, 35, bodies, "infogcn")
    check(out, bodies, [rows("A", 0, 18) + rows("B", 19, 34), empty(35)])
    # PYSKL: [0, 20) and [19, 35) share a row -> B goes to slot 2 (so does our default)
    out = denoise_file(tmp_path, 35, bodies, "pyskl")
    check(out, bodies, [rows("A", 0, 19) + empty(15), empty(19) + rows("B", 19, 34)])
    default = denoise_file(tmp_path, 35, bodies, "none")
    check(default, bodies, [rows("A", 0, 19) + empty(15), empty(19) + rows("B", 19, 34)])


def test_body_listed_with_all_zero_joints(tmp_path):
    # Several bodyIDs, one survivor: A is listed with all-zero joints in frame 10; B (frames 0-2)
    # is removed by the length rule.  InfoGCN removes the row summing to 0; PYSKL keeps A's rows.
    bodies = {"A": Spec(span(0, 19), 0.05, zero={10}), "B": Spec(span(0, 2), 0.01)}
    without_10 = [*range(10), *range(11, 20)]
    out = denoise_file(tmp_path, 20, bodies, "infogcn")
    check(out, bodies, [rows("A", 0, 9) + rows("A", 11, 19)], frame_inds=without_10)
    out = denoise_file(tmp_path, 20, bodies, "pyskl")
    check(out, bodies, [rows("A", 0, 19)])  # row 10 present, with zero joints
    # a single bodyID: InfoGCN does not remove zero rows either
    single = {"A": bodies["A"]}
    check(denoise_file(tmp_path, 20, single, "infogcn"), single, [rows("A", 0, 19)])

    # Two survivors, both all-zero in frames 0 and 10: InfoGCN removes both rows; PYSKL cuts the
    # leading row only (inner rows stay); our default keeps both (the bodies are listed).
    both = {"A": Spec(span(0, 19), 0.05, zero={0, 10}), "B": Spec(span(0, 19), 0.01, zero={0, 10})}
    out = denoise_file(tmp_path, 20, both, "infogcn")
    keep = [*range(1, 10), *range(11, 20)]
    check(out, both, [rows("A", 1, 9) + rows("A", 11, 19), rows("B", 1, 9) + rows("B", 11, 19)],
          frame_inds=keep)  # fmt: skip
    out = denoise_file(tmp_path, 20, both, "pyskl")
    check(out, both, [rows("A", 1, 19), rows("B", 1, 19)], frame_inds=list(range(1, 20)))
    default = denoise_file(tmp_path, 20, both, "none")
    check(default, both, [rows("A", 0, 19), rows("B", 0, 19)])


@pytest.mark.parametrize("mode", ["infogcn", "pyskl"])
def test_frames_without_body_in_the_middle_are_dropped(tmp_path, mode):
    # frames 10-12 list no body: both references renumber rows over the other 22 frames
    bodies = {
        "A": Spec(span(0, 9) | span(13, 24), 0.05),
        "B": Spec(span(0, 9) | span(13, 24), 0.01),
    }
    out = denoise_file(tmp_path, 25, bodies, mode)
    kept = [*range(10), *range(13, 25)]
    check(out, bodies, [rows("A", 0, 9) + rows("A", 13, 24), rows("B", 0, 9) + rows("B", 13, 24)],
          frame_inds=kept)  # fmt: skip
    # our default (trim) keeps them as empty frames on the video's timeline
    default = denoise_file(tmp_path, 25, bodies, "none")
    check(default, bodies, [rows("A", 0, 9) + empty(3) + rows("A", 13, 24),
                            rows("B", 0, 9) + empty(3) + rows("B", 13, 24)])  # fmt: skip


def test_pyskl_swaps_slots_when_slot_1_is_empty_in_the_first_row(tmp_path):
    # A (frames 5-29) has more motion -> slot 1; B (0-29) -> slot 2.  Row 0: slot 1's SpineMid is
    # 0 and slot 2's is not -> PYSKL swaps; InfoGCN and our default do not.
    bodies = {"A": Spec(span(5, 29), 0.05), "B": Spec(span(0, 29), 0.01)}
    out = denoise_file(tmp_path, 30, bodies, "pyskl")
    check(out, bodies, [rows("B", 0, 29), empty(5) + rows("A", 5, 29)])
    out = denoise_file(tmp_path, 30, bodies, "infogcn")
    check(out, bodies, [empty(5) + rows("A", 5, 29), rows("B", 0, 29)])


def test_pyskl_all_bodies_wide_keeps_infogcn_survivor_and_says_so(tmp_path):
    # PYSKL's spread test removes both and crashes; InfoGCN tests A first, removes it, and stops
    # with B alone.
    bodies = {"A": Spec(span(0, 19), 0.05, wide=True), "B": Spec(span(0, 19), 0.01, wide=True)}
    notes: list[str] = []
    out = denoise_file(tmp_path, 20, bodies, "pyskl", notes)
    check(out, bodies, [rows("B", 0, 19)])
    assert notes == [f"{NAME}: every body is too wide: PYSKL crashes here; kept InfoGCN's survivor"]
    notes.clear()
    check(denoise_file(tmp_path, 20, bodies, "infogcn", notes), bodies, [rows("B", 0, 19)])
    assert notes == []


@pytest.mark.parametrize("mode", ["infogcn", "pyskl"])
def test_bad_samples_where_the_references_crash(tmp_path, mode):
    # every body removed by the length rule (5 frames each)
    bodies = {"A": Spec(span(0, 4), 0.05), "B": Spec(span(5, 9), 0.01)}
    with pytest.raises(BadSampleError, match="no valid body after denoising") as ei:
        denoise_file(tmp_path, 10, bodies, mode)
    assert f"{IDS['A']}: present in only 5 frames" in str(ei.value)
    assert f"{mode} would crash" in str(ei.value) and ei.value.path == "shard.pkl"
    # no body at all: extraction already refuses the file; a pose dict without one is refused too
    (tmp_path / f"{NAME}.skeleton").write_text("3\n0\n0\n0\n")
    with pytest.raises(BadSampleError, match="no person"):
        extract_kinect(tmp_path / f"{NAME}.skeleton")
    pose = extract_kinect(write_file(tmp_path, 10, {"A": Spec(span(0, 9), 0.0)}))
    pose["present"][:] = False
    with pytest.raises(BadSampleError, match="no body in any frame"):
        denoise_pose(pose, compat=mode)


# ---------------------------------------------------------------------------------------------
# CLI and workflow
# ---------------------------------------------------------------------------------------------


def test_cli_compat_option(tmp_path, capsys):
    wide = {"A": Spec(span(0, 19), 0.05, wide=True), "B": Spec(span(0, 19), 0.01, wide=True)}
    dump_pickle([extract_kinect(write_file(tmp_path, 20, wide))], tmp_path / "in.pkl")
    args = [str(tmp_path / "in.pkl"), "-o", str(tmp_path / "out.pkl")]
    assert cli([*args, "--compat", "pyskl"]) == 0
    [out] = load_pickle(tmp_path / "out.pkl")
    check(out, wide, [rows("B", 0, 19)])
    assert "warning: S001C001P001R001A050: every body is too wide" in capsys.readouterr().err
    for bad in (["--compat", "infogcn", "--empty-frames", "drop"], ["--compat", "sgn"]):
        with pytest.raises(SystemExit) as ei:
            cli([*args, *bad])
        assert ei.value.code == 2
    estimator = {
        "frame_dir": NAME, "layout": "coco17", "img_shape": (480, 640), "total_frames": 1,
        "keypoint": np.zeros((1, 1, 17, 2), np.float32),
        "keypoint_score": np.ones((1, 1, 17), np.float32), "present": np.ones((1, 1), bool),
    }  # fmt: skip
    dump_pickle([estimator], tmp_path / "est.pkl")
    with pytest.raises(SystemExit):
        cli([str(tmp_path / "est.pkl"), "-o", str(tmp_path / "o.pkl"), "--compat", "infogcn"])
    assert "applies to Kinect poses only" in capsys.readouterr().err


REPO = Path(__file__).resolve().parents[1]


def test_workflow_passes_denoise_compat(tmp_path):
    cfg = yaml.safe_load((REPO / "config/config.yaml").read_text())
    cfg["datasets"]["demo"]["denoise_compat"] = "infogcn"
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    cmd = [sys.executable, "-m", "snakemake", "--cores", "1", "-n", "-p", "--forceall",
           "--configfile", str(tmp_path / "config.yaml"), "--until", "denoise_poses"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    denoise = [ln for ln in proc.stdout.splitlines() if "rgbpose denoise " in ln]
    assert denoise and all("--compat infogcn --on-bad-sample" in ln for ln in denoise)
    cfg["datasets"]["demo"]["denoise_compat"] = "sgn"
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "sgn" in proc.stdout + proc.stderr
