"""reenactbook.prep: the paper's preprocessing of real videos into the shared dataset format.

Real data is read from REENACTBOOK_SAMPLES (the `samples_root` fixture); every bad file is made in tmp_path."""
import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from PIL import Image

from reenactbook.core import ConfigError, DataError, InputError
from reenactbook.config import load_options
from reenactbook.dataset import FaceDataset
from reenactbook.landmarks import template_points
from reenactbook.face_track import ALIGNMENT_EXTRA, AlignmentSmoother, alignment_jitter, crop_jitter, smoothed_alignment
from reenactbook.prep import contact_sheet, prepare_dataset
from reenactbook.video import VOXCELEB1_TEST_IDENTITIES, PrepConfig, assign_split, discover, iter_video_frames, read_image

EYES = np.stack([template_points(256)[36:42].mean(0), template_points(256)[42:48].mean(0)])


@pytest.fixture(scope="module")
def detectors():
    "The configured backends (auto: SCRFD + PFLD with REENACTBOOK_WEIGHTS, else dlib + face-api), loaded once."
    from reenactbook.pretrained import get_face_detector, get_landmark_detector
    return get_face_detector(), get_landmark_detector()


@pytest.fixture(scope="module")
def face_frame(samples_root) -> np.ndarray:
    "Frame 0 of a sample clip: 480x480 RGB, one frontal face about 250 px tall."
    with av.open(str(samples_root / "clips" / "lp_d6.mp4")) as container:
        return next(container.decode(video=0)).to_ndarray(format="rgb24")


def run(src, out, detectors, **options):
    "prepare_dataset in this process with the module's detectors."
    return prepare_dataset(src, out, options, workers=0, face_detector=detectors[0], landmark_detector=detectors[1])


def report(root):
    return json.loads((root / "report.json").read_text())


def reasons_of(root) -> dict:
    "Skipped item name -> reason."
    return {entry["item"].rsplit("/", 1)[-1]: entry["reason"] for entry in report(root)["skipped"]}


# ---------------------------------------------------------------- splits and inputs (no data needed)

def test_voxceleb1_split_is_the_verification_test_set():
    assert len(VOXCELEB1_TEST_IDENTITIES) == 40
    assert (VOXCELEB1_TEST_IDENTITIES[0], VOXCELEB1_TEST_IDENTITIES[-1]) == ("id10270", "id10309")
    split, rule = assign_split(["id10001", "id10269", "id10270", "id10309", "id10310", "id11251"])
    assert [split[i] for i in sorted(split)] == ["train", "train", "test", "test", "train", "train"]
    assert "id10270-id10309" in rule


def test_hash_split_is_deterministic_and_identity_disjoint(tmp_path):
    names = [f"speaker_{i}" for i in range(500)]
    split, rule = assign_split(names, "hash", test_fraction=0.2)
    assert split == assign_split(list(reversed(names)), "hash", test_fraction=0.2)[0]
    assert 0.14 < sum(v == "test" for v in split.values()) / len(names) < 0.26
    assert all(assign_split([n], "hash", test_fraction=0.2)[0][n] == split[n] for n in names[:50])  # independent of the others
    listed = tmp_path / "vox2_test.txt"
    listed.write_text("# VoxCeleb2 test identities\nspeaker_3\nspeaker_9\n")
    split, _ = assign_split(names[:12], "list", test_identities=listed)
    assert sorted(k for k, v in split.items() if v == "test") == ["speaker_3", "speaker_9"]
    with pytest.raises(ConfigError, match="cannot read"):
        assign_split(names, "list", test_identities=tmp_path / "missing.txt")
    with pytest.raises(ConfigError, match="test_identities"):
        load_options("tiny", ["prep.split=list"]).prep.check()


def test_discover_names_and_excludes_the_output(tmp_path):
    src = tmp_path / "src"
    for rel in ["id10270/vidA/00001.mp4", "id10270/vidA/00002.mp4", "id10001/vidB/00001.mp4",
                "id10002/vidC/00003/0001.jpg", "id10002/vidC/00003/0002.jpg", "alice/talk.mov", "alice/portrait.png",
                "bob.mp4", "README.txt", "out/frames/x/y/z/000000.jpg"]:
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(b"")
    units, ignored = discover(src, exclude=src / "out")
    got = {u.key: [(c.clip, c.kind) for c in u.clips] for u in units}
    assert got == {"alice/photos": [("portrait", "image")], "alice/talk": [("talk", "video")], "bob/bob": [("bob", "video")],
                   "id10001/vidB": [("00001", "video")], "id10002/vidC": [("00003", "frames")],
                   "id10270/vidA": [("00001", "video"), ("00002", "video")]}
    assert ignored == [{"item": str(src / "README.txt"), "reason": "not a video or image"}]
    with pytest.raises(InputError, match="no such file"):
        discover(tmp_path / "nowhere")


def test_images_of_every_kind_become_uint8_rgb(tmp_path):
    gray16 = (np.linspace(0, 65535, 64 * 48).reshape(48, 64)).astype(np.uint16)
    Image.fromarray(gray16).save(tmp_path / "g16.png")
    rgb16 = np.dstack([gray16, gray16 // 2, np.full_like(gray16, 65535)])
    cv2.imwrite(str(tmp_path / "c16.png"), rgb16[..., ::-1].copy())
    rgba = np.zeros((10, 10, 4), np.uint8); rgba[..., :3] = 200; rgba[2:8, 2:8, 3] = 255
    Image.fromarray(rgba).save(tmp_path / "a.png")
    for name in ("g16.png", "c16.png", "a.png"):
        image = read_image(tmp_path / name)
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3, name
    assert read_image(tmp_path / "g16.png")[-1, -1].tolist() == [255, 255, 255]
    assert int(read_image(tmp_path / "g16.png")[24, 32, 0]) == round(gray16[24, 32] / 257)  # scaled, not clipped at 255
    assert read_image(tmp_path / "c16.png")[-1, -1].tolist() == [255, 127, 255]  # 16-bit RGB: the high byte
    assert read_image(tmp_path / "a.png")[0, 0].tolist() == [0, 0, 0] and read_image(tmp_path / "a.png")[5, 5].tolist() == [200] * 3
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(InputError, match="not a readable image"):
        read_image(tmp_path / "bad.jpg")


# ---------------------------------------------------------------- real clips

def test_fps_sampling_and_truncated_video(samples_root, tmp_path):
    clip = samples_root / "clips" / "lp_d0.mp4"  # 78 frames at 25 fps
    assert [n for n, _ in iter_video_frames(clip, fps=1.0)] == [0, 25, 50, 75]
    assert [n for n, _ in iter_video_frames(clip, stride=30)] == [0, 30, 60]
    truncated = _truncated_copy(samples_root / "clips" / "lp_d18.mp4", tmp_path)
    frames = []
    with pytest.raises(Exception, match="decoding stopped|stream ended"):
        for n, _ in iter_video_frames(truncated, stride=10):
            frames.append(n)
    assert frames and frames[0] == 0 and frames[-1] < 215


def test_prep_cli_over_the_sample_clips(samples_root, tmp_path):
    "Acceptance: `reenactbook prep` over the 13 clips, in two worker processes: counts, shapes, split, faces on the template."
    from reenactbook.cli import main
    out = tmp_path / "dataset"
    per_clip = 3
    assert main(["prep", str(samples_root / "clips"), str(out), "--profile", "tiny",
                 "--overrides", f"prep.max_frames={per_clip}", "prep.frame_stride=10", "--workers", "2"]) == 0
    ds = FaceDataset(out)
    rep = report(out)
    index = ds.index
    assert ds.image_size == 256 and len(ds) == rep["frames_kept"]
    assert len(ds) + sum(rep["frames_skipped_by_reason"].values()) == 13 * per_clip
    assert len(ds) >= 12 * per_clip and ds.identities == sorted(p.stem for p in (samples_root / "clips").glob("*.mp4"))
    assert index.groupby("identity").size().max() <= per_clip
    assert (index["frame"] % 10 == 0).all()
    # landmarks: memory-mapped, 68 points (and 98 when the backend gives them), on the aligned faces
    points = ds.landmarks("68")
    assert isinstance(points, np.memmap) and points.shape == (len(ds), 68, 2) and points.dtype == np.float32
    if "98" in ds.layouts:
        assert ds.landmarks("98").shape == (len(ds), 98, 2)
    assert ((points > 0) & (points < 256)).all()
    eyes = np.stack([points[:, 36:42].mean(1), points[:, 42:48].mean(1)], 1)
    eye_error = np.linalg.norm(eyes - EYES, axis=-1)
    assert np.median(eye_error) < 4 and eye_error.max() < 16, eye_error.max()
    # identity-disjoint split, both sides present (rt_4 hashes into the test tenth)
    splits = index.groupby("identity")["split"].nunique()
    assert (splits == 1).all()
    assert set(index["split"]) == {"train", "test"}
    assert set(index.loc[index.split == "test", "identity"]) == {"rt_4"}
    # quality columns
    assert (index["face_size"] >= 128).all() and (index["blur"] >= PrepConfig().blur_threshold).all()
    assert np.isfinite(index[["yaw", "pitch", "roll", "det_score"]].to_numpy()).all()
    assert (np.abs(index[["yaw", "pitch"]].to_numpy()) < 45).all()  # the sample clips are near-frontal talking heads
    image = ds.image(0)
    assert image.shape == (256, 256, 3) and image.std() > 10
    assert json.loads((out / "options.json").read_text())["prep"]["max_frames"] == per_clip
    assert json.loads((out / "dataset.json").read_text())["prep"]["test_identities"] == ["rt_4"]
    # the contact sheet, written by default: one row per video (13), `columns` frames each, plus a label column and a title
    with Image.open(out / "contact_sheet.png") as im:
        assert im.size == (150 + 6 * 128, 18 + 13 * (128 + 14))
    sheet = contact_sheet(ds, tmp_path / "sheet.png", videos=5, columns=2, tile=96)
    with Image.open(sheet) as im:
        assert im.size == (150 + 2 * 96, 18 + 5 * (96 + 14))
        pixels = np.asarray(im.convert("RGB"))
    assert ((pixels == [0, 255, 0]).all(-1)).sum() > 5 * 2 * 30  # landmarks drawn on every tile


def test_tracking_follows_the_face_between_detections(samples_root, tmp_path, detectors):
    "Detecting every 5th frame and tracking in between gives the same aligned landmarks as detecting every frame."
    src = tmp_path / "src"; src.mkdir()
    (src / "lp_d3.mp4").symlink_to(samples_root / "clips" / "lp_d3.mp4")
    tracked = run(src, tmp_path / "tracked", detectors, max_frames=10, detect_every=5)
    detected = run(src, tmp_path / "detected", detectors, max_frames=10, detect_every=1, batch_size=5)
    a, b = tracked.dataset, detected.dataset
    assert len(a) == len(b) == 10 and (a.index["frame"].to_numpy() == b.index["frame"].to_numpy()).all()
    difference = np.abs(np.asarray(a.landmarks("68")) - np.asarray(b.landmarks("68"))).mean()
    assert difference < 2.0, difference
    stats = [json.loads(p.read_text()) for p in (tmp_path / "tracked" / "prep").glob("*.json")]
    assert stats[0]["detections"] < 10 and stats[0]["frames_kept"] == 10


def test_voxceleb_tree_and_frame_folders(samples_root, tmp_path, detectors):
    "id/video/clip.mp4 and id/video/clip/frames.jpg; the official split applies to VoxCeleb1 ids."
    src = tmp_path / "vox"
    (src / "id10270" / "vidA").mkdir(parents=True)
    (src / "id10270" / "vidA" / "00001.mp4").symlink_to(samples_root / "clips" / "lp_d18.mp4")
    (src / "id10001" / "vidB").mkdir(parents=True)
    (src / "id10001" / "vidB" / "00001.mp4").symlink_to(samples_root / "clips" / "lp_d19.mp4")
    frames = src / "id10002" / "vidC" / "00007"
    frames.mkdir(parents=True)
    for n, image in iter_video_frames(samples_root / "clips" / "rt_5.mp4", stride=20, max_frames=2):
        Image.fromarray(image).save(frames / f"{n:07d}.jpg", quality=95)
    result = run(src, tmp_path / "out", detectors, max_frames=2)
    index = result.dataset.index
    assert "VoxCeleb1" in result.split_rule
    assert dict(index.groupby("identity")["split"].first()) == {"id10001": "train", "id10002": "train", "id10270": "test"}
    assert sorted(index.loc[index.identity == "id10002", "frame"]) == [0, 20]
    assert set(index["clip"]) == {"00001", "00007"}


def _truncated_copy(clip, tmp_path):
    "A faststart copy of `clip` cut in half: the first frames decode, then the stream breaks."
    fast = tmp_path / "fast.mp4"
    with av.open(str(clip)) as source, av.open(str(fast), "w", options={"movflags": "faststart"}) as out:
        stream = out.add_stream_from_template(source.streams.video[0])
        for packet in source.demux(source.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)
    data = fast.read_bytes()
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(data[: len(data) // 2])
    return truncated


def test_bad_inputs_are_reported_and_nothing_is_lost(samples_root, tmp_path, detectors, face_frame):
    "Every bad file gets a reason in the report; the good ones in the same run are kept; a second run redoes nothing."
    person = tmp_path / "src" / "person"
    person.mkdir(parents=True)
    shutil.move(_truncated_copy(samples_root / "clips" / "lp_d18.mp4", tmp_path), person / "truncated.mp4")
    (person / "empty.mp4").write_bytes(b"")
    (person / "random.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    (person / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    (person / "notes.txt").write_text("not a video")
    face = face_frame
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (300, 300, 3), dtype=np.uint8)).save(person / "noface.png")
    Image.fromarray(face).convert("L").save(person / "gray.png")
    Image.fromarray(np.dstack([face, np.full(face.shape[:2], 255, np.uint8)])).save(person / "rgba.png")
    Image.fromarray((face.astype(np.float64).mean(2) * 257).astype(np.uint16)).save(person / "gray16.png")
    wide = np.zeros((480, 900, 3), np.uint8); wide[:, 100:580] = face
    Image.fromarray(wide).save(person / "nonsquare.jpg", quality=95)
    Image.fromarray(cv2.resize(face, (64, 64), interpolation=cv2.INTER_AREA)).save(person / "tiny.png")
    canvas = np.full((600, 600, 3), 128, np.uint8); canvas[200:400, 200:400] = cv2.resize(face, (200, 200), interpolation=cv2.INTER_AREA)
    Image.fromarray(canvas).save(person / "smallface.png")
    Image.fromarray(cv2.GaussianBlur(face, (0, 0), 6)).save(person / "blurry.png")  # about 4 px in the aligned face
    pair = np.zeros((480, 800, 3), np.uint8); pair[:, :480] = face; pair[90:390, 490:790] = cv2.resize(face, (300, 300), interpolation=cv2.INTER_AREA)
    Image.fromarray(pair).save(person / "twofaces.png")

    out = tmp_path / "out"
    result = run(tmp_path / "src", out, detectors, frame_stride=40)
    reasons = reasons_of(out)
    assert reasons["empty.mp4"] == "unreadable video" and reasons["random.mp4"] == "unreadable video"
    assert reasons["broken.jpg"] == "unreadable image" and reasons["notes.txt"] == "not a video or image"
    assert reasons["truncated.mp4"] == "truncated video"
    assert reasons["noface.png"] == "no face" and reasons["tiny.png"] == "too small" and reasons["smallface.png"] == "too small"
    assert reasons["blurry.png"] == "too blurry"
    index = result.dataset.index
    kept = set(index["clip"])
    assert {"gray", "rgba", "gray16", "nonsquare", "twofaces", "truncated"} <= kept
    assert not kept & {"empty", "random", "broken", "noface", "tiny", "smallface", "blurry"}
    assert sorted(index.loc[index["clip"] == "truncated", "frame"]) == [0, 40, 80]  # the frames before the break
    # several faces: the largest is kept, and the report says so
    assert index.loc[index["clip"] == "twofaces", "face_size"].item() > 200
    notes = report(out)["notes"]
    assert [n["item"].rsplit("/", 1)[-1] for n in notes] == ["twofaces.png"] and "largest" in notes[0]["note"]
    # a second run over the finished root: nothing redone, the same report
    again = run(tmp_path / "src", out, detectors, frame_stride=40)
    assert again.units_resumed == again.units and again.frames_seen == 0
    assert reasons_of(out) == reasons and len(again.dataset) == len(result.dataset)


def test_crash_in_the_middle_of_a_video_leaves_no_half_video(samples_root, tmp_path, detectors, monkeypatch):
    "An interrupt inside the second video: the first stays done, the second is not in the index; a re-run finishes it."
    from reenactbook import dataset
    src = tmp_path / "src"; src.mkdir()
    for name in ("lp_d19", "rt_5"):
        (src / f"{name}.mp4").symlink_to(samples_root / "clips" / f"{name}.mp4")
    original, calls = dataset.ShardWriter.add, []
    def crashing_add(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt("simulated crash")
        return original(self, *args, **kwargs)
    monkeypatch.setattr(dataset.ShardWriter, "add", crashing_add)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        run(src, out, detectors, max_frames=3)
    monkeypatch.setattr(dataset.ShardWriter, "add", original)
    assert sorted(p.name for p in (out / "shards").iterdir() if not p.name.endswith(".tmp")) == ["lp_d19_lp_d19"]
    result = run(src, out, detectors, max_frames=3)
    assert result.units_resumed == 1 and result.frames_seen == 3
    index = result.dataset.index
    assert len(index) == 6 and not index.duplicated(["identity", "video", "clip", "frame"]).any()


def test_a_failing_video_is_reported_and_the_run_goes_on(samples_root, tmp_path, detectors, monkeypatch):
    from reenactbook import prep
    src = tmp_path / "src"; src.mkdir()
    for name in ("lp_d19", "rt_5"):
        (src / f"{name}.mp4").symlink_to(samples_root / "clips" / f"{name}.mp4")
    original = prep.process_clip
    def failing(clip, unit, **parts):
        if unit.identity == "rt_5":
            raise RuntimeError("a bug in one video")
        return original(clip, unit, **parts)
    monkeypatch.setattr(prep, "process_clip", failing)
    result = run(src, tmp_path / "out", detectors, max_frames=2)
    assert result.units_failed == 1 and result.dataset.identities == ["lp_d19"]
    assert reasons_of(tmp_path / "out")["rt_5"] == "failed"


def test_unwritable_output_is_a_clear_data_error(samples_root, tmp_path, detectors, monkeypatch):
    src = tmp_path / "src"; src.mkdir()
    (src / "rt_5.mp4").symlink_to(samples_root / "clips" / "rt_5.mp4")
    (tmp_path / "a_file").write_text("")
    with pytest.raises(DataError, match="cannot write the dataset"):
        run(src, tmp_path / "a_file" / "out", detectors, max_frames=1)
    with pytest.raises(DataError, match="cannot write the dataset"):
        run(src, "/proc/reenactbook-read-only/out", detectors, max_frames=1)
    # a disk that fills up while frames are written
    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(Image.Image, "save", full)
    with pytest.raises(DataError, match="No space left on device"):
        run(src, tmp_path / "full", detectors, max_frames=1)
    monkeypatch.undo()
    assert not (tmp_path / "full" / "index.parquet").exists()
    assert len(run(src, tmp_path / "full", detectors, max_frames=1).dataset) == 1  # after freeing space: resumes


def test_bad_options_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="frame_stride"):
        prepare_dataset(tmp_path, tmp_path / "out", {"frame_stride": 0})
    with pytest.raises(InputError, match="no videos or images"):
        prepare_dataset(tmp_path, tmp_path / "out", {})


def test_a_worker_that_cannot_load_its_models_stops_the_run_with_the_reason(tmp_path, monkeypatch):
    "The worker initialiser keeps the error and every unit raises it again (not a vague 'worker process died')."
    import torch
    from reenactbook import prep
    threads = torch.get_num_threads()
    monkeypatch.setattr(prep, "_WORKER", {})
    prep._init_worker(str(tmp_path / "out"), {"face_detector": "no-such-backend"}, 1)
    torch.set_num_threads(threads)
    with pytest.raises(ConfigError, match="no-such-backend"):
        prep._work(prep.WorkUnit("a", "b"), "train")


# ---------------------------------------------------------------- steady crops (issue 15)

def _noisy_still_face(frames=40, noise=1.0, cut_at=None, seed=0):
    "Landmarks of a face that holds still while they shake by `noise` px; a 40 px jump (a cut) at `cut_at`."
    from reenactbook.alignment import alignment_matrix
    rng = np.random.default_rng(seed)
    face = template_points(256) * 0.8 + 100
    tracks = np.stack([face + rng.normal(0, noise, face.shape) + (40 if cut_at is not None and t >= cut_at else 0)
                       for t in range(frames)])
    return tracks, np.stack([alignment_matrix(p, 256) for p in tracks])


def _stream(tracks, matrices, sigma, numbers=None):
    numbers = list(range(len(tracks))) if numbers is None else numbers
    smoother, out = AlignmentSmoother(256, sigma), []
    for n, p, m in zip(numbers, tracks, matrices):
        out += smoother.push(n, p, m, n)
        assert len(smoother.numbers) <= 6 * sigma + 2  # memory stays bounded: a few frames around the pending ones
    out += smoother.flush()
    assert [item for item, _ in out] == numbers  # every frame, in order
    return np.stack([m for _, m in out])


def test_smoothing_steadies_the_crop_and_follows_a_cut():
    "Noisy landmarks of a still face: jitter of the crop corners falls more than 5x; a cut is followed at once, not blended."
    from reenactbook.alignment import transform_points
    tracks, own = _noisy_still_face(60, cut_at=30)
    smoothed = _stream(tracks, own, 2.0)
    for part in (slice(0, 30), slice(30, 60)):
        before, after = crop_jitter(np.arange(60)[part], own[part], 256), crop_jitter(np.arange(60)[part], smoothed[part], 256)
        assert after["jitter"] < before["jitter"] / 5 and after["motion"] < before["motion"] / 3, (before, after)
    for t in (29, 30):  # the frames on either side of the cut stay on their own face
        assert np.abs(transform_points(tracks[t], smoothed[t]) - transform_points(tracks[t], own[t])).mean() < 1.5
    # the streaming result is the centred smoothing of the whole track
    np.testing.assert_allclose(smoothed[17], smoothed_alignment(np.arange(60), tracks, own, 17, 256, 2.0), atol=1e-9)
    # sigma 0 and frames sampled far apart (1 fps) are aligned on their own
    np.testing.assert_allclose(_stream(tracks, own, 0.0), own)
    np.testing.assert_allclose(_stream(tracks, own, 2.0, numbers=[25 * t for t in range(60)]), own, atol=1e-9)


def test_smoothing_is_on_for_videos_and_its_effect_is_measured(samples_root, tmp_path, detectors):
    "30 consecutive frames of a real clip: the stored transforms give steadier crops than aligning each frame; images and landmarks agree."
    from reenactbook.alignment import invert_transform, transform_points
    assert PrepConfig().smooth_alignment > 0
    src = tmp_path / "src"; src.mkdir()
    (src / "lp_d10.mp4").symlink_to(samples_root / "clips" / "lp_d10.mp4")
    smoothed = run(src, tmp_path / "smoothed", detectors, max_frames=30)
    own = run(src, tmp_path / "own", detectors, max_frames=30, smooth_alignment=0)
    video = lambda ds: ds.index["clip"].to_numpy() == "lp_d10"
    table = alignment_jitter(smoothed.dataset).set_index("clip").loc["lp_d10"]
    assert table.frames == 30 and table.jitter_smoothed < table.jitter_own / 2 and table.motion_smoothed < table.motion_own
    # the run without smoothing stores each frame's own alignment
    plain = alignment_jitter(own.dataset).set_index("clip").loc["lp_d10"]
    assert abs(plain.jitter_smoothed - plain.jitter_own) < 0.05 and abs(plain.jitter_own - table.jitter_own) < 0.5
    # stored landmarks = the frame's own landmarks through the stored transform; eyes still on the template
    matrices = smoothed.dataset.extra(ALIGNMENT_EXTRA)[video(smoothed.dataset)]
    source = transform_points(smoothed.dataset.landmarks("68")[video(smoothed.dataset)].astype(np.float64), invert_transform(matrices))
    own_source = transform_points(own.dataset.landmarks("68")[video(own.dataset)].astype(np.float64),
                                  invert_transform(own.dataset.extra(ALIGNMENT_EXTRA)[video(own.dataset)]))
    assert np.abs(source - own_source).max() < 0.05  # the same faces were found, only the crops differ
    points = smoothed.dataset.landmarks("68")[video(smoothed.dataset)]
    eyes = np.stack([points[:, 36:42].mean(1), points[:, 42:48].mean(1)], 1)
    assert np.median(np.linalg.norm(eyes - EYES, axis=-1)) < 6


# ---------------------------------------------------------------- progress, contact sheet, lock, workers (issue 15)

def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def _env(**extra):
    return {**os.environ, "PYTHONUNBUFFERED": "1", **extra}


def _clips(samples_root, tmp_path, names, name="src"):
    src = tmp_path / name; src.mkdir()
    for n in names:
        (src / f"{n}.mp4").symlink_to(samples_root / "clips" / f"{n}.mp4")
    return src


PROGRESS_LINE = re.compile(r"prep: \d+/\d+ videos \(\d+%\), \d+ frames, \d+\.\d frames/s, \d+:\d\d elapsed")


def test_prep_in_a_log_prints_progress_lines_one_summary_and_a_contact_sheet(samples_root, tmp_path):
    "Not on a terminal: periodic lines with videos done and frames/s (counted inside two workers); the summary once."
    src = _clips(samples_root, tmp_path, ["lp_d19", "rt_5"])
    out = tmp_path / "out"
    run_cli = subprocess.run(_python("from reenactbook.cli import main; raise SystemExit(main())") + [
        "prep", str(src), str(out), "--profile", "sample", "--workers", "2", "--overrides", "prep.max_frames=30"],
        capture_output=True, text=True, env=_env(REENACTBOOK_PROGRESS_EVERY="0.5", REENACTBOOK_NO_PROGRESS=""), timeout=600)
    log = run_cli.stdout + run_cli.stderr
    assert run_cli.returncode == 0, log[-3000:]
    lines = [line for line in log.splitlines() if PROGRESS_LINE.search(line)]
    assert lines, log[-3000:]
    assert any(int(re.search(r"(\d+) frames,", line).group(1)) > 0 for line in lines)  # frames counted while videos run
    assert "\r" not in log and "it/s" not in log  # no progress bar drawn into the log
    assert sum("this run 60 frames" in line for line in log.splitlines()) == 1, log[-3000:]  # the summary, once
    assert "contact sheet contact_sheet.png" in log and (out / "contact_sheet.png").exists()


def test_a_second_prep_on_the_same_output_exits_with_one_line(samples_root, tmp_path, detectors):
    "While a run holds the root, another prep (API or CLI) stops at once, writing nothing; the first run's report is right."
    from reenactbook.cli import main
    src = _clips(samples_root, tmp_path, ["rt_5"])
    out = tmp_path / "out"
    holder = subprocess.Popen(_python("import sys, time\nfrom reenactbook.dataset import writer_lock\n"
                                      f"with writer_lock({str(out)!r}):\n    print('locked', flush=True); time.sleep(120)"),
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(DataError, match=rf"{re.escape(str(out))} is being written by `reenactbook prep` \(pid {holder.pid}"):
            run(src, out, detectors, max_frames=2)
        cli = subprocess.run(_python("from reenactbook.cli import main; raise SystemExit(main())") + ["prep", str(src), str(out)],
                             capture_output=True, text=True, env=_env(), timeout=300)
        assert cli.returncode == 2
        assert cli.stderr.strip().splitlines()[-1].startswith(f"reenactbook prep: error: {out} is being written by")
        assert sorted(p.name for p in out.iterdir()) == [".lock"]  # nothing written by the refused runs
    finally:
        holder.kill(); holder.wait()
    result = run(src, out, detectors, max_frames=2)
    assert result.units_failed == 0 and len(result.dataset) == 2 and report(out)["skipped"] == []


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def _alive(pid: int) -> bool:
    "Running (not gone, not a zombie waiting to be reaped)."
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_workers_end_when_prep_is_killed(samples_root, tmp_path):
    "kill -9 of a real prep process: its two worker processes end within seconds and commit nothing afterwards; a re-run resumes."
    src = _clips(samples_root, tmp_path, ["lp_d0", "lp_d6", "lp_d10", "lp_d12"])
    out = tmp_path / "out"
    parent = subprocess.Popen(_python("import sys\nfrom reenactbook.prep import prepare_dataset\n"
                                      f"prepare_dataset({str(src)!r}, {str(out)!r}, {{'contact_sheet': False}}, workers=2)"),
                              stderr=subprocess.PIPE, text=True, env=_env(REENACTBOOK_PROGRESS_EVERY="0.5", REENACTBOOK_NO_PROGRESS=""))
    try:
        deadline = time.monotonic() + 300
        for line in parent.stderr:  # wait until the workers are reading frames
            match = re.search(r"(\d+) frames,", line)
            if (match and int(match.group(1)) >= 4) or time.monotonic() > deadline:
                break
        workers = [p for p in _children(parent.pid) if "spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes().decode(errors="replace")]
        assert len(workers) == 2, workers
        os.kill(parent.pid, signal.SIGKILL)
        killed_at = time.time()
        parent.wait()
    finally:
        if parent.poll() is None:
            parent.kill()
    deadline = time.monotonic() + 10
    while any(map(_alive, workers)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(map(_alive, workers)), "worker processes outlived the killed prep"
    time.sleep(2)
    shards = [p for p in (out / "shards").iterdir() if not p.name.endswith(".tmp")] if (out / "shards").exists() else []
    assert all(p.stat().st_mtime <= killed_at + 0.5 for p in shards)  # nothing committed after the parent died
    assert len(shards) < 4
