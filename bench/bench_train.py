"""Reenactor training speed: optimiser steps per second and training images per second for the tiny profile (64 px,
its loss set) and the paper config (256 px, the full loss set, batch 1-2), and the FLOPs of one training step (G forward
and backward, D on real and fake, feature matching, the pretrained loss networks; FlopCounterMode, a multiply-add = 2
FLOPs), so that a GPU run can state its model FLOPs utilisation:

    MFU = FLOPs per step x steps per second / peak FLOP/s of the device   (H100 SXM bf16 dense: ~989e12)

The data are the tiny synthetic faces (64 px, upsampled to 256 px for the paper config: only the speed is measured).
Usage: python bench/bench_train.py [--configs tiny paper] [--paper-batches 1 2] [--steps 5] [--paper-steps 1]
                                   [--threads 1] [--device cpu] [--compile]
"""
import argparse
import time

import torch

from reenactbook.core import MissingWeightsError, WeightsError, get_device
from reenactbook.reenactor import count_parameters
from reenactbook.synthetic import tiny_dataset
from reenactbook.config import load_options
from reenactbook.train import ReenactorTrainer
from reenactbook.training_loop import step_flops

from bench_gpu import fixed_batches as batches  # this folder is on sys.path when a bench runs as a script


def measure(name: str, overrides: list[str], steps: int, device: torch.device, dataset) -> None:
    options = load_options("paper" if name.startswith("paper") else "tiny", [*overrides, f"run.device={device}"])
    try:
        trainer = ReenactorTrainer(options, dataset)
    except (MissingWeightsError, WeightsError) as e:
        print(f"{name}: skipped, a loss network is missing: {e}")
        return
    work = batches(trainer, steps + 1)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    flops = step_flops(trainer, work[0])  # also the warm-up step
    sync()
    start = time.perf_counter()
    for micro in work[1:]:
        trainer.train_step(micro)
    sync()
    seconds = (time.perf_counter() - start) / steps
    c = options.train
    images = c.batch_size * c.accumulate
    print(f"{name:6s} {options.reenactor.image_size:5d} {c.batch_size:5d} {c.accumulate:4d} "
          f"{count_parameters(trainer.generator) / 1e6:8.2f} {count_parameters(trainer.discriminator) / 1e6:8.2f} "
          f"{flops / 1e9:11.1f} {1 / seconds:8.3f} {images / seconds:9.2f} {flops / seconds / 1e9:8.1f} {steps:5d}  "
          f"{'+'.join(trainer.loss.terms)} ({', '.join(f'{k}: {v}' for k, v in trainer.loss.backends.items())})", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=["tiny", "paper"])
    parser.add_argument("--paper-batches", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--steps", type=int, default=5, help="timed optimiser steps of the tiny config")
    parser.add_argument("--paper-steps", type=int, default=1, help="timed optimiser steps of the paper config")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--compile", action="store_true", help="train.compile=true (on CUDA; bench/bench_gpu.py compares both)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = get_device(args.device)
    extra = [f"train.compile={'true' if args.compile else 'false'}"]  # compiling is the GPU default; here only with --compile
    print(f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else f'{torch.get_num_threads()} threads'}), "
          f"torch {torch.__version__}, amp {'bf16' if device.type == 'cuda' else 'off'}{', compiled' if args.compile else ''}")
    print(f"{'config':6s} {'size':>5s} {'batch':>5s} {'acc':>4s} {'G Mparam':>8s} {'D Mparam':>8s} {'GFLOP/step':>11s} "
          f"{'steps/s':>8s} {'images/s':>9s} {'GFLOP/s':>8s} {'steps':>5s}  losses (networks)")
    dataset = tiny_dataset()
    for name in args.configs:
        if name == "tiny":
            measure("tiny", ["run.num_workers=0", *extra], args.steps, device, dataset)
        elif name == "paper":
            for batch in args.paper_batches:
                measure("paper", [f"train.batch_size={batch}", "run.num_workers=0", *extra], args.paper_steps, device, dataset)
        else:
            raise SystemExit(f"unknown config {name!r}: tiny or paper")


if __name__ == "__main__":
    main()
