"""The embedded synthetic dataset: file formats, geometry, noise bodies, determinism, CLIs."""

import dataclasses
import json
import math

import numpy as np
import pytest
from PIL import Image

from rgbpose import synthetic as syn
from rgbpose.ntu import class_names, parse_name
from rgbpose.report import cli_contact_sheet
from rgbpose.skeleton_file import format_skeleton, read_skeleton
from rgbpose.synthetic.skeleton import noise_plan

# 2 performers x 2 cameras x 1 replication x 3 actions = 12 samples, tiny frames
TINY = syn.SynthConfig(
    performers=(1, 2),
    cameras=(1, 2),
    replications=(1,),
    actions=(1, 24, 58),
    frames=16,
    width=160,
    height=90,
    noise_share=0.5,
)


@pytest.fixture(scope="module")
def tiny_renders():
    """render_sample of every TINY sample: name -> (frames, seq, meta)."""
    return {n: syn.render_sample(TINY, n) for n in syn.sample_names(TINY)}


def _spans(seq):
    """body id -> list of (frame index, xyz [25,3])."""
    out = {}
    for t, bodies in enumerate(seq.frames):
        for b in bodies:
            out.setdefault(b.body_id, []).append((t, b.xyz))
    return out


def _wide_frames(xyz_list):
    """Per frame: NTU spread test fails, (max x - min x) > 0.8 * (max y - min y)."""
    x = np.stack(xyz_list)
    return np.ptp(x[:, :, 0], axis=1) > 0.8 * np.ptp(x[:, :, 1], axis=1)


# ---------------------------------------------------------------------------- config & names


def test_sample_names_grid():
    names = syn.sample_names(TINY)
    assert len(names) == 2 * 2 * 1 * 3 == 12
    assert names == sorted(set(names))
    assert names[0] == "S001C001P001R001A001"
    assert names[-1] == "S001C002P002R001A058"
    parsed = [parse_name(n) for n in names]
    assert {(p.performer, p.camera, p.replication, p.action) for p in parsed} == {
        (p, c, 1, a) for p in (1, 2) for c in (1, 2) for a in (1, 24, 58)
    }
    full = syn.sample_names(syn.SynthConfig())
    assert len(full) == 6 * 3 * 2 * 10 == 360
    # default classes are real NTU actions with meaningful names
    assert class_names()[0] == "drink water" and syn.DEFAULT_ACTIONS[0] == 1
    assert len(syn.DEFAULT_ACTIONS) == 10 and set(syn.DEFAULT_ACTIONS) <= set(syn.SUPPORTED_ACTIONS)


def test_config_from_dict():
    cfg = syn.SynthConfig.from_dict(
        {"seed": 3, "performers": [1, 3], "actions": [1, 58], "frames": 8}
    )
    assert cfg.performers == (1, 3) and cfg.actions == (1, 58) and cfg.seed == 3 and cfg.frames == 8
    assert cfg == syn.SynthConfig(seed=3, performers=(1, 3), actions=(1, 58), frames=8)
    with pytest.raises(ValueError, match="'framez'"):
        syn.SynthConfig.from_dict({"framez": 8})
    with pytest.raises(ValueError, match="unsupported actions"):
        syn.SynthConfig(actions=(1, 99))
    with pytest.raises(ValueError, match="even"):
        syn.SynthConfig(width=161)
    with pytest.raises(ValueError, match="not part of"):
        syn.render_sample(TINY, "S001C003P001R001A001")  # camera 3 is not in TINY


# ---------------------------------------------------------------------------- geometry


def test_color_and_depth_coordinates_are_the_pinhole_projection(tiny_renders):
    fx, fy, cx, cy = syn.color_intrinsics(640, 360)
    assert fx == fy and math.isclose(fx, 354.7729, rel_tol=1e-6)  # 320 / tan(42.05 deg)
    assert (cx, cy) == (320.0, 180.0)
    fx, fy, cx, cy = syn.color_intrinsics(TINY.width, TINY.height)
    for _, seq, _ in tiny_renders.values():
        for bodies in seq.frames[::5]:
            for b in bodies:
                x, y, z = b.xyz.T
                np.testing.assert_allclose(b.color_xy[:, 0], cx + fx * x / z, atol=1e-9)
                np.testing.assert_allclose(b.color_xy[:, 1], cy - fy * y / z, atol=1e-9)
                np.testing.assert_allclose(b.joints[:, 3], 256 + 365 * x / z, atol=1e-9)
                np.testing.assert_allclose(b.joints[:, 4], 212 - 365 * y / z, atol=1e-9)
                np.testing.assert_allclose(np.linalg.norm(b.joints[:, 7:11], axis=1), 1.0)
                assert set(np.unique(b.tracking)) <= {1.0, 2.0}
    # camera space is metres in front of the camera, like Kinect
    _, seq, meta = tiny_renders["S001C001P001R001A024"]
    real = [b for b in seq.frames[0] if b.body_id in meta["actor_body_ids"]]
    assert 2.5 < real[0].xyz[:, 2].mean() < 4.5
    assert 1.4 < real[0].xyz[3, 1] - real[0].xyz[15, 1] < 1.9  # head above foot: a person's height


def test_front_view_is_not_mirrored():
    # replication 1 faces camera 2: the performer's left shoulder appears on the image's right
    cfg = syn.SynthConfig(cameras=(2,), actions=(24,), frames=4, width=160, height=90)
    _, seq, meta = syn.render_sample(cfg, "S001C002P001R001A024")
    b = seq.frames[0][[b.body_id for b in seq.frames[0]].index(meta["actor_body_ids"][0])]
    assert b.color_xy[4, 0] > b.color_xy[8, 0] + 5  # LShoulder right of RShoulder (pixels)
    assert b.xyz[4, 2] == pytest.approx(b.xyz[8, 2], abs=0.1)  # both shoulders face the camera


def test_rendered_head_and_markers_sit_on_the_projected_joints():
    cfg = syn.SynthConfig(
        performers=(2, 5), cameras=(1, 3), actions=(24,), frames=12, width=320, height=180
    )
    fx = syn.color_intrinsics(cfg.width, cfg.height)[0]
    hh, ww = np.mgrid[0 : cfg.height, 0 : cfg.width]
    # kicking: the hands stay far from the head; a 45-degree and a front view
    for name in ("S001C001P002R001A024", "S001C003P005R002A024"):
        frames, seq, meta = syn.render_sample(cfg, name)
        marked, _, _ = syn.render_sample(cfg, name, marker_joints=(3, 19, 7))
        for t in (0, 5, 11):
            body = next(b for b in seq.frames[t] if b.body_id == meta["actor_body_ids"][0])
            u, v = body.color_xy[3]
            r = 0.12 * fx / body.xyz[3, 2]  # a bit more than the head radius (0.11 m x scale)
            win = (hh - v) ** 2 + (ww - u) ** 2 <= (r + 2) ** 2
            skin = frames[t, int(round(v)), int(round(u))]  # the head disc's exact colour
            mask = win & np.all(frames[t] == skin, axis=-1)
            assert mask.sum() > 0.6 * math.pi * (r / 1.1) ** 2  # the disc is really drawn there
            assert abs(ww[mask].mean() - u) < 1.0 and abs(hh[mask].mean() - v) < 1.0
            magenta = np.all(marked[t] == (255, 0, 255), axis=-1)
            for j in (3, 19, 7):
                mu, mv = body.color_xy[j]
                sel = magenta & ((hh - mv) ** 2 + (ww - mu) ** 2 <= 16)
                assert sel.sum() >= 9
                assert abs(ww[sel].mean() - mu) < 1.0 and abs(hh[sel].mean() - mv) < 1.0


def test_three_cameras_film_one_performance():
    # same performer/replication/action: camera skeletons differ by a rigid motion (+ 3 mm noise)
    cfg = syn.SynthConfig(performers=(4,), actions=(23,), frames=10, width=64, height=36)
    dists = []
    for cam in (1, 2, 3):
        _, seq, meta = syn.render_sample(cfg, f"S001C00{cam}P004R002A023")
        b = next(b for b in seq.frames[6] if b.body_id == meta["actor_body_ids"][0])
        dists.append(np.linalg.norm(b.xyz[:, None] - b.xyz[None], axis=-1))
    assert np.abs(dists[0] - dists[1]).max() < 0.03 and np.abs(dists[0] - dists[2]).max() < 0.03
    assert dists[0][8, 9] > 0.2  # the upper arm really is ~0.29 m


# ---------------------------------------------------------------------------- bodies & noise


def test_actors_and_noise_bodies(tiny_renders):
    names = syn.sample_names(TINY)
    noisy = {n: m["noise_bodies"] for n, (_, _, m) in tiny_renders.items() if m["noise_bodies"]}
    # documented rule: k = floor(noise_share * n + 0.5) samples, one noise body each
    assert len(noisy) == math.floor(0.5 * 12 + 0.5) == 6
    assert all(len(v) == 1 for v in noisy.values())
    kinds = [v[0]["kind"] for v in noisy.values()]
    assert kinds.count("short") == 3 and kinds.count("wide") == 3
    # same share rule on the default config: floor(0.3 * 360 + .5) = 108
    assert len(noise_plan(syn.SynthConfig())) == 108
    for name in names:
        _, seq, meta = tiny_renders[name]
        spans = _spans(seq)
        actors = meta["actor_body_ids"]
        assert len(actors) == (2 if parse_name(name).action == 58 else 1)
        for bid in actors:
            assert len(bid) == 17 and bid.startswith("720575940")
            assert [t for t, _ in spans[bid]] == list(range(TINY.frames))  # in every frame
            assert not _wide_frames([x for _, x in spans[bid]]).any()  # never implausibly wide
        noise_ids = [nb["body_id"] for nb in meta["noise_bodies"]]
        assert set(spans) == set(actors) | set(noise_ids)
        assert len(set(actors) | set(noise_ids)) == len(actors) + len(noise_ids)
        for nb in meta["noise_bodies"]:
            frames_present = [t for t, _ in spans[nb["body_id"]]]
            assert frames_present == list(
                range(nb["first_frame"], nb["first_frame"] + nb["num_frames"])
            )
            if nb["kind"] == "short":
                assert 5 <= len(frames_present) <= 11
            else:
                assert len(frames_present) >= 12
                wide = _wide_frames([x for _, x in spans[nb["body_id"]]])
                assert wide.mean() >= 0.69754


def test_noise_bodies_are_not_drawn(tiny_renders):
    # the same sample without noise (noise_share=0) renders to the identical video
    name = next(n for n, (_, _, m) in tiny_renders.items() if m["noise_bodies"])
    clean = dataclasses.replace(TINY, noise_share=0.0)
    frames, seq, meta = syn.render_sample(clean, name)
    assert meta["noise_bodies"] == []
    np.testing.assert_array_equal(frames, tiny_renders[name][0])
    assert seq.body_ids() == meta["actor_body_ids"]


def test_determinism(tiny_renders):
    name = "S001C002P001R001A058"
    frames, seq, meta = syn.render_sample(TINY, name)
    ref_frames, ref_seq, ref_meta = tiny_renders[name]
    np.testing.assert_array_equal(frames, ref_frames)
    assert format_skeleton(seq) == format_skeleton(ref_seq) and meta == ref_meta
    other = dataclasses.replace(TINY, seed=1)
    frames2, seq2, _ = syn.render_sample(other, name)
    assert np.abs(frames2.astype(int) - ref_frames).mean() > 1.0
    assert format_skeleton(seq2) != format_skeleton(ref_seq)


def test_replications_differ():
    cfg = syn.SynthConfig(
        performers=(1,), cameras=(1,), actions=(10,), frames=12, width=64, height=36
    )
    _, s1, _ = syn.render_sample(cfg, "S001C001P001R001A010")
    _, s2, _ = syn.render_sample(cfg, "S001C001P001R002A010")
    x1 = np.stack([b[0].xyz for b in s1.frames])
    x2 = np.stack([b[0].xyz for b in s2.frames])
    assert np.abs(x1 - x2).max() > 0.1


# ---------------------------------------------------------------------------- files


def test_synthesize_writes_parseable_files(tmp_path, tiny_renders):
    from rgbpose.data.video import import_decord

    decord = import_decord()

    names = ["S001C001P001R001A001", "S001C002P002R001A058"]
    metas = syn.synthesize(TINY, tmp_path, names=names)
    assert [m["name"] for m in metas] == names
    assert [m["label"] for m in metas] == [0, 57]
    doc = json.loads((tmp_path / "synthetic_meta.json").read_text())
    assert doc["config"]["performers"] == [1, 2] and doc["samples"] == metas
    for name in names:
        ref_frames, ref_seq, ref_meta = tiny_renders[name]
        assert metas[names.index(name)] == ref_meta
        seq = read_skeleton(tmp_path / f"{name}.skeleton")
        assert seq.num_frames == TINY.frames
        for bodies, ref_bodies in zip(seq.frames, ref_seq.frames):
            assert [b.body_id for b in bodies] == [b.body_id for b in ref_bodies]
            for b, rb in zip(bodies, ref_bodies):
                # 7 significant digits in the text format
                np.testing.assert_allclose(b.joints, rb.joints, rtol=6e-7, atol=1e-12)
                np.testing.assert_array_equal(b.tracking, rb.tracking)
        vr = decord.VideoReader(str(tmp_path / f"{name}_rgb.avi"))
        assert len(vr) == TINY.frames
        video = vr.get_batch(list(range(len(vr)))).asnumpy()
        assert video.shape == (TINY.frames, TINY.height, TINY.width, 3)
        assert vr.get_avg_fps() == pytest.approx(TINY.fps)
        # the encoded video is the rendered one (H.264 at CRF 18 + 4:2:0 chroma)
        assert np.abs(video.astype(int) - ref_frames).mean() < 4.0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"{n}.skeleton" for n in names] + [f"{n}_rgb.avi" for n in names] + ["synthetic_meta.json"]
    )
    with pytest.raises(ValueError, match="not samples"):
        syn.synthesize(TINY, tmp_path, names=["S001C003P001R001A001"])


def test_clis_and_contact_sheet(tmp_path):

    cfg_file = tmp_path / "synth.yaml"
    cfg_file.write_text("performers: [1]\ncameras: [1]\nreplications: [1]\nactions: [1, 2]\n")
    out = tmp_path / "raw"
    args = ["-o", str(out), "--config", str(cfg_file), "--frames", "6"]
    args += ["--width", "96", "--height", "54", "--only", "S001C001P001R001A002"]
    rc = syn.cli_synthesize(args)
    assert rc == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "S001C001P001R001A002.skeleton",
        "S001C001P001R001A002_rgb.avi",
        "synthetic_meta.json",
    ]
    assert read_skeleton(out / "S001C001P001R001A002.skeleton").num_frames == 6
    bad = tmp_path / "bad.yaml"
    bad.write_text("framez: 3\n")
    assert syn.cli_synthesize(["-o", str(out), "--config", str(bad)]) == 2

    png = tmp_path / "sheet.png"
    video = out / "S001C001P001R001A002_rgb.avi"
    assert cli_contact_sheet([str(video), str(video), "-o", str(png), "--frames", "3"]) == 0
    sheet = np.asarray(Image.open(png))
    # 2 rows of (180 px thumbnails + 2 px gap); label panel 260 px + 3 thumbnails of 320 px
    assert sheet.shape == (2 * (180 + 2), 260 + 3 * 320, 3)
    assert (sheet[:180, :260] < 128).any()  # the label text is drawn


def test_parallel_synthesis_matches_serial(tmp_path):
    cfg = syn.SynthConfig(
        performers=(1,),
        cameras=(1,),
        replications=(1, 2),
        actions=(27,),
        frames=6,
        width=64,
        height=36,
    )
    a = syn.synthesize(cfg, tmp_path / "a", jobs=1)
    b = syn.synthesize(cfg, tmp_path / "b", jobs=2)
    assert a == b
    for m in a:
        name = m["name"]
        assert (tmp_path / "a" / f"{name}.skeleton").read_text() == (
            tmp_path / "b" / f"{name}.skeleton"
        ).read_text()


# ---------------------------------------------------------------------------- masked depth


def _joint_depth_errors(depth, seq, meta):
    """Per real-body joint inside the depth frame: (frame, joint, z in mm, depth at its pixel)."""
    rows = []
    for t, bodies in enumerate(seq.frames):
        for b in bodies:
            if b.body_id not in meta["actor_body_ids"]:
                continue
            for j in range(25):
                u, v = (int(round(c)) for c in b.joints[j, 3:5])
                if 0 <= u < 512 and 0 <= v < 424:
                    rows.append((t, j, b.xyz[j, 2] * 1000.0, float(depth[t, v, u])))
    return np.array(rows)


def test_depth_matches_the_skeleton(tiny_renders):
    from rgbpose.synthetic.body import make_performer

    for name in ("S001C002P001R001A024", "S001C002P002R001A024", "S001C001P001R001A058"):
        depth = syn.render_depth(TINY, name)
        assert depth.shape == (TINY.frames, 424, 512) and depth.dtype == np.uint16
        _, seq, meta = tiny_renders[name]
        rows = _joint_depth_errors(depth, seq, meta)
        assert len(rows) >= 0.9 * TINY.frames * 25 * len(meta["actor_body_ids"])
        z, d = rows[:, 2], rows[:, 3]
        # the mask covers the person: every projected joint is on a non-zero pixel, and the
        # nearest surface at a joint's pixel is never behind the joint (z-buffer, mm rounding)
        assert (d > 0).all()
        assert (d <= z + 5).all()
        # a person is ~5% of the frame; the rest is background 0
        assert 0.01 < (depth > 0).mean() < 0.2
        # the body's surface is within its thickest radius (the torso) of every joint it hides
        perf = make_performer(TINY.seed, parse_name(name).performer)
        r_max = 1000 * 0.12 * perf.bulk * perf.scale
        if parse_name(name).action == 24:  # facing camera 2, standing at frame 0: all visible
            first = rows[rows[:, 0] == 0]
            assert len(first) == 25
            assert (np.abs(first[:, 2] - first[:, 3]) <= r_max + 5).all()
        assert np.median(z - d) < r_max


def test_synthesize_writes_depth_and_keeps_rgb_identical(tmp_path):
    import cv2

    name = "S001C001P002R001A058"
    syn.synthesize(TINY, tmp_path / "plain", names=[name])
    rc = syn.cli_synthesize(
        ["-o", str(tmp_path / "with"), "--config-json", json.dumps(_tiny_json()), "--only", name,
         "--depth-dir", str(tmp_path / "depth")]
    )  # fmt: skip
    assert rc == 0
    for f in (f"{name}_rgb.avi", f"{name}.skeleton", "synthetic_meta.json"):
        assert (tmp_path / "with" / f).read_bytes() == (tmp_path / "plain" / f).read_bytes()
    folder = tmp_path / "depth" / name
    files = sorted(p.name for p in folder.iterdir())
    assert files == [f"MDepth-{i:08d}.png" for i in range(1, TINY.frames + 1)]
    ref = syn.render_depth(TINY, name)
    for i, f in enumerate(files):
        img = cv2.imread(str(folder / f), cv2.IMREAD_UNCHANGED)
        assert img.dtype == np.uint16 and img.shape == (424, 512)
        np.testing.assert_array_equal(img, ref[i])
    assert [p.name for p in (tmp_path / "depth").iterdir()] == [name]  # no temp folders left
    # rewriting replaces the folder
    syn.synthesize(TINY, tmp_path / "with", names=[name], depth_dir=tmp_path / "depth")
    assert sorted(p.name for p in folder.iterdir()) == files
    # depth only (the workflow's synthesize_depth rule): the same frames, nothing else written
    rc = syn.cli_synthesize(["--depth-only", "--depth-dir", str(tmp_path / "only"),
                             "--config-json", json.dumps(_tiny_json()), "--only", name])  # fmt: skip
    assert rc == 0 and [p.name for p in (tmp_path / "only").iterdir()] == [name]
    for f in files:
        a = cv2.imread(str(folder / f), cv2.IMREAD_UNCHANGED)
        b = cv2.imread(str(tmp_path / "only" / name / f), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(a, b)
    with pytest.raises(SystemExit):  # --depth-only needs --depth-dir and excludes -o
        syn.cli_synthesize(["--depth-only", "-o", str(tmp_path / "x")])


def _tiny_json():
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(TINY).items()}
