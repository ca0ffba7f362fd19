"""Reenactor generator speed: forward frames per second at 64/128/256 px for the tiny and paper configs (batched),
parameter counts, and FLOPs per frame (FlopCounterMode; a multiply-add = 2 FLOPs) so that a GPU run can state MFU:
MFU = FLOPs per frame x frames per second / peak FLOP/s of the device (training step ~ 3 x G forward + D passes).

Usage: python bench/bench_reenactor.py [--profiles tiny paper] [--sizes 64 128 256] [--device cpu] [--seconds 2]
"""
import argparse
import time

import torch

from reenactbook.core import autocast, get_device
from reenactbook.config import load_options
from reenactbook.reenactor import MultiscaleDiscriminator, ReenactorGenerator, count_parameters, forward_flops

BATCH = {"tiny": 8, "sample": 4, "paper": 2}


def time_forward(generator, x, device, min_seconds: float, amp: bool) -> tuple[float, int]:
    "Mean seconds per call over >= 2 calls and >= `min_seconds` (after one warm-up call), and the number of calls."
    def call():
        with torch.inference_mode(), autocast(device, amp):
            generator(x)
        if device.type == "cuda":
            torch.cuda.synchronize()
    call()
    calls, start = 0, time.perf_counter()
    while calls < 2 or time.perf_counter() - start < min_seconds:
        call()
        calls += 1
    return (time.perf_counter() - start) / calls, calls


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profiles", nargs="+", default=["tiny", "paper"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[64, 128, 256])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seconds", type=float, default=2.0, help="minimum timed seconds per measurement")
    parser.add_argument("--batch", type=int, default=0, help="batch size (0: tiny 8, sample 4, paper 2)")
    parser.add_argument("--no-amp", action="store_true", help="no bf16 autocast on GPU")
    parser.add_argument("--overrides", nargs="*", default=[], help="config overrides, e.g. reenactor.ngf=32")
    parser.add_argument("--nhwc", action="store_true", help="channels_last weights and inputs on any device (the library uses them on CUDA only)")
    args = parser.parse_args()
    device = get_device(args.device)
    torch.manual_seed(0)
    print(f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else f'{torch.get_num_threads()} threads'}), "
          f"torch {torch.__version__}, amp {'bf16' if device.type == 'cuda' and not args.no_amp else 'off'}, overrides {args.overrides}")
    print(f"{'profile':7s} {'size':>5s} {'batch':>5s} {'G params':>12s} {'D params':>11s} {'G GFLOP/frame':>13s} "
          f"{'D GFLOP/frame':>13s} {'frames/s':>9s} {'ms/frame':>9s} {'GFLOP/s':>8s} {'calls':>5s} layout")
    for profile in args.profiles:
        config = load_options(profile, args.overrides).reenactor
        generator = ReenactorGenerator(config).to(device).eval()
        with torch.device("meta"):  # D is only counted: shapes without memory or compute
            discriminator = MultiscaleDiscriminator(config)
        d_params = count_parameters(discriminator)
        g_params = count_parameters(generator)
        batch = args.batch or BATCH.get(profile, 2)
        for size in args.sizes:
            with torch.device("meta"):
                d_flops = forward_flops(discriminator, torch.empty(1, 6, size, size), torch.empty(1, 3, size, size))
            g_flops = forward_flops(generator, torch.rand(1, 6, size, size, device=device))
            x = torch.rand(batch, 6, size, size, device=device)
            nhwc = args.nhwc or (config.channels_last and device.type == "cuda")  # what the library does, or forced
            if nhwc:
                x = x.contiguous(memory_format=torch.channels_last)
                generator.to(memory_format=torch.channels_last)
            seconds, calls = time_forward(generator, x, device, args.seconds, not args.no_amp)
            fps = batch / seconds
            print(f"{profile:7s} {size:5d} {batch:5d} {g_params:12,d} {d_params:11,d} {g_flops / 1e9:13.2f} "
                  f"{d_flops / 1e9:13.2f} {fps:9.2f} {1000 / fps:9.1f} {g_flops * fps / 1e9:8.1f} {calls:5d} {'NHWC' if nhwc else 'NCHW'}", flush=True)
        del generator


if __name__ == "__main__":
    main()
