"""Landmark frames per second of the LSG (G_l forward, batched) and of the linear-interpolation baseline, on the CPU.

Usage: python bench/bench_lsg.py [--threads 1,2] [--hidden H] [--layers L]
(on a shared, loaded machine one thread is often faster than several: the threads wait for each other)
The speed does not depend on trained weights, so G_l is freshly initialised at the given size (default: the options' size).
"""
import argparse
import time

import torch

from reenactbook.core import load_options
from reenactbook.lsg import LandmarkSequenceGenerator, linear_interpolation


def frames_per_second(fn, start, end, k, repeats):
    fn(start, end, k)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(start, end, k)
        best = min(best, time.perf_counter() - t0)
    return start.shape[0] * k / best, best


def main():
    options = load_options("tiny")
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", default=f"1,{torch.get_num_threads()}", help="comma-separated torch thread counts to try")
    parser.add_argument("--hidden", type=int, default=options.lsg.hidden)
    parser.add_argument("--layers", type=int, default=options.lsg.layers)
    parser.add_argument("--k", type=int, default=options.lsg.k)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = LandmarkSequenceGenerator(68, args.hidden, args.layers, args.k).eval()
    print(f"LSG G_l (hidden {args.hidden}, {args.layers} layer(s), K={args.k}) on CPU; best of 5")
    print(f"{'threads':>7} {'batch':>6} {'LSG frames/s':>14} {'LSG ms/batch':>13} {'LI frames/s':>13}")
    for threads in sorted({int(t) for t in args.threads.split(",") if t.strip()}):
        torch.set_num_threads(threads)
        for batch in (1, 16, 256, 2048):
            start = torch.rand(batch, 68, 2) * 200 + 28
            end = start + torch.randn(batch, 68, 2) * 5
            fps, seconds = frames_per_second(model.lsg, start, end, args.k, 5)
            li_fps, _ = frames_per_second(linear_interpolation, start, end, args.k, 5)
            print(f"{threads:>7} {batch:>6} {fps:>14,.0f} {seconds * 1000:>13.2f} {li_fps:>13,.0f}")


if __name__ == "__main__":
    main()
