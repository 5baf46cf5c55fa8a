"""The DRSR depth stage (rgbpose.preprocess.depth): depth validation, the ROI rule, the store."""

import cv2
import numpy as np
import pytest

from rgbpose import synthetic as syn
from rgbpose.data.video import open_video
from rgbpose.io import BadSampleError, read_skip_tsv
from rgbpose.preprocess import depth as dp

CFG = syn.SynthConfig(
    performers=(1,), cameras=(1,), replications=(1,), actions=(1, 58), frames=6, width=160,
    height=90,
)  # fmt: skip
NAME = "S001C001P001R001A001"
NAME2 = "S001C001P001R001A058"


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    """Synthetic videos (``<name>_rgb.avi``) and masked depth of CFG's two samples."""
    root = tmp_path_factory.mktemp("drsr_raw")
    syn.synthesize(CFG, root / "raw", depth_dir=root / "depth")
    return root


def _png(path, img):
    assert cv2.imwrite(str(path), img)
    return path


def _depth_folder(tmp_path, frames=3, shape=(424, 512)):
    folder = tmp_path / NAME
    folder.mkdir()
    img = np.zeros(shape, np.uint16)
    img[100:300, 200:300] = 2500
    for i in range(1, frames + 1):
        _png(folder / dp.depth_frame_name(i), img)
    return folder


# ---------------------------------------------------------------------------- wrap and ROI


def test_wrap_depth_is_the_references_uint8_of_255_d():
    d = np.array([0, 1, 255, 256, 300, 511, 512, 2500, 65535], np.uint16)
    np.testing.assert_array_equal(dp.wrap_depth(d), [0, 255, 1, 0, 212, 1, 0, (-2500) % 256, 1])
    # as np.uint8(255 * D) of the uint16 image (what PIL gives the reference)
    np.testing.assert_array_equal(dp.wrap_depth(d), (255 * d).astype(np.uint8))
    assert dp.wrap_depth(d).dtype == np.uint8


def test_roi_centre_contour_rule():
    mask = np.zeros((424, 512), np.uint8)
    mask[150:210, 200:300] = 1  # erode 3x3 -> 201..298 x 151..208, dilate 10x10 (anchor 5)
    # -> x 197..303, y 147..213: minAreaRect centre (250, 180)
    assert dp.roi_centre(mask) == (250, 180)
    mask[50:100, 400:450] = 1  # -> x 397..453, y 47..103: centre (425, 75)
    mask[20:35, 20:35] = 1  # 15x15 -> 22x22 after dilation: area 21 * 21 = 441 <= 500, ignored
    # the centre is (min x, min y) over the contours' centres, not any one contour's
    assert dp.roi_centre(mask) == (250, 75)
    assert dp.roi_centre(np.zeros((424, 512))) is None
    small = np.zeros((424, 512))
    small[20:35, 20:35] = 1
    assert dp.roi_centre(small) is None


def test_roi_centres_fallback_and_no_person():
    a = np.zeros((424, 512), np.uint16)
    a[150:210, 200:300] = 3000
    b = np.zeros_like(a)
    b[150:210, 300:400] = 3000
    empty = np.zeros_like(a)
    centres, found = dp.roi_centres(np.stack([empty, a, empty, b, empty]), "src")
    # before the first contour: the first found centre; afterwards: the previous frame's
    np.testing.assert_array_equal(centres, [[250, 180], [250, 180], [250, 180], [350, 180],
                                            [350, 180]])  # fmt: skip
    np.testing.assert_array_equal(found, [False, True, False, True, False])
    with pytest.raises(BadSampleError, match="no person") as err:
        dp.roi_centres(np.stack([empty, empty]), "some/folder")
    assert err.value.path == "some/folder"


def test_depth_and_rgb_boxes():
    assert dp.depth_box((250, 180)) == (90, 60, 410, 300)
    assert dp.depth_box((100, 50)) == (0, 0, 320, 240)  # clipped at 0, full size
    assert dp.depth_box((400, 330)) == (240, 210, 512, 424)  # clipped at the edge: narrower
    # the reference on 1920x1080: centre scaled by 3.75 / 2.547, a 960x540 window
    assert dp.rgb_box((256, 212), (1920, 1080)) == (480, 270, 1440, 810)
    # our 960x540 videos: the same part of the scene, 480x270
    assert dp.rgb_box((256, 212), (960, 540)) == (240, 135, 720, 405)
    assert dp.rgb_box((500, 10), (960, 540)) == (697, 0, 960, 270)  # int(937.5) - 240
    assert dp.rgb_box((10, 420), (960, 540)) == (0, 399, 480, 540)  # int(534.9) - 135


# ---------------------------------------------------------------------------- bad depth input


def test_good_depth_folder(tmp_path):
    folder = _depth_folder(tmp_path, frames=3)
    d = dp.read_depth_folder(folder, expected_frames=3)
    assert d.shape == (3, 424, 512) and d.dtype == np.uint16 and d.max() == 2500
    assert dp.read_depth_folder(folder, expected_frames=4, frame_tolerance=1).shape[0] == 3


def test_bad_depth_folders_name_the_file(tmp_path):
    with pytest.raises(BadSampleError, match="depth folder not found") as err:
        dp.read_depth_folder(tmp_path / "nope")
    assert err.value.path == str(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("x")
    with pytest.raises(BadSampleError, match="no depth frames") as err:
        dp.read_depth_folder(tmp_path / "empty")
    assert err.value.path == str(tmp_path / "empty")
    folder = _depth_folder(tmp_path, frames=4)
    (folder / dp.depth_frame_name(3)).unlink()
    with pytest.raises(BadSampleError, match="depth frame 3 is missing") as err:
        dp.read_depth_folder(folder)
    assert err.value.path == str(folder / "MDepth-00000003.png")
    (folder / dp.depth_frame_name(4)).rename(folder / dp.depth_frame_name(3))
    with pytest.raises(BadSampleError, match="3 depth frames, the RGB video has 5") as err:
        dp.read_depth_folder(folder, expected_frames=5)
    assert err.value.path == str(folder)


@pytest.mark.parametrize(
    ("kind", "problem"),
    [
        ("empty", "empty"),
        ("text", "not a PNG"),
        ("truncated", "truncated"),
        ("corrupt", "does not decode"),
        ("8bit", "8-bit, expected 16-bit"),
        ("colour", "3 channels"),
        ("size", "640x480, expected 512x424"),
    ],
)
def test_bad_depth_frames_name_the_file(tmp_path, kind, problem):
    folder = _depth_folder(tmp_path, frames=3)
    bad = folder / dp.depth_frame_name(2)
    good = bad.read_bytes()
    if kind == "empty":
        bad.write_bytes(b"")
    elif kind == "text":
        bad.write_text("not an image")
    elif kind == "truncated":
        bad.write_bytes(good[: len(good) // 2])
    elif kind == "corrupt":  # IDAT data overwritten, the end chunk intact
        bad.write_bytes(good[:60] + bytes(200) + good[260:])
    elif kind == "8bit":
        _png(bad, np.full((424, 512), 7, np.uint8))
    elif kind == "colour":
        _png(bad, np.full((424, 512, 3), 7, np.uint16))
    else:
        _png(bad, np.full((480, 640), 7, np.uint16))
    with pytest.raises(BadSampleError, match=problem) as err:
        dp.read_depth_folder(folder, expected_frames=3)
    assert err.value.path == str(bad)
    assert str(bad) in str(err.value)


# ---------------------------------------------------------------------------- the store


def test_store_round_trip(raw, tmp_path):
    info = dp.build_store(NAME, raw / "depth", tmp_path, raw / "raw", video_ext="_rgb.avi")
    assert (info.name, info.frames, info.depth_frames, info.no_contour_frames) == (NAME, 6, 6, 0)
    path = dp.store_path(tmp_path, NAME)
    assert path == tmp_path / f"{NAME}.npz" and info.bytes == path.stat().st_size
    st = dp.DepthStore(path)
    assert st.num_frames == 6 and st.has_rgb and st.found.all()
    assert st.meta["video_size"] == [160, 90] and st.meta["size"] == [320, 240]
    # what the stage computes, recomputed from the inputs
    depth16 = dp.read_depth_folder(raw / "depth" / NAME)
    centres = np.array([dp.roi_centre(f > 0) for f in depth16])
    np.testing.assert_array_equal(st.centres, centres)
    np.testing.assert_array_equal(st.depth_boxes, [dp.depth_box(c) for c in centres])
    np.testing.assert_array_equal(st.rgb_boxes, [dp.rgb_box(c, (160, 90)) for c in centres])
    wrapped = dp.wrap_depth(depth16)
    want = [
        dp.crop_resize(w, b, (320, 240), cv2.INTER_NEAREST) for w, b in zip(wrapped, st.depth_boxes)
    ]
    np.testing.assert_array_equal(st.depth(range(6)), np.stack(want))  # lossless
    frames = list(open_video(raw / "raw" / f"{NAME}_rgb.avi").iterator)
    want = [
        dp.crop_resize(f, b, (320, 240), cv2.INTER_LINEAR) for f, b in zip(frames, st.rgb_boxes)
    ]
    got = st.rgb([0, 5, 5, 2])
    assert got.shape == (4, 240, 320, 3) and got.dtype == np.uint8
    assert np.abs(got.astype(int) - np.stack(want)[[0, 5, 5, 2]]).mean() < 3  # JPEG q90
    with pytest.raises(BadSampleError, match="out of range"):
        st.depth([6])
    # depth-only store: no RGB members
    dp.build_store(NAME, raw / "depth", tmp_path / "d", expected_frames=6)
    st = dp.DepthStore(dp.store_path(tmp_path / "d", NAME))
    assert not st.has_rgb and st.rgb_boxes is None and st.meta["video_size"] is None
    with pytest.raises(BadSampleError, match="no RGB"):
        st.rgb([0])


def test_bad_samples_leave_no_store(raw, tmp_path):
    dp.build_store(NAME, raw / "depth", tmp_path, raw / "raw", video_ext="_rgb.avi")
    assert dp.store_path(tmp_path, NAME).exists()
    # the depth folder does not match the video: the stale store is removed
    with pytest.raises(BadSampleError, match="6 depth frames, the RGB video has 7") as err:
        dp.build_store(NAME, raw / "depth", tmp_path, expected_frames=7)
    assert err.value.path == str(raw / "depth" / NAME)
    assert not dp.store_path(tmp_path, NAME).exists()
    with pytest.raises(BadSampleError, match="video file not found"):
        dp.build_store(NAME, raw / "depth", tmp_path, raw / "raw")  # no <name>.mp4
    with pytest.raises(BadSampleError, match="not an NTU sample name"):
        dp.build_store("../x", raw / "depth", tmp_path)
    with pytest.raises(BadSampleError, match="unreadable DRSR store") as err:
        (tmp_path / "junk.npz").write_bytes(b"junk")
        dp.DepthStore(tmp_path / "junk.npz")
    assert err.value.path == str(tmp_path / "junk.npz")


def test_cli_skip_and_manifest(raw, tmp_path):
    out, man, skipped = tmp_path / "store", tmp_path / "m.tsv", tmp_path / "skipped.tsv"
    missing = "S001C002P001R001A001"
    args = [NAME, missing, NAME2, "--depth-dir", str(raw / "depth"), "--video-dir",
            str(raw / "raw"), "--video-ext", "_rgb.avi", "--out-dir", str(out), "--manifest",
            str(man)]  # fmt: skip
    assert dp.cli([*args, "--on-bad-sample", "skip", "--skipped", str(skipped)]) == 0
    lines = man.read_text().splitlines()
    assert lines[0].split("\t") == list(dp.MANIFEST_HEADER)
    assert [ln.split("\t")[:4] for ln in lines[1:]] == [
        [NAME, "6", "6", "0"],
        [NAME2, "6", "6", "0"],
    ]
    rows = read_skip_tsv(skipped)
    assert [(r[0], r[1]) for r in rows] == [(missing, "depth-store")]
    assert "video file not found" in rows[0][3]
    assert sorted(p.name for p in out.iterdir()) == [f"{NAME}.npz", f"{NAME2}.npz"]
    assert dp.cli([*args, "--on-bad-sample", "fail"]) == 1
    # no names: every sample folder of --depth-dir
    assert dp.cli(args[3:]) == 0
    assert len(man.read_text().splitlines()) == 3
