"""One GPU benchmark: the reenactor's inference and training speed, the LSG's, and (with --data) a short real-data run.

    make bench-gpu WEIGHTS=/path/to/weights [DATA=/path/to/prepared]     (one H100/H200: under 6 minutes)
    python bench/bench_gpu.py --weights DIR [--data DIR] [--peak-tflops 790] [--device auto]
    python bench/bench_gpu.py --small                                     (the same rows at toy sizes, on the CPU: seconds)

Needs nothing outside the checkout but the weights folder (`--weights`, else REENACTBOOK_WEIGHTS): the training data are the
synthetic talking faces the package generates (upsampled to the model size: only speed is measured), the face-api loss
networks are looked up in the weights folder and the cache. One table, one row per measurement:

- G inference (the library's own path, `reenactor.InferenceGenerator`): frames/s at batch 16 and 64, fp32 eager, bf16 eager,
  bf16 compiled, with MFU = FLOPs per frame (FlopCounterMode) x frames/s / peak; latency at batch 1.
- Training (`train.ReenactorTrainer.train_step`, batch 16, the paper architecture): steps/s and images/s per loss preset
  (fast, vanilla, +identity, +mask, full), bf16 vs fp32, compiled vs eager, with MFU, host syncs, casts and kernel launches
  per step and the share of the step the GPU was busy (`train.step_profile`), and peak memory.
- LSG G_l: landmark frames/s.
- With --data: a training run of --train-seconds on the prepared dataset; the last line is its held-out SSIM and identity similarity.
On the CPU the compiled rows are skipped (compiling takes minutes there) unless --compile-on-cpu.
"""
import argparse
import contextlib
import os
import statistics
import sys
import time

import torch

SMALL = {"size": 64, "ngf": 4, "ndf": 4, "n_blocks": 1, "batches": (2,), "chunks": 2, "train_batch": 2, "steps": 1, "profile_steps": 1,
         "lsg_batch": 64, "train_rows": "fast:fp32:eager,full:fp32:eager,full:bf16:eager"}
FULL = {"size": 256, "ngf": 64, "ndf": 64, "n_blocks": 9, "batches": (16, 64), "chunks": 4, "train_batch": 16, "steps": 10,
        "profile_steps": 2, "lsg_batch": 131072, "train_rows": None}
TRAIN_ROWS = "fast:bf16:eager,vanilla:bf16:eager,+identity:bf16:eager,+mask:bf16:eager,full:bf16:eager,full:fp32:eager," \
             "full:bf16:compiled,fast:bf16:compiled"
ROWS: list[dict] = []


def row(what: str, setting: str, rate: float | None = None, unit: str = "", **extra) -> None:
    "Record one table row and echo it at once (a long run shows progress)."
    entry = {"what": what, "setting": setting, "rate": rate, "unit": unit, **extra}
    ROWS.append(entry)
    print(f"  {what:<22s} {setting:<28s} {'' if rate is None else f'{rate:,.1f}'} {unit} {extra.get('note', '')}", file=sys.stderr,
          flush=True)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def reset_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def timed(fn, device: torch.device, repeats: int, warmup: int = 1) -> float:
    "Median seconds of `fn()` over `repeats` calls after `warmup` calls."
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def reenactor_overrides(sizes: dict) -> list[str]:
    "The paper architecture (4 downsamplings, 2 discriminator scales) at the benchmark's size and widths."
    return [f"reenactor.image_size={sizes['size']}", f"reenactor.ngf={sizes['ngf']}", f"reenactor.ndf={sizes['ndf']}",
            f"reenactor.n_blocks={sizes['n_blocks']}", "views.image_size=0"]


def bench_inference(sizes: dict, device: torch.device, peak: float, compile_ok: bool) -> None:
    from reenactbook.config import load_options
    from reenactbook.reenactor import InferenceGenerator, ReenactorGenerator, forward_flops
    torch.manual_seed(0)
    generator = ReenactorGenerator(load_options("paper", reenactor_overrides(sizes)).reenactor).to(device).eval()
    size = sizes["size"]
    flops = forward_flops(generator, torch.rand(1, 6, size, size, device=device))
    modes = [("fp32 eager", False, False), ("bf16 eager", True, False), ("bf16 compiled", True, True)]
    for batch in sizes["batches"]:
        inputs = torch.rand(batch * sizes["chunks"], 6, size, size, device=device)
        for name, fast, compiled in modes:
            if compiled and not compile_ok:
                row("G inference", f"{name} b{batch}", note="skipped on the CPU (--compile-on-cpu)")
                continue
            reset_memory(device)
            run = InferenceGenerator(generator, device, batch_size=batch, fast=fast)
            if fast and not compiled:
                run.forward = run.generator  # the fast path without torch.compile
            started = time.perf_counter()
            run(inputs[:batch])  # compiles when compiled
            first = time.perf_counter() - started
            seconds = timed(lambda: run(inputs), device, repeats=3 if device.type == "cuda" else 1)
            fps = len(inputs) / seconds
            row("G inference", f"{name} b{batch}", fps, "frames/s", mfu=flops * fps / peak, memory_gib=peak_memory(device),
                note=f"{flops / 1e9:.1f} GFLOP/frame" + (f", compile {first:.0f} s" if compiled else ""))
    run = InferenceGenerator(generator, device, batch_size=1, fast=compile_ok and device.type == "cuda")
    one = torch.rand(1, 6, size, size, device=device)
    repeats = 10 if device.type == "cuda" else 2
    row("G latency", f"batch 1 {'bf16 compiled' if run.fast else 'fp32 eager'}", timed(lambda: run(one), device, repeats, 1) * 1000, "ms")


def fixed_batches(trainer, steps: int) -> list[list[dict]]:
    "`steps` optimiser steps' micro-batches of epoch 0, already on the device (loading is not timed)."
    trainer.pairs.set_epoch(0)
    indices = list(trainer.sampler(0))
    per_step = trainer.config.batch_size * trainer.config.accumulate
    indices = (indices * (1 + steps * per_step // max(len(indices), 1)))[: steps * per_step]
    loader = iter(trainer.micro_batches(indices, 0))
    return [[trainer.prepare(next(loader)) for _ in range(trainer.config.accumulate)] for _ in range(steps)]


def bench_training(sizes: dict, device: torch.device, peak: float, compile_ok: bool, rows: str, dataset) -> dict:
    "Training rows; returns {preset: steps/s} of the bf16 rows (the real-data run sizes itself by them)."
    from reenactbook.core import MissingWeightsError, WeightsError
    from reenactbook.config import load_options
    from reenactbook.train import ReenactorTrainer
    from reenactbook.training_loop import step_flops, step_profile
    rates = {}
    for spec in rows.split(","):
        preset, precision, mode = spec.split(":")
        setting = f"{preset} {precision} {mode}"
        if mode == "compiled" and not compile_ok:
            row("training step", setting, note="skipped on the CPU (--compile-on-cpu)")
            continue
        options = load_options("paper", [*reenactor_overrides(sizes), f"losses.preset={preset}", f"train.batch_size={sizes['train_batch']}",
                                         f"run.amp={str(precision == 'bf16').lower()}", f"train.compile={str(mode == 'compiled').lower()}", "run.num_workers=0",
                                         f"run.device={device}", "train.ema_decay=0.999"])
        reset_memory(device)
        try:
            trainer = ReenactorTrainer(options, dataset)
        except (MissingWeightsError, WeightsError) as e:
            row("training step", setting, note=f"skipped, a loss network is missing: {str(e)[:80]}")
            continue
        if mode == "compiled" and not trainer.compiled:
            trainer.compile()  # --compile-on-cpu
        work = fixed_batches(trainer, sizes["steps"] + 1)
        started = time.perf_counter()
        flops = step_flops(trainer, work[0])  # also the first (compiling) step
        synchronize(device)
        first = time.perf_counter() - started
        context = contextlib.nullcontext()  # on CUDA the trainer's own autocast follows run.amp
        if device.type != "cuda" and precision == "bf16":  # the CPU has no bf16 default (core.amp_dtype): force it to compare
            context = torch.autocast("cpu", dtype=torch.bfloat16)
            trainer.loss.set_network_precision(torch.bfloat16)
        with context:
            trainer.train_step(work[1])
            synchronize(device)
            start = time.perf_counter()
            for micro in work[1:]:
                trainer.train_step(micro)
            synchronize(device)
            seconds = (time.perf_counter() - start) / sizes["steps"]
            counts = step_profile(trainer, work[1], steps=sizes["profile_steps"])
        images = sizes["train_batch"] / seconds
        if precision == "bf16":
            rates[preset] = max(rates.get(preset, 0.0), 1 / seconds)
        busy = counts.get("gpu_busy")
        row("training step", setting, 1 / seconds, "steps/s", images_per_s=images, mfu=flops / seconds / peak,
            syncs=counts["host_syncs"], casts=counts["casts"], launches=counts.get("kernel_launches"),
            idle=None if busy is None else 1 - busy, memory_gib=peak_memory(device),
            note=f"{flops / 1e9:.0f} GFLOP/step" + (f", first step {first:.0f} s" if mode == "compiled" else ""))
        del trainer, work
    return rates


def bench_lsg(sizes: dict, device: torch.device) -> None:
    from reenactbook.config import load_options
    from reenactbook.lsg import LandmarkSequenceGenerator
    options = load_options("tiny")
    k, batch = options.lsg.k, sizes["lsg_batch"]
    model = LandmarkSequenceGenerator(68, options.lsg.hidden, options.lsg.layers, k).to(device).eval()
    from reenactbook.geometry import template_68
    face = template_68(256, device, torch.float32)  # the aligned mean face, moved a little per case
    start = face + torch.randn(batch, 68, 2, device=device)
    end = face + torch.randn(batch, 1, 2, device=device) * 8 + torch.randn(batch, 68, 2, device=device)
    try:
        with torch.no_grad():
            seconds = timed(lambda: model.lsg(start, end, k), device, repeats=3)
        row("LSG G_l", f"hidden {options.lsg.hidden} b{batch}", batch * k / seconds, "frames/s")
    except Exception as e:  # a bench row, not a crash: say what failed
        row("LSG G_l", f"hidden {options.lsg.hidden} b{batch}", note=f"failed: {type(e).__name__}: {str(e)[:80]}")


def bench_real_data(data: str, device: torch.device, seconds: float, rate: float, out: str) -> str:
    "Train the sample-profile reenactor for about `seconds` on a prepared dataset; the held-out SSIM and identity similarity."
    from reenactbook.config import load_options
    from reenactbook.train import train_reenactor
    steps = max(2, int(seconds * rate))
    options = load_options("sample", [f"run.data_root={data}", f"run.device={device}", f"train.max_steps={steps}",
                                      f"train.checkpoint_every={steps}", f"train.sample_every={steps}", "train.tensorboard=false"])
    started = time.perf_counter()
    result = train_reenactor(options, out, overwrite=True, show_progress=False)
    final = result["metrics"][f"step_{result['step']}"]
    row("real-data training", f"{steps} steps, {time.perf_counter() - started:.0f} s", result["images_seen"] / result["seconds"],
        "images/s", note=f"held-out SSIM {final['ssim']:.4f}, identity similarity {final['identity_to_source']:.4f}")
    return (f"held-out ({final['pairs']} pairs, {final['split']}): SSIM {final['ssim']:.4f}, identity similarity to the source "
            f"{final['identity_to_source']:.4f} (real pairs {final['identity_reference']:.4f}; {final['identity_backend']})")


def print_table(device: torch.device, header: str) -> None:
    def cell(value, fmt):
        return "" if value is None else format(value, fmt)
    print(header)
    print(f"| what | setting | rate | unit | images/s | MFU | syncs/step | casts/step | launches/step | GPU idle | peak GiB | notes |")
    print("|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in ROWS:
        print(f"| {r['what']} | {r['setting']} | {cell(r['rate'], ',.1f')} | {r['unit']} | {cell(r.get('images_per_s'), ',.1f')} | "
              f"{cell(r.get('mfu'), '.1%')} | {cell(r.get('syncs'), '.1f')} | {cell(r.get('casts'), '.0f')} | "
              f"{cell(r.get('launches'), ',.0f')} | {cell(r.get('idle'), '.0%')} | {cell(r.get('memory_gib'), '.1f')} | {r.get('note', '')} |")


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", default=os.environ.get("REENACTBOOK_WEIGHTS", ""), help="folder of pretrained weights")
    parser.add_argument("--data", default="", help="a prepared dataset: adds the real-data training run")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--small", action="store_true", help="toy sizes (the CPU test)")
    parser.add_argument("--peak-tflops", type=float, default=790.0, help="the device's peak (bf16 dense) for MFU; H200: 790")
    parser.add_argument("--train-rows", default=None, help=f"preset:bf16|fp32:eager|compiled, comma-separated (default {TRAIN_ROWS})")
    parser.add_argument("--train-seconds", type=float, default=120.0, help="length of the --data run")
    parser.add_argument("--out", default="runs/bench-gpu", help="output folder of the --data run")
    parser.add_argument("--compile-on-cpu", action="store_true")
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: inference, training, lsg")
    args = parser.parse_args(argv)
    if args.weights:
        os.environ["REENACTBOOK_WEIGHTS"] = args.weights
    from reenactbook.core import get_device
    from reenactbook.synthetic import tiny_dataset
    device = get_device(args.device)
    if device.type == "cpu" and not args.small:
        print("bench_gpu: no GPU here, so the small sizes (--small)", file=sys.stderr)
        args.small = True
    sizes = SMALL if args.small else FULL
    if args.small and device.type == "cpu":
        torch.set_num_threads(1)  # toy sizes: threads only contend
    compile_ok = device.type == "cuda" or args.compile_on_cpu
    peak = args.peak_tflops * 1e12
    ROWS.clear()
    started = time.perf_counter()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    skip = set(filter(None, args.skip.split(",")))
    if "inference" not in skip:
        bench_inference(sizes, device, peak, compile_ok)
    rates = {}
    if "training" not in skip:
        rates = bench_training(sizes, device, peak, compile_ok, args.train_rows or sizes["train_rows"] or TRAIN_ROWS, tiny_dataset())
    if "lsg" not in skip:
        bench_lsg(sizes, device)
    last = None
    if args.data:
        last = bench_real_data(args.data, device, args.train_seconds, rates.get("full", 1.0), args.out)
    load = f", load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores" if device.type == "cpu" else ""
    print_table(device, f"bench_gpu: {name}, torch {torch.__version__}, {'small' if args.small else 'paper'} sizes "
                        f"({sizes['size']} px), peak {args.peak_tflops:g} TFLOP/s, {time.perf_counter() - started:.0f} s{load}")
    if last:
        print(last)
    return ROWS


if __name__ == "__main__":
    main()
