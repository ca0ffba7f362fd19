"""Benchmark of reenactbook.prep on CPU: end-to-end frames/s and peak memory over the sample clips, where the time goes,
and whether memory stays flat on a long 1080p video.

    REENACTBOOK_SAMPLES=../shared/data .venv/bin/python bench/bench_prep.py [--workers 2] [--max-frames 0] [--backends offline] [--jitter 60]

Prints figures only (no asserts). Targets (issue 5): >= 30 frames/s on 2 cores with the offline models (dlib HOG + face-api 68),
peak memory < 2 GB for any clip length. `--jitter N` (issue 15): crop jitter with and without prep.smooth_alignment
on the first N frames of every clip, with the configured (auto) backends. Peak memory is resource.getrusage ru_maxrss: this process, and the largest child
(each worker is a child; their sum is bounded by workers x the largest)."""
import argparse
import contextlib
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

OFFLINE = ["prep.face_detector=dlib", "prep.landmark_detector=faceapi"]


def peak_mb() -> tuple[float, float]:
    "Peak resident memory (MB) of this process and of its largest child so far."
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)


def _descendants(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            for child in (task / "children").read_text().split():
                out += [int(child), *_descendants(int(child))]
    return out


def pss_mb(pid: int) -> float:
    "Proportional set size (MB) of a process: shared library pages split between the processes that map them."
    with contextlib.suppress(OSError, IndexError, ValueError):
        return int(Path(f"/proc/{pid}/smaps_rollup").read_text().split("Pss:")[1].split()[0]) / 1024
    return 0.0


@contextlib.contextmanager
def total_memory_sampler(interval: float = 0.25):
    "Track the peak of the summed PSS of this process and all its children (the memory the run really occupies)."
    import threading
    peak, stop = [0.0], threading.Event()
    def sample():
        while not stop.is_set():
            pids = [os.getpid(), *_descendants(os.getpid())]
            peak[0] = max(peak[0], sum(pss_mb(p) for p in pids))
            stop.wait(interval)
    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield peak
    finally:
        stop.set(); thread.join()


def end_to_end(clips: Path, workers: int, overrides: list[str], max_frames: int) -> None:
    from reenactbook.config import load_options
    from reenactbook.prep import prepare_dataset
    options = load_options("sample", overrides + [f"prep.max_frames={max_frames}"])
    with tempfile.TemporaryDirectory() as tmp, total_memory_sampler() as total_peak:
        start = time.perf_counter()
        result = prepare_dataset(clips, Path(tmp) / "ds", options, workers=workers)
        wall = time.perf_counter() - start
        stats = [__import__("json").loads(p.read_text()) for p in (Path(tmp) / "ds" / "prep").glob("*.json")]
    busy = sum(s["seconds"] for s in stats)
    print(f"end to end: {result.frames_seen} frames of {len(stats)} clips in {wall:.1f} s with {workers} workers "
          f"= {result.frames_seen / wall:.1f} frames/s (start-up included)")
    print(f"  per worker, start-up excluded: {result.frames_seen / busy:.1f} frames/s "
          f"(x {max(workers, 1)} workers = {result.frames_seen / busy * max(workers, 1):.1f} frames/s if the cores were free)")
    print(f"  kept {result.frames_kept}, skipped frames {result.frames_skipped or {}}, skipped files {result.items_skipped or {}}")
    print(f"  detector runs {sum(s['detections'] for s in stats)} for {result.frames_seen} frames "
          f"({sum(s['redetections'] for s in stats)} forced by tracking); backends {result.dataset.meta['prep']['backends']}")
    own, child = peak_mb()
    print(f"  peak memory (ru_maxrss): main process {own:.0f} MB, largest worker {child:.0f} MB; "
          f"all processes together (peak summed PSS) {total_peak[0]:.0f} MB")


@contextlib.contextmanager
def stage_timers():
    "Time the stages of process_clip by wrapping the functions it calls (this process only)."
    from reenactbook import dataset, landmarks, prep
    totals, cpu, counts = defaultdict(float), defaultdict(float), defaultdict(int)

    def timed(name, fn):
        def wrapper(*args, **kwargs):
            start, start_cpu = time.perf_counter(), time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                totals[name] += time.perf_counter() - start
                cpu[name] += time.process_time() - start_cpu
                counts[name] += 1
        return wrapper

    def timed_frames(fn):
        def wrapper(*args, **kwargs):
            frames = fn(*args, **kwargs)
            while True:
                start, start_cpu = time.perf_counter(), time.process_time()
                try:
                    item = next(frames)
                except StopIteration:
                    return
                finally:
                    totals["decode"] += time.perf_counter() - start
                    cpu["decode"] += time.process_time() - start_cpu
                counts["decode"] += 1
                yield item
        return wrapper

    patches = [(prep, "iter_clip_frames", timed_frames(prep.iter_clip_frames)),
               (prep.FaceTracker, "detect", timed("detect", prep.FaceTracker.detect)),
               (prep.FaceTracker, "_landmarks", timed("landmarks", prep.FaceTracker._landmarks)),
               (landmarks, "alignment_matrix", timed("align fit", landmarks.alignment_matrix)),
               (prep, "smoothed_alignment", timed("smooth", prep.smoothed_alignment)),
               (prep, "_warp", timed("warp", prep._warp)),
               (prep, "sharpness", timed("blur", prep.sharpness)),
               (landmarks, "head_pose", timed("pose", landmarks.head_pose)),
               (dataset.ShardWriter, "add", timed("write jpeg", dataset.ShardWriter.add))]
    originals = [(obj, name, getattr(obj, name)) for obj, name, _ in patches]
    for obj, name, fn in patches:
        setattr(obj, name, fn)
    try:
        yield totals, cpu, counts
    finally:
        for obj, name, fn in originals:
            setattr(obj, name, fn)


def profile_stages(clips: Path, overrides: list[str], frames: int, label: str = "sample clips") -> None:
    import cv2
    import torch
    from reenactbook.config import load_options
    from reenactbook.prep import prepare_dataset
    torch.set_num_threads(1); cv2.setNumThreads(1)
    options = load_options("sample", overrides + [f"prep.max_frames={frames}"])
    with tempfile.TemporaryDirectory() as tmp, stage_timers() as (totals, cpu, counts):
        start = time.perf_counter()
        result = prepare_dataset(clips, Path(tmp) / "ds", options, workers=0)
        wall = time.perf_counter() - start
    n = result.frames_seen
    accounted, accounted_cpu = sum(totals.values()), sum(cpu.values())
    print(f"where the time goes ({label}; one process, one thread, {n} frames, {n / wall:.1f} frames/s incl. model loading):")
    print(f"  per frame {1000 * accounted / n:.1f} ms wall, {1000 * accounted_cpu / n:.1f} ms CPU in the stages "
          f"-> {n / accounted_cpu:.1f} frames/s per free core")
    for name, total in sorted(totals.items(), key=lambda kv: -kv[1]):
        print(f"  {name:<11} {1000 * total / n:6.1f} ms wall {1000 * cpu[name] / n:6.1f} ms CPU per frame "
              f"({counts[name]} calls, {100 * total / accounted:4.1f} % of the wall time)")


def long_video(tmp: Path, clip: Path, seconds: float) -> Path:
    "A 1920x1080 30 fps H.264 video of `seconds`: the sample clip enlarged 2.25x and looped."
    import av
    import cv2
    path = tmp / "long_1080p.mp4"
    frames = []
    with av.open(str(clip)) as source:
        for i, frame in enumerate(source.decode(video=0)):
            if i >= 60:
                break
            frames.append(frame.to_ndarray(format="rgb24"))
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=30, options={"preset": "ultrafast", "crf": "23"})
        stream.width, stream.height, stream.pix_fmt = 1920, 1080, "yuv420p"
        for i in range(int(seconds * 30)):
            k = i % (2 * len(frames) - 2)  # back and forth through the frames: smooth motion
            small = frames[k if k < len(frames) else 2 * len(frames) - 2 - k]
            big = cv2.resize(small, (1080, 1080), interpolation=cv2.INTER_LINEAR)
            canvas = np.zeros((1080, 1920, 3), np.uint8); canvas[:, 420:1500] = big
            for packet in stream.encode(av.VideoFrame.from_ndarray(canvas, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


CHILD = """
import resource, sys, tempfile, time
from pathlib import Path
from reenactbook.config import load_options
from reenactbook.prep import prepare_dataset
options = load_options("sample", sys.argv[3:] + ["prep.max_frames=" + sys.argv[2]])
with tempfile.TemporaryDirectory() as tmp:
    start = time.perf_counter()
    result = prepare_dataset(sys.argv[1], Path(tmp) / "ds", options, workers=0)
    wall = time.perf_counter() - start
print(result.frames_seen, round(result.frames_seen / wall, 1), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""


def memory_flat(samples: Path, overrides: list[str], seconds: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        video = long_video(Path(tmp), samples / "clips" / "lp_d6.mp4", seconds)
        print(f"long video: {video.stat().st_size / 1e6:.1f} MB, {int(seconds * 30)} frames of 1920x1080 (made in {time.perf_counter() - start:.0f} s)")
        profile_stages(video, overrides + ["prep.frame_stride=3"], 30, label="1080p video")
        for frames in (30, 0):
            line = subprocess.run([sys.executable, "-c", CHILD, str(video), str(frames), *overrides, "prep.frame_stride=3"],
                                  capture_output=True, text=True, env={**os.environ, "REENACTBOOK_NO_PROGRESS": "1"})
            if line.returncode:
                print(line.stderr[-2000:]); return
            seen, fps, peak = line.stdout.split()[-3:]
            print(f"  1080p, every 3rd frame, {seen:>4} frames: {fps} frames/s, peak memory {peak} MB (whole process, in-process prep)")


def jitter(clips: Path, workers: int, overrides: list[str], frames: int) -> None:
    "Crop motion and jitter (aligned px between neighbouring frames) with each frame aligned on its own vs smoothed, per clip."
    from reenactbook.config import load_options
    from reenactbook.face_track import alignment_jitter
    from reenactbook.prep import prepare_dataset
    options = load_options("sample", overrides + [f"prep.max_frames={frames}", "prep.frame_stride=1", "prep.contact_sheet=false"])
    with tempfile.TemporaryDirectory() as tmp:
        result = prepare_dataset(clips, Path(tmp) / "ds", options, workers=workers)
        table = alignment_jitter(result.dataset)
    sigma = options.prep.smooth_alignment
    print(f"crop jitter, first {frames} frames of each clip (every frame), aligned px between neighbouring frames; "
          f"own = every frame aligned on its own (the paper), smoothed = prep.smooth_alignment={sigma:g}:")
    print(f"  {'clip':<8} {'frames':>6} {'motion own':>10} {'smoothed':>9} {'jitter own':>10} {'smoothed':>9}")
    for row in table.itertuples():
        print(f"  {row.clip:<8} {row.frames:>6} {row.motion_own:>10.2f} {row.motion_smoothed:>9.2f} {row.jitter_own:>10.2f} {row.jitter_smoothed:>9.2f}")
    print(f"  {'mean':<8} {table.frames.sum():>6} {table.motion_own.mean():>10.2f} {table.motion_smoothed.mean():>9.2f} "
          f"{table.jitter_own.mean():>10.2f} {table.jitter_smoothed.mean():>9.2f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--max-frames", type=int, default=0, help="frames per clip (0 = all 3,880 frames of the 13 clips)")
    parser.add_argument("--backends", choices=["offline", "auto"], default="offline")
    parser.add_argument("--profile-frames", type=int, default=40, help="frames per clip for the stage profile (0 = skip)")
    parser.add_argument("--long-seconds", type=float, default=20, help="length of the 1080p memory test (0 = skip)")
    parser.add_argument("--jitter", type=int, default=0, help="frames per clip for the crop-jitter table (0 = skip)")
    parser.add_argument("--skip-end-to-end", action="store_true")
    args = parser.parse_args()
    from reenactbook.core import samples_dir
    samples = samples_dir(required=True)
    overrides = OFFLINE if args.backends == "offline" else []
    os.environ.setdefault("REENACTBOOK_NO_PROGRESS", "1")
    print(f"CPU cores available: {len(os.sched_getaffinity(0))}, load average {os.getloadavg()[0]:.1f} (shared machine)")
    if not args.skip_end_to_end:
        end_to_end(samples / "clips", args.workers, overrides, args.max_frames)
    if args.jitter:
        jitter(samples / "clips", args.workers, [], args.jitter)
    if args.profile_frames:
        profile_stages(samples / "clips", overrides, args.profile_frames)
    if args.long_seconds:
        memory_flat(samples, overrides, args.long_seconds)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
