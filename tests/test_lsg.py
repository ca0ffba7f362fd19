"""The landmark sequence generator (reenactbook.lsg, lsg_inputs, lsg_train): networks, the LI baseline, training, resume, inference, CLI, evaluation."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from reenactbook.core import CheckpointError, ConfigError, InputError
from reenactbook.config import load_options
from reenactbook.checkpoints import load_checkpoint, save_checkpoint
from reenactbook.lsg import (IdentityConsistencyDiscriminator, HiddenIdentityClassifier, LandmarkIdentityClassifier,
                             LandmarkSequenceGenerator, LandmarkSequenceNet, RealnessDiscriminator, denoise_endpoints,
                             generate_sequence, head_rotation, interpolation_base, linear_interpolation, rotation_trajectory, sketch_strip)
from reenactbook.lsg_inputs import eye_centre_scale
from reenactbook.lsg_train import LSGTrainer, lsg_cli, lsg_windows, max_frames, pretrained_lsg, train_lsg, train_lsg_cli
from reenactbook.face_fit import random_faces
from reenactbook.face_model import camera_rotation, face_model
from reenactbook.landmarks import WFLW98_TO_68, interocular_distance, read_pts, write_pts
from reenactbook.lsg_eval import evaluate_sequences
from reenactbook.tracks import sample_tracks
from reenactbook.views import _example_dataset

FIXTURES = Path(__file__).parent / "fixtures" / "checkpoints"
SMALL = {"lsg.hidden": 16, "lsg.head_hidden": 16, "lsg.batch_size": 8, "lsg.log_every": 2, "lsg.checkpoint_every": 3,
         "lsg.synthetic_identities": 32}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return _example_dataset(tmp_path_factory.mktemp("lsg") / "ds", identities=4, videos=2, frames=12)


@pytest.fixture(scope="module")
def trained(dataset, tmp_path_factory):
    options = load_options("tiny", {**SMALL, "lsg.steps": 6})
    return train_lsg(options, tmp_path_factory.mktemp("run"), dataset=dataset, show_progress=False)


def endpoints(batch=3, seed=0):
    rng = np.random.default_rng(seed)
    base = random_faces(1, seed=9, max_yaw=20)[0][0].numpy()          # a face (the 3D base refuses sets that are not faces)
    return (base + rng.normal(0, 2, (batch, 68, 2))).astype(np.float32), (base + rng.normal(0, 2, (batch, 68, 2))).astype(np.float32)


def test_generator_shapes_and_residual_structure():
    net = LandmarkSequenceNet(68, hidden=24, layers=2)
    start, end = (torch.from_numpy(a) for a in endpoints())
    with torch.no_grad():
        for p in net.parameters():  # any weights, but zero output layers: G_l's shift is zero
            p.normal_(0, 0.3)
        net.to_shift.weight.zero_(); net.to_shift.bias.zero_()
        sequence, shift, states = generate_sequence(net, start, end, 8)
    assert sequence.shape == shift.shape == (3, 8, 68, 2) and states.shape == (3, 8, 48)
    assert torch.equal(sequence, torch.from_numpy(linear_interpolation(start.numpy(), end.numpy(), 8)))
    with torch.no_grad():
        net.to_shift.bias.normal_(0, 0.1); net.to_shift.weight.normal_(0, 0.1)
        moved = generate_sequence(net, start, end, 8)[0]
        refined = generate_sequence(net, start, end, 8, refine=True)[0]
    assert torch.equal(moved[:, 0], start) and torch.equal(moved[:, -1], end)  # pinned by construction, whatever the weights
    assert (moved[:, 1:-1] != sequence[:, 1:-1]).any()
    assert not torch.equal(refined[:, 0], start) and not torch.equal(refined[:, -1], end)  # Figure 7 mode moves them


def test_no_training_shape_space_on_the_path(trained):
    "An unseen face far outside the training people (scaled, rotated, another face model) comes back exactly at the endpoints."
    model = LandmarkSequenceGenerator.from_checkpoint(trained, "cpu")
    tracks = sample_tracks(16, 8, seed=5, people_seed=99, detail_seed=99, identity_scale=2.0).landmarks
    out = model.lsg(tracks[:, 0], tracks[:, -1])
    assert np.abs(out[:, 0] - tracks[:, 0]).max() <= 0.01 and np.abs(out[:, -1] - tracks[:, -1]).max() <= 0.01


def test_head_pose_trajectory_is_slerped():
    mean = face_model().mean
    faces = [torch.tensor((mean @ camera_rotation([yaw, 0.0, 0.0]).T)[:, :2] * 60 + 200, dtype=torch.float32) for yaw in (-30.0, 0.0, 30.0)]
    rotation = head_rotation(torch.stack(faces))
    torch.testing.assert_close(rotation[1], torch.eye(3), atol=0.03, rtol=0)
    trajectory = rotation_trajectory(faces[0][None], faces[2][None], 3)
    # the middle of a -30 -> +30 degree turn is the frontal face: the identity quaternion (up to sign)
    assert abs(float(trajectory[0, 1, 0])) > 0.999


def test_discriminator_and_classifier_outputs():
    start, end = (torch.from_numpy(a) for a in endpoints(5))
    d1, d2 = RealnessDiscriminator(68, 32), IdentityConsistencyDiscriminator(68, 32)
    s1, s2 = LandmarkIdentityClassifier(68, 7, 32), HiddenIdentityClassifier(20, 7, 32)
    with torch.no_grad():
        assert d1(start).shape == (5,) and d2(start, end).shape == (5,)
        assert s1(start).shape == (5, 7) and s2(torch.randn(5, 8, 20)).shape == (5, 7)
        for p in (d1.probability(start * 100), d2.probability(start, -end), s1(start).softmax(-1)):
            assert ((p >= 0) & (p <= 1)).all()
        # shape-normalised: moving and scaling a face does not change D1's verdict
        torch.testing.assert_close(d1(start), d1(start * 2 + 30), rtol=1e-4, atol=1e-4)


def test_linear_interpolation_exact_endpoints_and_kinds():
    a, b = endpoints(4)
    for k in (2, 3, 8, 17):
        seq = linear_interpolation(a, b, k)
        assert seq.shape == (4, k, 68, 2) and isinstance(seq, np.ndarray)
        assert np.array_equal(seq[:, 0], a) and np.array_equal(seq[:, -1], b)
    torch_seq = linear_interpolation(torch.from_numpy(a[0]), torch.from_numpy(b[0]), 8)
    assert isinstance(torch_seq, torch.Tensor) and torch_seq.shape == (8, 68, 2)
    np.testing.assert_allclose(torch_seq[4].numpy(), a[0] + 4 / 7 * (b[0] - a[0]), rtol=1e-5)


@pytest.mark.parametrize("make, message", [
    (lambda a, b: (a, b, 1), "k must be an integer >= 2"),
    (lambda a, b: (a, b, 2.5), "k must be an integer >= 2"),
    (lambda a, b: (a, b[:2], 8), "batch of 3, p_end of 2"),
    (lambda a, b: (a[:, :60], b[:, :60], 8), "trained on 68-point landmarks, got 60"),
    (lambda a, b: (a, b[:, :, :1], 8), "shape [P,2] or [B,P,2]"),
    (lambda a, b: (np.where(np.arange(68)[None, :, None] == 3, np.nan, a), b, 8), "NaN or infinite"),
    (lambda a, b: (a, "nonsense", 8), "p_end"),
    (lambda a, b: (np.zeros_like(a), b, 8), "p_start: all 68 points are equal"),
    (lambda a, b: (a, np.where(np.isin(np.arange(68), range(36, 48))[None, :, None], b[:, 40:41], b), 8), "p_end: degenerate face"),
])
def test_bad_input_is_refused_clearly(trained, make, message):
    model = LandmarkSequenceGenerator.from_checkpoint(trained, "cpu")
    a, b = endpoints()
    with pytest.raises(InputError, match=message.replace("[", r"\[").replace("]", r"\]")):
        model.lsg(*make(a, b))


def test_resume_continues_exactly(dataset, tmp_path):
    options = load_options("tiny", {**SMALL, "lsg.steps": 7})
    whole = train_lsg(options, tmp_path / "whole", dataset=dataset, show_progress=False)
    train_lsg(options, tmp_path / "parts", dataset=dataset, steps=3, show_progress=False)
    assert load_checkpoint(tmp_path / "parts" / "lsg.safetensors").meta["step"] == 3
    resumed = train_lsg(options, tmp_path / "parts", dataset=dataset, show_progress=False)
    a, b = load_checkpoint(whole), load_checkpoint(resumed)
    assert a.meta["step"] == b.meta["step"] == 7
    for net in ("generator", "s2", "d1", "d2", "s1"):
        for key, value in a.state[net].items():
            assert torch.equal(value, b.state[net][key]), f"{net}.{key} differs after resume"
    assert torch.equal(a.state["optim_g"]["state"][0]["exp_avg"], b.state["optim_g"]["state"][0]["exp_avg"])
    strip = lambda path: [line.rsplit(",", 1)[0] for line in path.read_text().splitlines()]
    assert strip(tmp_path / "whole" / "losses.csv") == strip(tmp_path / "parts" / "losses.csv")


def test_training_writes_logs_and_checkpoint(trained):
    run = trained.parent
    header, *rows = (run / "losses.csv").read_text().splitlines()
    for term in ("d1", "d2", "s1_real", "g_d1", "g_d2", "g_s1", "g_s2", "reconstruction", "g_total"):
        assert term in header.split(",")
    assert [int(r.split(",")[0]) for r in rows] == [2, 4, 6]
    assert (run / "losses.png").stat().st_size > 1000 and (run / "options.json").exists()
    assert json.loads((run / "lsg.json").read_text())["meta"]["step"] == 6


def test_inference_batched_and_single(trained, dataset):
    model = LandmarkSequenceGenerator.from_checkpoint(trained, "cpu")
    x, _ = lsg_windows(dataset, load_options("tiny")).tensors()
    batch = model.lsg(x[:10, 0], x[:10, -1])
    assert batch.shape == (10, 8, 68, 2) and batch.dtype == torch.float32
    single = model.lsg(x[3, 0].numpy(), x[3, -1].numpy(), k=8)
    assert isinstance(single, np.ndarray) and single.shape == (8, 68, 2)
    np.testing.assert_allclose(single, batch[3].numpy(), rtol=1e-4, atol=1e-3)
    assert torch.equal(batch[:, 0], x[:10, 0]) and torch.equal(batch[:, -1], x[:10, -1])
    model.strength = (model.strength[0], 1.0, 1.0)   # refine at full strength, without the geometric step (training may have validated less)
    refined = model.lsg(x[:10, 0], x[:10, -1], refine_endpoints=True)
    assert torch.equal(refined[:, 1:-1], batch[:, 1:-1]) and not torch.equal(refined[:, 0], x[:10, 0])
    assert model.lsg(x[:2, 0], x[:2, -1], k=5).shape == (2, 5, 68, 2)


def test_checkpoint_errors(tmp_path):
    other = save_checkpoint(tmp_path / "other.safetensors", {"w": torch.zeros(2)}, {"kind": "reenactor"})
    with pytest.raises(CheckpointError, match="not an LSG checkpoint"):
        LandmarkSequenceGenerator.from_checkpoint(other)
    reenactor = save_checkpoint(tmp_path / "reenactor.safetensors", {"w": torch.zeros(2)}, {"kind": "reenactor-training"})
    with pytest.raises(CheckpointError, match="reenactor.safetensors is a reenactor checkpoint, not an LSG"):
        LandmarkSequenceGenerator.from_checkpoint(reenactor)
    old = save_checkpoint(tmp_path / "old.safetensors", {"generator": {"skip.weight": torch.zeros(136, 136)}},
                          {"kind": "lsg", "num_points": 68, "k": 8, "options": {"lsg": {"prior_components": 24}}})
    with pytest.raises(CheckpointError, match="older version"):
        LandmarkSequenceGenerator.from_checkpoint(old)
    (tmp_path / "broken.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(CheckpointError):
        LandmarkSequenceGenerator.from_checkpoint(tmp_path / "broken.safetensors")


def test_cli_train_and_generate(dataset, tmp_path):
    overrides = [f"run.data_root={dataset.root}", *(f"{k}={v}" for k, v in SMALL.items()), "lsg.steps=4"]
    checkpoint = train_lsg_cli("tiny", overrides, out=str(tmp_path / "run"))
    for name in ("lsg.safetensors", "options.json", "losses.csv", "losses.png"):
        assert (tmp_path / "run" / name).exists()
    a, b = endpoints(1)
    write_pts(tmp_path / "a.pts", a[0]); write_pts(tmp_path / "b.pts", b[0])
    sequence = lsg_cli(str(tmp_path / "a.pts"), str(tmp_path / "b.pts"), k=6, checkpoint=str(checkpoint), out=str(tmp_path / "out"))
    assert sequence.shape == (6, 68, 2)
    np.testing.assert_allclose(np.load(tmp_path / "out" / "sequence.npy"), sequence)
    np.testing.assert_allclose(read_pts(tmp_path / "out" / "frame_05.pts"), sequence[5], rtol=1e-4)
    np.testing.assert_allclose(sequence[[0, -1]], np.stack([a[0], b[0]]), atol=0.01)
    from PIL import Image
    strip = np.asarray(Image.open(tmp_path / "out" / "strip.png"))
    assert strip.shape[:2] == (2 * 128, 7 * 128)  # two rows, a label column and six frames
    assert (strip[:, :128] == 255).mean() > 0.9 and (strip[:, :128] < 128).any()  # the label column: dark text on white
    with pytest.raises(InputError, match="--start and --end"):
        lsg_cli(None, str(tmp_path / "b.pts"), checkpoint=str(checkpoint))


def test_cli_bad_inputs(trained, tmp_path, capsys):
    "Issue 15: every bad input is refused before anything is written, naming the file; 98-point files are converted."
    a, b = endpoints(1)
    write_pts(tmp_path / "a.pts", a[0]); write_pts(tmp_path / "b.pts", b[0])
    write_pts(tmp_path / "zero.pts", np.zeros((68, 2))); write_pts(tmp_path / "short.pts", b[0][:67])
    run = lambda start, end, **kw: lsg_cli(str(tmp_path / start), str(tmp_path / end), checkpoint=str(trained), out=str(tmp_path / "out"), **kw)
    with pytest.raises(InputError, match="zero.pts: all 68 points are equal"):
        run("zero.pts", "b.pts")
    with pytest.raises(InputError, match=r"a.pts has 68 points, .*short.pts 67"):
        run("a.pts", "short.pts")
    with pytest.raises(InputError, match="above the limit"):
        run("a.pts", "b.pts", k=100_000)
    assert not (tmp_path / "out").exists()  # nothing written, no temp file
    assert 2 < max_frames(128, 2) < 100_000 and max_frames(128, 2) * 128 < 65_535
    wide = np.zeros((98, 2), np.float32); wide[WFLW98_TO_68] = b[0]
    write_pts(tmp_path / "wflw.pts", wide)
    sequence = run("a.pts", "wflw.pts", k=4)
    assert sequence.shape == (4, 68, 2) and "wflw.pts has 98 points (WFLW)" in capsys.readouterr().out
    reenactor = save_checkpoint(tmp_path / "reenactor.safetensors", {"w": torch.zeros(2)}, {"kind": "reenactor-training"})
    with pytest.raises(CheckpointError, match="is a reenactor checkpoint, not an LSG"):
        lsg_cli(str(tmp_path / "a.pts"), str(tmp_path / "b.pts"), checkpoint=str(reenactor), out=str(tmp_path / "out2"))


def test_sketch_strip_labels():
    a, b = endpoints(1)
    plain = sketch_strip([linear_interpolation(a[0], b[0], 3)] * 2, 64)
    labelled = sketch_strip([linear_interpolation(a[0], b[0], 3)] * 2, 64, labels=["LSG", "LI"])
    assert plain.shape == (128, 192, 3) and labelled.shape == (128, 256, 3)
    assert np.array_equal(labelled[:, 64:], plain)
    with pytest.raises(InputError, match="2 rows"):
        sketch_strip([a[0][None]] * 2, 64, labels=["one"])


def test_trainer_options_are_checked():
    with pytest.raises(ConfigError, match="lsg.base"):
        LSGTrainer(load_options("tiny", {"lsg.base": "cubic"}), None, None, [])
    trainer = LSGTrainer(load_options("tiny", {**SMALL, "lsg.synthetic_identities": 16}), None, None, [])  # synthetic tracks only
    values = trainer.train_step()
    assert np.isfinite(list(values.values())).all() and trainer.s1.net[-1].out_features == 16


def test_pretrained_lsg_trains_once_then_loads(dataset, cache):
    overrides = {**SMALL, "lsg.steps": 3, "run.data_root": str(dataset.root)}
    first = pretrained_lsg("tiny", overrides)
    checkpoint = first.source
    stamp = checkpoint.stat().st_mtime_ns
    second = pretrained_lsg("tiny", overrides)
    assert second.source == checkpoint and checkpoint.stat().st_mtime_ns == stamp and second.step == 3
    assert str(cache) in str(checkpoint)


def test_evaluate_sequences_table(trained, dataset):
    model = LandmarkSequenceGenerator.from_checkpoint(trained, "cpu")
    table = evaluate_sequences(model, dataset, split="train", noise_levels=(0.05,), attributes=("nose_width",),
                               max_windows=20, judge_steps=30)
    assert list(table["condition"]) == ["real", "clean", "clean", "noise 0.05", "noise 0.05", "nose_width +1", "nose_width +1"]
    assert set(table["method"]) == {"real", "LI", "LSG"}
    for column in ("identity_csim", "identity_accuracy", "frechet", "jerk", "nme_inbetween", "nme_endpoints"):
        assert np.isfinite(table[column]).all()
    li = table[(table["method"] == "LI") & (table["condition"] == "clean")].iloc[0]
    assert li["nme_endpoints"] == 0.0  # LI keeps clean endpoints exactly
    assert table[table["condition"] == "real"].iloc[0]["nme_inbetween"] == 0.0


def test_calibration_falls_back_to_the_base(dataset, tmp_path):
    "A G_l that makes sequences worse than its base gets strength 0 on unseen people: the LSG is then exactly its base."
    options = load_options("tiny", {**SMALL, "lsg.steps": 2})
    trainer = LSGTrainer(options, *lsg_windows(dataset, options).tensors(), ["a"] * 4)
    with torch.no_grad():
        trainer.generator.to_shift.bias.fill_(0.5)      # half an eye distance off everywhere
    assert trainer.calibrate(64)[:2] == (0.0, 0.0)
    checkpoint = trainer.save(tmp_path / "lsg.safetensors")
    model = LandmarkSequenceGenerator.from_checkpoint(checkpoint, "cpu")
    x = lsg_windows(dataset, options).tensors()[0]
    assert model.strength[:2] == (0.0, 0.0)
    assert torch.equal(model.lsg(x[:4, 0], x[:4, -1]), interpolation_base(x[:4, 0], x[:4, -1], 8, model.base))
    with torch.no_grad():
        trainer.generator.to_shift.bias.zero_()
    assert trainer.calibrate(64)[0] == 0.0              # no shift: every strength is as good; the smallest is kept


def test_refinement_denoises_endpoints_geometrically():
    "Figure 7 mode's geometric step: endpoints with 2 px noise come closer to the truth; keep=1 leaves them as given."
    truth = torch.from_numpy(sample_tracks(64, 8, seed=2, people_seed=5).landmarks[:, [0, -1]])
    noisy = truth + 2.0 * torch.randn(truth.shape, generator=torch.Generator().manual_seed(0))
    start, end = denoise_endpoints(noisy[:, 0], noisy[:, 1], 0.5)
    assert (torch.stack([start, end], 1) - truth).norm(dim=-1).mean() < 0.9 * (noisy - truth).norm(dim=-1).mean()
    same = denoise_endpoints(noisy[:, 0], noisy[:, 1], 1.0)
    torch.testing.assert_close(same[0], noisy[:, 0], atol=1e-3, rtol=0)


def test_checkpoints_of_the_previous_trainer_still_load(tmp_path):
    "An LSG training checkpoint written before the shared training scaffold (tests/fixtures/checkpoints) resumes and loads for inference."
    old = FIXTURES / "lsg-v1.safetensors"
    meta = load_checkpoint(old).meta
    options = load_options("tiny", {f"lsg.{k}": v for k, v in meta["options"]["lsg"].items()})
    trainer = LSGTrainer(options, None, None, [], device="cpu").load_state(old)
    assert trainer.step == 3 and trainer.log_means.count == meta["log_sum_steps"] == 3   # the fixture script sums three steps
    assert trainer.log_means.sums == pytest.approx(meta["log_sums"])
    state = load_checkpoint(old).state
    for key, value in state["generator"].items():
        assert torch.equal(trainer.generator.state_dict()[key], value)
    assert set(trainer.state()) == set(state)                      # the same keys as before
    trainer.train_step()                                          # and it trains on from there
    model = LandmarkSequenceGenerator.from_checkpoint(old, "cpu")
    assert model.k == 4 and model.step == 3


def test_eye_centre_scale_is_not_the_reported_interocular_distance():
    "The LSG's internal unit (eye centres) is shorter than landmarks.interocular_distance (outer corners), used for every reported number."
    face = sample_tracks(1, 2, seed=0).landmarks[0, 0]
    centres, corners = float(eye_centre_scale(torch.from_numpy(face))), float(interocular_distance(face))
    assert 0.6 < centres / corners < 0.85


def test_refinement_refuses_what_is_not_a_face_instead_of_making_one():
    "Refined endpoints are the face model's fit: points that are not a face must be refused, not turned into a face."
    model = LandmarkSequenceGenerator(68, hidden=8, layers=1, k=6, base="3d", refine_endpoints=True, strength=(0.0, 0.0, 0.5))
    a, b = endpoints(1)
    assert model.lsg(a, b, 6).shape == (1, 6, 68, 2)
    scattered = np.random.default_rng(3).uniform(60, 190, (1, 68, 2)).astype(np.float32)
    with pytest.raises(InputError, match="does not look like a face"):
        model.lsg(scattered, b, 6)


def test_cli_names_the_file_that_is_not_a_face(trained, tmp_path):
    "The face check of the 3D base names the .pts file, as every other endpoint error of the command does."
    a, b = endpoints(1)
    write_pts(tmp_path / "a.pts", a[0])
    write_pts(tmp_path / "scattered.pts", np.random.default_rng(4).uniform(60, 190, (68, 2)))
    with pytest.raises(InputError, match=r"scattered.pts does not look like a face"):
        lsg_cli(str(tmp_path / "a.pts"), str(tmp_path / "scattered.pts"), checkpoint=str(trained), out=str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_training_drops_windows_whose_endpoints_are_not_faces(tmp_path, caplog):
    "A detector glitch in the data must not stop a run mid-way: windows whose endpoints do not read as faces are dropped, and said."
    from reenactbook.dataset import FaceDataset
    from reenactbook.lsg_train import training_windows
    from reenactbook.views import _example_dataset
    root = _example_dataset(tmp_path / "ds", identities=2, videos=1, frames=12).root
    options = load_options("tiny", {"run.data_root": str(root), "lsg.max_stride": 1})
    before = len(training_windows(FaceDataset(root), options)[0])
    points = np.load(root / "landmarks68.npy")
    points[0] = np.random.default_rng(0).uniform(60, 190, (68, 2))           # the first frame of the first clip: not a face
    np.save(root / "landmarks68.npy", points)
    with caplog.at_level("WARNING"):
        windows, labels, _ = training_windows(FaceDataset(root), options)
    assert len(windows) < before and len(windows) == len(labels) and "left out" in caplog.text
    assert not np.isclose(windows[:, 0].numpy(), points[0]).all(axis=(-1, -2)).any()
