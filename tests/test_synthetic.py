"""The synthetic talking-face dataset: determinism, ground truth, format, identity in the geometry, caching, CLI and errors."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from reenactbook.cli import main
from reenactbook.core import ConfigError, DataError, InputError, sha256_file
from reenactbook.config import load_options
from reenactbook.dataset import FaceDataset
from reenactbook.landmarks import WFLW98_TO_68
from reenactbook.alignment import alignment_matrix, head_pose
from reenactbook.face_model import APPEARANCE_SIZE, EXPRESSION_MODES, IDENTITY_MODES, face_model, sample_identity, sample_motion
from reenactbook.render import render_video
from reenactbook.synthetic import (EXTRAS, SynthConfig, contact_sheet, expression_vector, identity_separability, render_poses, synthesize, held_out_identities, tiny_dataset)

SMALL = dict(identities=4, videos=2, frames=5, size=64)


def hashes(root: Path) -> dict:
    return {str(p.relative_to(root)): sha256_file(p) for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> FaceDataset:
    return synthesize(tmp_path_factory.mktemp("synth") / "small", **SMALL, show_progress=False)


def test_same_seed_gives_byte_identical_files(tmp_path, small):
    again = synthesize(tmp_path / "again", **SMALL, show_progress=False)
    first, second = hashes(small.root), hashes(again.root)
    assert first == second
    assert sum(name.endswith(".jpg") for name in first) == 4 * 2 * 5
    other = synthesize(tmp_path / "other", **SMALL, seed=1, show_progress=False)
    assert hashes(other.root)["landmarks68.npy"] != first["landmarks68.npy"]


def test_resume_after_interruption_gives_the_same_files(tmp_path, small):
    root = tmp_path / "resumed"
    synthesize(root, **SMALL, show_progress=False)
    # simulate a crash after two videos: drop the other shards, their frames and the merged files
    for shard in sorted((root / "shards").iterdir())[2:]:
        for f in sorted(shard.rglob("*"), reverse=True):
            f.unlink() if f.is_file() else f.rmdir()
        shard.rmdir()
    for name in ("dataset.json", "index.parquet", "landmarks68.npy"):
        (root / name).unlink()
    synthesize(root, **SMALL, show_progress=False)
    assert hashes(root) == hashes(small.root)


def test_format_and_ground_truth(small):
    ds = FaceDataset(small.root)
    assert len(ds) == 40 and ds.image_size == 64 and ds.layouts == ["68", "98"]
    assert ds.image(0).shape == (64, 64, 3)
    shapes = {name: ds.extra(name).shape[1:] for name in EXTRAS}
    assert shapes == {"identity_params": (len(IDENTITY_MODES),), "appearance": (APPEARANCE_SIZE,), "expression": (len(EXPRESSION_MODES),),
                      "pose": (3,), "gaze": (2,), "landmarks3d": (68, 3)}
    np.testing.assert_array_equal(ds.landmarks("98")[:, WFLW98_TO_68], ds.landmarks("68"))
    np.testing.assert_array_equal(ds.extra("landmarks3d")[..., :2], ds.landmarks("68"))
    np.testing.assert_allclose(ds.extra("pose"), ds.index[["yaw", "pitch", "roll"]].to_numpy(), atol=1e-5)
    # the identity parameters are those of the person, the same in every frame of them
    for name, rows in ds.index.groupby("identity").groups.items():
        params = ds.extra("identity_params")[np.asarray(rows)]
        np.testing.assert_array_equal(params, np.broadcast_to(params[0], params.shape))
        np.testing.assert_allclose(params[0], sample_identity(0, int(name[5:])).shape, atol=1e-6)
    meta = json.loads((ds.root / "dataset.json").read_text())
    assert meta["synthetic"]["identity_modes"] == list(IDENTITY_MODES)
    # landmarks lie inside the crop, on a face of plausible size
    lm = ds.landmarks("68")
    assert lm.min() > 0 and lm.max() < 64
    assert 10 < ds.index["face_size"].min() and ds.index["face_size"].max() < 64


def test_frames_are_aligned_like_prep(small):
    "Aligning the stored landmarks again (what prep does to real faces) is the identity."
    for i in (0, 17, 39):
        np.testing.assert_allclose(alignment_matrix(small.landmarks("68")[i], 64), np.eye(2, 3), atol=1e-4)


def test_split_is_identity_disjoint(small):
    splits = small.index.groupby("split")["identity"].unique()
    assert set(splits.index) == {"train", "test"}
    assert not set(splits["train"]) & set(splits["test"])
    assert held_out_identities(SynthConfig(identities=16)) == held_out_identities(SynthConfig(identities=16))
    assert len(held_out_identities(SynthConfig(identities=16))) == 4
    assert held_out_identities(SynthConfig(identities=1)) == [] and held_out_identities(SynthConfig(identities=8, test_fraction=0)) == []


def test_pose_convention_matches_head_pose():
    person = sample_identity(0, 2)
    person.shape[:] = 0
    poses = np.array([[0, 0, 0], [30, 0, 0], [-30, 0, 0], [0, 15, 0], [0, -15, 0]], np.float32)
    motion = sample_motion(0, 2, 0, len(poses))
    motion.pose[:], motion.expression[:], motion.translation[:] = poses, 0, 0
    estimated = head_pose(render_video(person, motion, 128).landmarks68, 128)
    np.testing.assert_allclose(estimated[:, :2] - estimated[0, :2], poses[:, :2], atol=4.0)


def test_identity_is_visible_in_the_landmarks(tmp_path):
    ds = synthesize(tmp_path / "people", identities=12, videos=3, frames=12, size=64, show_progress=False)
    result = identity_separability(ds)
    print(f"\nnearest-centroid identity accuracy: {result['accuracy']:.3f} (chance {result['chance']:.3f}, "
          f"{result['identities']} people, {result['test_frames']} test frames)")
    assert result["accuracy"] > 4 * result["chance"]


def test_contact_sheet_rows_are_people(tmp_path):
    path = tmp_path / "sheet.png"
    sheet = contact_sheet(path, identities=3, yaws=(-30.0, 30.0), expressions=("neutral", "smile"), size=64)
    assert path.stat().st_size > 1000 and sheet.shape == (14 + 3 * 64, 4 * 64, 3)
    # colour histograms: the same person at another pose is closer than another person at the same pose
    def hist(img):
        h = np.stack([np.histogram(img[..., c], bins=16, range=(0, 256))[0] for c in range(3)]).astype(float)
        return h / h.sum()
    cells = [[sheet[14 + r * 64:14 + (r + 1) * 64, c * 64:(c + 1) * 64] for c in range(4)] for r in range(3)]
    for r in range(3):
        same = np.abs(hist(cells[r][0]) - hist(cells[r][2])).sum()
        others = [np.abs(hist(cells[r][0]) - hist(cells[o][0])).sum() for o in range(3) if o != r]
        assert same < min(others)


def test_expressions_move_the_right_points():
    model = face_model()
    neutral = model.shape(np.zeros(16), np.zeros(8))
    opened = model.shape(np.zeros(16), expression_vector("jaw_open"))
    assert opened[57, 1] - neutral[57, 1] > 0.3                # the lower lip drops (y is down)
    assert np.abs(opened[36:48] - neutral[36:48]).max() < 1e-9  # the eyes do not move
    frames = render_poses(sample_identity(0, 1), [(0, 0, 0)] * 2, expressions=np.stack([expression_vector("neutral"), expression_vector("blink")]),
                          size=64)
    assert np.abs(frames[0].astype(int) - frames[1].astype(int)).max() > 40


def test_bad_arguments_give_clear_errors(tmp_path):
    for kwargs, message in ((dict(size=100), "synth.size=100"), (dict(size=-64), "synth.size=-64"), (dict(size=0), "synth.size=0"),
                            (dict(identities=0), "synth.identities=0: need at least 1"), (dict(frames=0), "synth.frames=0")):
        with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
            synthesize(tmp_path / "never", **kwargs)
    assert not (tmp_path / "never").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match="cannot write the dataset here"):
        synthesize(tmp_path / "file" / "data", **SMALL)
    with pytest.raises(ConfigError, match="expected int"):
        load_options("tiny", ["synth.size=big"])
    with pytest.raises(InputError, match="unknown expression"):
        expression_vector("laugh")


def test_refuses_a_folder_with_other_data(tmp_path, small):
    with pytest.raises(DataError, match=r"other settings \(differing: frames\)"):
        synthesize(small.root, **{**SMALL, "frames": 6})
    foreign = tmp_path / "foreign"
    (foreign / "shards" / "x").mkdir(parents=True)
    with pytest.raises(DataError, match="not made by `reenactbook synth`"):
        synthesize(foreign, **SMALL)


def test_tiny_dataset_is_cached(cache):
    first = tiny_dataset(identities=3, videos=2, frames=4)
    stamp = (first.root / "dataset.json").stat().st_mtime_ns
    second = tiny_dataset(identities=3, videos=2, frames=4)
    assert second.root == first.root and (second.root / "dataset.json").stat().st_mtime_ns == stamp
    assert first.root.parent == cache / "synthetic"
    assert tiny_dataset(identities=3, videos=2, frames=4, seed=1).root != first.root


def test_cli(tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["synth", "--identities", "2", "--videos", "1", "--frames", "3", "--size", "64", "--out", str(out),
                 "--overrides", "synth.max_yaw=20"]) == 0
    options = json.loads((out / "options.json").read_text())
    assert options["synth"]["identities"] == 2 and options["synth"]["max_yaw"] == 20
    assert np.abs(FaceDataset(out).index["yaw"]).max() <= 20
    assert main(["synth", "--size", "100", "--out", str(tmp_path / "bad")]) == 2
    assert "synth.size=100" in capsys.readouterr().err
    help_text = subprocess.run([str(Path(sys.executable).parent / "reenactbook"), "synth", "--help"], capture_output=True, text=True)
    assert help_text.returncode == 0 and "--identities" in help_text.stdout and "--out" in help_text.stdout


def test_landmark_tracks_for_the_lsg():
    "sample_tracks: many people beyond the 16 named modes, deterministic, people stable across calls, far strides and turns."
    from reenactbook.tracks import DETAIL_MODES, detail_basis, sample_tracks, track_identities
    tracks = sample_tracks(512, 8, seed=3, identities=4096)
    assert tracks.landmarks.shape == (512, 8, 68, 2) and tracks.landmarks.dtype == np.float32
    assert np.isfinite(tracks.landmarks).all() and tracks.coefficients.shape == (512, len(IDENTITY_MODES) + DETAIL_MODES)
    assert len(set(tracks.people.tolist())) > 400                       # hundreds of people in one batch
    assert tracks.stride.min() >= 1 and tracks.stride.max() == 25       # up to one second at 25 fps
    assert np.abs(tracks.pose[:, -1, 0] - tracks.pose[:, 0, 0]).max() > 40
    again = sample_tracks(512, 8, seed=3, identities=4096)
    assert np.array_equal(again.landmarks, tracks.landmarks)
    other = sample_tracks(4, 8, seed=4, people=tracks.people[:4])
    np.testing.assert_allclose(other.coefficients, tracks.coefficients[:4])
    np.testing.assert_allclose(track_identities(tracks.people[:4]), tracks.coefficients[:4], rtol=1e-6)
    # the fine modes make faces the named modes cannot: their part outside the span of the 16 named modes is not small
    model = face_model()
    named = model.identity_basis.reshape(len(IDENTITY_MODES), -1).T
    fine = detail_basis(model.mean).reshape(DETAIL_MODES, -1).T
    outside = fine - named @ np.linalg.lstsq(named, fine, rcond=None)[0]
    assert np.linalg.norm(outside) > 0.8 * np.linalg.norm(fine)
    assert not np.allclose(detail_basis(model.mean, seed=1), detail_basis(model.mean, seed=0))
    with pytest.raises(InputError, match="count >= 1"):
        sample_tracks(0)


def test_rendered_dataset_keeps_its_16_identity_modes():
    "The track model's extra modes do not change the rendered dataset's identity parameters (tiny_dataset stays as it was)."
    assert face_model().identity_basis.shape == (16, 68, 3)
    with pytest.raises(InputError, match="16 values"):
        face_model().shape(np.zeros(40))
