"""Speed of the synthetic talking-face generator, the tiny dataset's cost and identity separability, and the contact sheet.

Prints frames per second of the landmark tracks the LSG trains on (`sample_tracks`: no drawing), then (wall clock and CPU time of this process: the machine may be shared) for drawing alone at
64/128/256 px and for `synthesize` (drawing plus writing the dataset) at 128 px; the time to make `tiny_dataset()` in a
fresh cache; the nearest-centroid identity accuracy on it; and writes the contact sheet PNG (path printed).

Usage: python bench/bench_synthetic.py [--sheet PATH]
"""
import argparse
import os
import tempfile
import threading
import time
from pathlib import Path


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sheet", default=None, help="where to write the contact sheet (default: <cache>/synthetic/contact_sheet.png)")
    args = parser.parse_args()
    os.environ.setdefault("REENACTBOOK_NO_PROGRESS", "1")
    from reenactbook import synthetic as S
    from reenactbook.face_model import sample_identity, sample_motion
    from reenactbook.tracks import sample_tracks
    from reenactbook.core import cache_dir

    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (wall-clock figures drop when the machine is shared)")
    sample_tracks(8, 8)   # warm-up
    for count in (64, 1024):
        tracks, wall, cpu = timed(lambda: sample_tracks(count, 8, seed=1))
        print(f"landmark tracks (LSG training): {count * 8 / wall:9.0f} frames/s wall, {count * 8 / cpu:9.0f} frames/s CPU "
              f"({count} windows of 8 frames, {len(set(tracks.people.tolist()))} people of a pool of 4096)")
    S.render_video(sample_identity(0, 0), sample_motion(0, 0, 0, 4), 64)   # warm-up
    for size in S.SIZES:
        jobs = [(i, v) for i in range(4) for v in range(2)]
        frames = 32 * len(jobs)
        _, wall, cpu = timed(lambda: [S.render_video(sample_identity(0, i), sample_motion(0, i, v, 32), size) for i, v in jobs])
        print(f"draw only      {size:3d} px: {frames / wall:7.0f} frames/s wall, {frames / cpu:7.0f} frames/s CPU ({frames} frames)")

    # synthesize = draw + write (JPEG, index, landmarks, extras); time spent waiting in fsync is measured on the side
    fsync, spent = os.fsync, [0.0]
    lock = threading.Lock()
    def counting_fsync(fd):
        started = time.perf_counter()
        fsync(fd)
        with lock:
            spent[0] += time.perf_counter() - started
    os.fsync = counting_fsync
    with tempfile.TemporaryDirectory() as tmp:
        ds, wall, cpu = timed(lambda: S.synthesize(Path(tmp) / "bench", identities=8, videos=2, frames=32, size=128, show_progress=False))
    os.fsync = fsync
    print(f"synthesize    128 px: {len(ds) / wall:7.0f} frames/s wall, {len(ds) / cpu:7.0f} frames/s CPU ({len(ds)} frames, "
          f"writing included; {spent[0]:.1f} s of fsync waits over {S.WRITER_THREADS} writer threads)")

    with tempfile.TemporaryDirectory() as tmp:
        saved = os.environ.get("REENACTBOOK_CACHE")
        os.environ["REENACTBOOK_CACHE"] = tmp
        try:
            tiny, wall, cpu = timed(S.tiny_dataset)
            size_mb = sum(p.stat().st_size for p in tiny.root.rglob("*") if p.is_file()) / 2**20
            people = tiny.index.groupby("split")["identity"].nunique().to_dict()
            print(f"tiny_dataset(): {len(tiny)} frames ({len(tiny.identities)} people: {people.get('train', 0)} train, "
                  f"{people.get('test', 0)} test; {tiny.image_size} px), {size_mb:.1f} MiB, made in {wall:.1f} s wall / {cpu:.1f} s CPU")
            result = S.identity_separability(tiny)
            print(f"identity from landmarks (nearest centroid on normalised 68 points, last video of each person held out): "
                  f"accuracy {result['accuracy']:.3f}, chance {result['chance']:.3f} ({result['test_frames']} test frames)")
        finally:
            if saved is None:
                os.environ.pop("REENACTBOOK_CACHE")
            else:
                os.environ["REENACTBOOK_CACHE"] = saved

    sheet_path = Path(args.sheet) if args.sheet else cache_dir("synthetic") / "contact_sheet.png"
    sheet, wall, _ = timed(lambda: S.contact_sheet(sheet_path, identities=8, size=128))
    print(f"contact sheet ({sheet.shape[1]}x{sheet.shape[0]}: 8 people x 3 yaws x 4 expressions) in {wall:.1f} s: {sheet_path}")


if __name__ == "__main__":
    main()
