"""Reenactor training: the learning-rate schedule, EMA, gradient accumulation, the ablation switches, clear errors, exact
resume after a real SIGKILL (separate processes), and DistributedDataParallel with 2 CPU processes under torchrun (gloo).
A small model at 32 px on the tiny synthetic faces keeps every run to seconds."""
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from reenactbook.core import CheckpointError, CheckpointMismatchError, ConfigError, DataError
from reenactbook.config import Options, load_options
from reenactbook.checkpoints import load_checkpoint
from reenactbook.losses import LOSS_PRESETS, _floats
from reenactbook.reenactor import Reenactor
from reenactbook.synthetic import tiny_dataset
from reenactbook.train import ReenactorTrainer, learning_rate_factor, make_scheduler, set_progress, train_reenactor
from reenactbook.training_loop import (EMA, TrainingLog, list_checkpoints, make_ema, start_processes, step_profile, truncate_log)

from stand_ins import training_stand_ins

SMALL = ["reenactor.image_size=32", "reenactor.ngf=8", "reenactor.ndf=8", "reenactor.n_blocks=1", "reenactor.n_layers_d=2",
         "train.batch_size=2", "train.log_every=1", "train.sample_pairs=2", "train.tensorboard=false", "train.cpu_threads=1",
         "run.deterministic=true"]
LOSS_COLUMNS = ["g_adversarial", "g_feature_matching", "g_mask", "g_total", "d_real", "d_fake", "d_total"]


def small_options(*extra):
    return load_options("tiny", [*SMALL, *extra])


@pytest.fixture(scope="module")
def dataset():
    "What `reenactbook train --profile tiny` reads: the tiny synthetic faces, split in time as the profile says."
    from reenactbook.views import apply_time_split
    return apply_time_split(tiny_dataset(), load_options("tiny").views)


def run(options, out, dataset, **kwargs):
    return train_reenactor(options, out, dataset=dataset, evaluate=False, show_progress=False, **kwargs)


def first_batch(trainer, size):
    "The first `size` pairs of epoch 0 in the trainer's order, collated on its device."
    trainer.pairs.set_epoch(0)
    indices = list(trainer.sampler(0))[:size]
    return trainer.prepare(torch.utils.data.default_collate([trainer.pairs[i] for i in indices]))


# ---------------------------------------------------------------- schedule and EMA
def test_learning_rate_is_constant_then_linear_to_zero():
    assert [learning_rate_factor(p, 45, 30) for p in (0, 29.99, 30, 33, 37.5, 45, 46)] == pytest.approx([1, 1, 1, 0.8, 0.5, 0, 0])
    parameter = nn.Parameter(torch.zeros(1))
    scheduler = make_scheduler(torch.optim.Adam([parameter], lr=2e-4), 45, 30)
    rates = []
    for progress in range(46):
        set_progress(scheduler, progress)
        rates.append(scheduler.get_last_lr()[0])
    assert rates[:31] == pytest.approx([2e-4] * 31)
    assert np.diff(rates[30:]) == pytest.approx(np.full(15, -2e-4 / 15))
    assert rates[-1] == pytest.approx(0.0, abs=1e-12)


def test_learning_rate_in_a_training_log(tmp_path):
    "A real run of 3 epochs, decay after 1.5: the logged rates follow the progress in epochs."
    options = small_options("train.epochs=3", "train.decay_fraction=0.5", "train.batch_size=8", "train.lr_generator=1e-3")
    run(options, tmp_path, tiny_dataset())  # the whole tiny dataset (not split in time): 6 steps an epoch
    assert Options.load(tmp_path).run.out_dir == str(tmp_path)  # options.json says where the run is, not runs/default
    log = pd.read_csv(tmp_path / "train_log.csv")
    expected = [1e-3 * learning_rate_factor(p, 3, 1.5) for p in log["progress"]]
    assert log["lr_generator"].to_numpy() == pytest.approx(expected, rel=1e-5, abs=1e-9)
    assert (log["lr_generator"][log["progress"] <= 1.5] == 1e-3).all() and (log["progress"] <= 1.5).sum() >= 5
    assert log["lr_generator"].iloc[-1] == pytest.approx(0.0, abs=1e-9)
    assert log["epoch"].tolist() == sorted(log["epoch"]) and log["epoch"].iloc[-1] == 2
    # the curriculum stage is logged each epoch (tiny: a stage every 2 epochs)
    assert log.groupby("epoch")["curriculum_stage"].first().tolist() == [0, 0, 1]


def test_ema_follows_the_generator(dataset):
    trainer = ReenactorTrainer(small_options("train.ema_decay=0.5"), dataset)
    batch = first_batch(trainer, 2)
    trainer.train_step([batch])
    after_first = [p.detach().clone() for p in trainer.generator.parameters()]
    for e, p in zip(trainer.ema.module.parameters(), after_first):  # the first update copies G
        assert torch.equal(e, p)
    trainer.train_step([batch])
    for e, p1, p2 in zip(trainer.ema.module.parameters(), after_first, trainer.generator.parameters()):
        assert torch.allclose(e, 0.5 * p1 + 0.5 * p2, atol=1e-7)
    assert trainer.inference_generator is trainer.ema.module
    assert make_ema(trainer.generator, 0.0) is None


def test_ema_state_dict_is_that_of_averaged_model():
    "Checkpoints written with torch's AveragedModel (before) load into EMA, and the other way round."
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
    layer = nn.Linear(3, 2)
    averaged = AveragedModel(layer, multi_avg_fn=get_ema_multi_avg_fn(0.9), use_buffers=True)
    averaged.update_parameters(layer)
    ema = make_ema(nn.Linear(3, 2), 0.9)
    assert isinstance(ema, EMA) and not ema.started
    ema.load_state_dict(averaged.state_dict())
    assert ema.started and torch.equal(ema.module.weight, layer.weight)  # resumed: the next update averages, not copies
    with torch.no_grad():
        layer.weight += 1
    ema.update_parameters(layer)
    averaged.update_parameters(layer)
    assert torch.allclose(ema.module.weight, averaged.module.weight, atol=1e-7)
    assert set(ema.state_dict()) == set(averaged.state_dict()) and int(ema.n_averaged) == 2


# ---------------------------------------------------------------- gradient accumulation
def test_accumulating_two_half_batches_equals_one_full_batch(dataset):
    "Gradients and losses of 2 micro-batches of 2 pairs = those of one batch of 4 (same initial weights)."
    whole = ReenactorTrainer(small_options("train.batch_size=4"), dataset)
    split = ReenactorTrainer(small_options("train.batch_size=2", "train.accumulate=2"), dataset)
    for a, b in zip(whole.model.state_dict().values(), split.model.state_dict().values()):
        assert torch.equal(a, b)
    batch = first_batch(whole, 4)
    halves = [{k: v[:2] for k, v in batch.items()}, {k: v[2:] for k, v in batch.items()}]
    losses_whole, losses_split = _floats(whole.train_step([batch])), _floats(split.train_step(halves))
    assert losses_split == pytest.approx(losses_whole, rel=1e-5)
    for (name, a), b in zip(whole.model.named_parameters(), split.model.parameters()):
        assert torch.allclose(a.grad, b.grad, rtol=1e-4, atol=1e-5), name  # gradients are O(1); float noise ~1e-6


# ---------------------------------------------------------------- ablation switches reach the loss set
@pytest.mark.parametrize("preset", ["vanilla", "+identity", "+boundary"])
def test_loss_presets_reach_the_trained_losses(dataset, preset):
    trainer = ReenactorTrainer(small_options(f"losses.preset={preset}"), dataset, loss_networks=training_stand_ins())
    assert trainer.loss.terms == LOSS_PRESETS[preset]
    values = trainer.train_step([first_batch(trainer, 2)])
    assert {k[2:] for k in values if k.startswith("g_") and k != "g_total"} == set(LOSS_PRESETS[preset])


def test_tiny_loss_set_and_curriculum_switch(dataset):
    trainer = ReenactorTrainer(small_options(), dataset)
    assert trainer.loss.terms == ("adversarial", "feature_matching", "mask")
    assert trainer.pairs.curriculum.enabled and len(trainer.pairs.curriculum.identities(0)) < len(trainer.pairs.identity_names)
    off = ReenactorTrainer(small_options("views.curriculum=false", "losses.terms=adversarial,mask"), dataset)
    assert off.loss.terms == ("adversarial", "mask")
    assert not off.pairs.curriculum.enabled and off.pairs.curriculum.identities(0) == off.pairs.identity_names
    assert len(off.pairs) == 10 * len(off.pairs.identity_names)


# ---------------------------------------------------------------- clear errors
def test_bad_options_are_clear_errors(tmp_path, dataset):
    with pytest.raises(ConfigError, match="train.batch_size"):
        small_options("train.batch_size=0")
    with pytest.raises(ConfigError, match="ema_decay"):
        small_options("train.ema_decay=1")
    with pytest.raises(ConfigError, match="decay_fraction"):
        small_options("train.decay_fraction=2")
    with pytest.raises(ConfigError, match="views.image_size=48 differs from reenactor.image_size=32"):
        ReenactorTrainer(small_options("views.image_size=48"), dataset)
    with pytest.raises(DataError, match="fewer than one optimiser step"):
        run(small_options("train.batch_size=64"), tmp_path / "big-batch", dataset)


def test_resume_errors_name_the_file(tmp_path, dataset):
    with pytest.raises(CheckpointError, match="no training checkpoint to resume from"):
        run(small_options("train.max_steps=1"), tmp_path / "empty", dataset, resume=True)
    out = tmp_path / "run"
    run(small_options("train.max_steps=1"), out, dataset)
    checkpoint = list_checkpoints(out)[-1]
    with pytest.raises(CheckpointMismatchError, match=str(checkpoint)):
        run(small_options("train.max_steps=2", "reenactor.ngf=16"), out, dataset, resume=True)
    with pytest.raises(ConfigError, match="EMA"):
        run(small_options("train.max_steps=2", "train.ema_decay=0.9"), out, dataset, resume=True)
    with pytest.raises(ConfigError, match="--resume"):
        run(small_options("train.max_steps=1"), out, dataset)
    assert run(small_options("train.max_steps=1"), out, dataset, overwrite=True)["step"] == 1
    checkpoint.write_bytes(checkpoint.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="truncated"):
        run(small_options("train.max_steps=2"), out, dataset, resume=True)


def test_log_drops_rows_after_the_checkpoint(tmp_path):
    path = tmp_path / "train_log.csv"
    path.write_text("step,a\n1,0.5\n2,0.4\n3,0.3\n4,0.2\n5,0.")
    truncate_log(path, 3)
    assert path.read_text() == "step,a\n1,0.5\n2,0.4\n3,0.3\n"
    log = TrainingLog(tmp_path, resume_step=2, tensorboard=True)
    log.row(3, {"a": 0.25})
    log.close()
    assert pd.read_csv(path)["step"].tolist() == [1, 2, 3]
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


# ---------------------------------------------------------------- kill and resume, in separate processes
SCRIPT = """
import os, signal, sys
import reenactbook.train as train
from reenactbook.config import load_options
kill_at = int(os.environ.get("KILL_AT", "0"))
write_checkpoint = train.write_checkpoint
def write_then_maybe_die(out_dir, step, *args, **kwargs):
    path = write_checkpoint(out_dir, step, *args, **kwargs)
    if step == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)  # a real kill: no cleanup, no flush, nothing after this line
    return path
train.write_checkpoint = write_then_maybe_die
out, resume, overrides = sys.argv[1], sys.argv[2] == "resume", sys.argv[3:]
train.train_reenactor(load_options("tiny", overrides), out, resume=resume, evaluate=False, show_progress=False)
"""


def python(script: Path, *args, env=None, timeout=120):
    environment = {**os.environ, "REENACTBOOK_NO_PROGRESS": "1", "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run([sys.executable, str(script), *args], env=environment, capture_output=True, text=True, timeout=timeout)


def test_killed_and_resumed_run_matches_an_uninterrupted_one(tmp_path, dataset):
    script = tmp_path / "train_script.py"
    script.write_text(SCRIPT)
    overrides = [*SMALL, "train.max_steps=6", "train.checkpoint_every=3", "train.ema_decay=0.9"]
    straight = tmp_path / "straight"
    run(load_options("tiny", overrides), straight, dataset)

    interrupted = tmp_path / "interrupted"
    killed = python(script, str(interrupted), "new", *overrides, env={"KILL_AT": "3"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert [p.name for p in list_checkpoints(interrupted)] == ["step-00000003.safetensors"]
    assert pd.read_csv(interrupted / "train_log.csv")["step"].tolist() == [1, 2, 3]
    resumed = python(script, str(interrupted), "resume", *overrides)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming from" in resumed.stderr

    a, b = (load_checkpoint(list_checkpoints(d)[-1]) for d in (straight, interrupted))
    assert a.meta["step"] == b.meta["step"] == 6
    for part in ("generator", "discriminator", "ema"):
        for key, value in a.state[part].items():
            assert torch.allclose(value.float(), b.state[part][key].float(), rtol=0, atol=1e-6), f"{part}.{key}"
    for part in ("optimizer_generator", "optimizer_discriminator"):
        for index, slots in a.state[part]["state"].items():
            for name, value in slots.items():
                assert torch.allclose(value.float(), b.state[part]["state"][index][name].float(), rtol=0, atol=1e-6)
    assert a.state["scheduler_generator"] == b.state["scheduler_generator"]
    assert a.state["position"] == b.state["position"]
    log_a, log_b = pd.read_csv(straight / "train_log.csv"), pd.read_csv(interrupted / "train_log.csv")
    assert log_b["step"].tolist() == [1, 2, 3, 4, 5, 6]  # no duplicate rows
    assert np.allclose(log_a[LOSS_COLUMNS].to_numpy(), log_b[LOSS_COLUMNS].to_numpy(), rtol=1e-5, atol=1e-7)


# ---------------------------------------------------------------- DistributedDataParallel, 2 CPU processes (gloo)
def test_two_process_ddp_equals_one_process_with_the_double_batch(tmp_path, dataset):
    "torchrun --nproc_per_node 2 with batch 2 per process = one process with batch 4: same losses, same generator."
    script = tmp_path / "train_script.py"
    script.write_text(SCRIPT)
    overrides = [*SMALL, "train.max_steps=2", "train.lr_generator=1e-3", "train.lr_discriminator=1e-3"]
    ddp = tmp_path / "ddp"
    environment = {**os.environ, "REENACTBOOK_NO_PROGRESS": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script),
                           str(ddp), "new", *overrides], env=environment, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 process(es) x batch 2" in done.stderr
    single = tmp_path / "single"
    run(load_options("tiny", [*overrides, "train.batch_size=4"]), single, dataset)

    log_ddp, log_single = pd.read_csv(ddp / "train_log.csv"), pd.read_csv(single / "train_log.csv")
    assert log_ddp["step"].tolist() == [1, 2]  # rank 0 alone wrote the log
    assert np.allclose(log_ddp[LOSS_COLUMNS].iloc[0], log_single[LOSS_COLUMNS].iloc[0], rtol=1e-4)
    assert np.allclose(log_ddp[LOSS_COLUMNS].iloc[1], log_single[LOSS_COLUMNS].iloc[1], rtol=2e-3)
    assert load_checkpoint(list_checkpoints(ddp)[-1]).state["position"]["world_size"] == 2
    models = [Reenactor.from_checkpoint(d / "reenactor.safetensors").eval() for d in (ddp, single)]
    x = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(models[0].generate(*x), models[1].generate(*x), atol=1e-4)


# ---------------------------------------------------------------- devices: CUDA stubbed (there is no GPU in CI)
@pytest.fixture()
def four_gpus(monkeypatch):
    "torch.cuda as on a 4-GPU node; `set_device` refuses an unindexed device, as the real one does."
    chosen = []

    def set_device(device):
        if isinstance(device, torch.device) and device.index is None:
            raise ValueError("Expected a torch.device with a specified index or an integer, but got:cuda")
        chosen.append(device)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "set_device", set_device)
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    return chosen


@pytest.mark.parametrize("preference", ["auto", "cuda", "cuda:0"])
def test_start_processes_sets_an_indexed_gpu(four_gpus, preference):
    "The old code called set_device(torch.device('cuda')) for auto and cuda: `reenactbook train` crashed on every GPU machine."
    processes = start_processes(preference)
    assert processes.device == torch.device("cuda", 0) and four_gpus == [torch.device("cuda", 0)]


def test_start_processes_under_torchrun_takes_the_local_rank(four_gpus, monkeypatch):
    import reenactbook.training_loop as training_loop
    backends = []
    monkeypatch.setattr(training_loop.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(training_loop.dist, "init_process_group", lambda backend: backends.append(backend))
    monkeypatch.setenv("WORLD_SIZE", "8")
    monkeypatch.setenv("RANK", "6")
    monkeypatch.setenv("LOCAL_RANK", "2")  # second node, third GPU
    for preference in ("auto", "cuda"):
        processes = start_processes(preference)
        assert (processes.device, processes.rank, processes.local_rank, processes.distributed) == (torch.device("cuda", 2), 6, 2, True)
    assert backends == ["nccl", "nccl"] and four_gpus == [torch.device("cuda", 2)] * 2
    with pytest.raises(ConfigError, match="names one GPU for all 8 processes"):
        start_processes("cuda:1")
    monkeypatch.setenv("LOCAL_RANK", "5")
    with pytest.raises(ConfigError, match="nproc_per_node"):
        start_processes("auto")
    monkeypatch.setenv("LOCAL_RANK", "x")
    with pytest.raises(ConfigError, match="LOCAL_RANK='x'"):
        start_processes("auto")


# ---------------------------------------------------------------- host work of a step (the CPU proxy of GPU idle time)
def test_training_step_never_waits_for_the_device(dataset):
    "No host sync, no constant built from Python data in a full-loss step with the EMA: the old code had 2 syncs (EMA) + 2 constants (boundary)."
    trainer = ReenactorTrainer(small_options("losses.preset=full", "train.ema_decay=0.9"), dataset, loss_networks=training_stand_ins())
    micro = [first_batch(trainer, 2)]
    trainer.train_step(micro)  # warm-up
    counts = step_profile(trainer, micro, steps=2)
    assert counts["host_syncs"] == 0, counts
    assert counts["python_constants"] == 0, counts
    assert counts["casts"] <= 12, counts  # dtype/device conversions of real tensors (fp32 on the CPU: a handful of .float())
    values = trainer.train_step(micro)
    assert all(isinstance(v, torch.Tensor) and v.ndim == 0 and not v.requires_grad for v in values.values())


# ---------------------------------------------------------------- the GPU benchmark, at toy sizes on the CPU (so it cannot rot)
def test_gpu_benchmark_runs_small_on_the_cpu(shared_weights, tmp_path):
    "bench/bench_gpu.py --small prints its one table: inference, training (real loss networks, fp32 and bf16) and LSG rows."
    script = Path(__file__).parents[1] / "bench" / "bench_gpu.py"
    done = python(script, "--small", "--device", "cpu", "--weights", str(shared_weights), "--train-rows", "full:fp32:eager",
                  timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    table = [line for line in done.stdout.splitlines() if line.startswith("| ")]
    assert table[0].startswith("| what | setting | rate") and len(table) == 1 + 3 + 1 + 1 + 1, done.stdout  # header, rows
    rows = {tuple(cell.strip() for cell in line.split("|")[1:3]): line.split("|") for line in table[1:]}
    assert float(rows[("G inference", "fp32 eager b2")][3].replace(",", "")) > 0
    assert "skipped on the CPU" in rows[("G inference", "bf16 compiled b2")][-2]
    full = rows[("training step", "full fp32 eager")]
    assert float(full[3].replace(",", "")) > 0 and float(full[7]) == 0  # steps/s; no host sync in the step
    assert float(rows[("LSG G_l", "hidden 96 b64")][3].replace(",", "")) > 0
