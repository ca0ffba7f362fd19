"""The LSG against linear interpolation (LI) and the 3D-aware baseline (`face_fit.interpolate_3d`) on people it never saw.

Usage: python bench/bench_lsg.py accuracy --checkpoint runs/lsg-tiny/lsg.safetensors [--cases 600] [--real /path/to/prepared]
       python bench/bench_lsg.py ablation [--steps 1000] [--only "full,without D1"]   (eq. 2's terms, one at a time)
       python bench/bench_lsg.py speed [--threads 1,2] [--hidden H] [--layers L]

Unseen people: `synthetic.sample_tracks` with another pool seed (people never drawn in training) and another fine-deformation
basis (`detail_seed`: a face model the LSG never trained on), strides up to one second, head turns up to 60 degrees.
Conditions: clean endpoints; Gaussian endpoint noise of 2 and 4 px; a manipulated end frame (`landmarks.manipulate`, a random
attribute at strength +-1); the clean windows whose yaw changes by more than 25 degrees. Columns: NME of the in-between frames
(% of the inter-ocular distance, to the true frames), identity error (distance of the identity coefficients `face_fit.fit_faces`
finds in each in-between frame from those it finds in the true frame, in model standard deviations), and the largest
displacement of a given endpoint (px). With --real, also NME on the windows (stride 3) of a prepared dataset's test split.
"""
import argparse
import os
import time

import numpy as np
import torch

from reenactbook.config import load_options
from reenactbook.lsg import LandmarkSequenceGenerator, linear_interpolation
from reenactbook.training_loop import cpu_threads


def unseen_tracks(cases: int, k: int = 8, seed: int = 123):
    "Windows of people the LSG never saw, from a fine-deformation basis it never saw."
    from reenactbook.tracks import sample_tracks
    return sample_tracks(cases, k, seed=seed, identities=100_000, people_seed=7, detail_seed=7)


def conditions(truth: np.ndarray, pose: np.ndarray, seed: int = 0) -> dict:
    "name -> (start, end, rows of `truth` scored)."
    from reenactbook.alignment import ATTRIBUTES, manipulate
    rng = np.random.default_rng(seed)
    start, end = truth[:, 0], truth[:, -1]
    everyone = np.arange(len(truth))
    out = {"clean": (start, end, everyone)}
    for sigma in (2.0, 4.0):
        out[f"noise {sigma:g} px"] = (start + rng.normal(0, sigma, start.shape), end + rng.normal(0, sigma, end.shape), everyone)
    attribute = rng.integers(len(ATTRIBUTES), size=len(truth))
    strength = rng.choice([-1.0, 1.0], size=len(truth))
    edited = end.astype(np.float64).copy()
    for a, name in enumerate(ATTRIBUTES):
        rows = attribute == a
        edited[rows] = manipulate(end[rows].astype(np.float64), name, strength[rows])
    out["manipulated end"] = (start, edited, everyone)
    turn = np.flatnonzero(np.abs(pose[:, -1, 0] - pose[:, 0, 0]) > 25)
    out["turn > 25 deg"] = (start[turn], end[turn], turn)
    return {name: (np.asarray(s, np.float32), np.asarray(e, np.float32), rows) for name, (s, e, rows) in out.items()}


def scores(sequences: np.ndarray, truth: np.ndarray, start: np.ndarray, end: np.ndarray, truth_identity: torch.Tensor) -> dict:
    "In-between NME (% IOD), identity error (model SDs) and the largest endpoint displacement (px)."
    from reenactbook.face_fit import fit_faces
    from reenactbook.landmarks import nme
    inner = slice(1, -1)
    error = np.asarray(nme(sequences[:, inner].astype(np.float64), truth[:, inner].astype(np.float64))).mean() * 100
    identity = fit_faces(torch.from_numpy(np.ascontiguousarray(sequences[:, inner]))).identity
    identity_error = (identity - truth_identity).norm(dim=-1).mean().item()
    moved = max(np.abs(sequences[:, 0] - start).max(), np.abs(sequences[:, -1] - end).max())
    return {"nme_inbetween_%": float(error), "identity_error": float(identity_error), "endpoint_moved_px": float(moved)}


def methods(model: LandmarkSequenceGenerator | None) -> dict:
    "name -> f(start, end, k) for the baselines and the LSG (endpoints kept, and refined)."
    from reenactbook.face_fit import interpolate_3d
    out = {"LI": linear_interpolation,
           "3D, linear residual": lambda s, e, k: interpolate_3d(s, e, k, residual="linear"),
           "3D (interpolate_3d, denoised residual)": interpolate_3d}
    if model is not None:
        out["LSG"] = lambda s, e, k: model.lsg(s, e, k, refine_endpoints=False)
        out["LSG refine"] = lambda s, e, k: model.lsg(s, e, k, refine_endpoints=True)
    return out


def synthetic_table(model, cases: int, k: int, chosen_methods: dict | None = None) -> list[dict]:
    "Rows (condition, method, scores) on unseen synthetic people, for `chosen_methods` (default: `methods(model)`)."
    from reenactbook.face_fit import fit_faces
    tracks = unseen_tracks(cases, k)
    truth = tracks.landmarks
    truth_identity = fit_faces(torch.from_numpy(truth[:, 1:-1])).identity
    rows = []
    for condition, (start, end, chosen) in conditions(truth, tracks.pose).items():
        for method, fn in (chosen_methods or methods(model)).items():
            sequences = np.asarray(fn(start, end, k), np.float32)
            rows.append({"data": "unseen synthetic", "condition": condition, "method": method, "windows": len(chosen),
                         **scores(sequences, truth[chosen], start, end, truth_identity[chosen])})
    return rows


def real_table(model, root: str, k: int, stride: int = 3, split: str = "test") -> list[dict]:
    "Rows on the windows of a prepared dataset's `split` (clean endpoints)."
    from reenactbook.dataset import FaceDataset
    from reenactbook.face_fit import fit_faces
    from reenactbook.views import LandmarkWindows
    truth = LandmarkWindows(FaceDataset(root), k, stride, split).tensors()[0].numpy()
    truth_identity = fit_faces(torch.from_numpy(truth[:, 1:-1])).identity
    rows = []
    for method, fn in methods(model).items():
        sequences = np.asarray(fn(truth[:, 0], truth[:, -1], k), np.float32)
        rows.append({"data": f"real {split} stride {stride}", "condition": "clean", "method": method, "windows": len(truth),
                     **scores(sequences, truth, truth[:, 0], truth[:, -1], truth_identity)})
    return rows


def print_table(rows: list[dict]) -> None:
    print(f"| data | condition | method | windows | in-between NME % | identity error | endpoint moved px |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['data']} | {r['condition']} | {r['method']} | {r['windows']} | {r['nme_inbetween_%']:.2f} | "
              f"{r['identity_error']:.3f} | {r['endpoint_moved_px']:.3g} |")
    print()
    base = {(r["data"], r["condition"]): r for r in rows if r["method"] == "LI"}
    print("| data | condition | method | NME vs LI | identity error vs LI |")
    print("|---|---|---|---|---|")
    for r in rows:
        if r["method"] != "LI":
            li = base[(r["data"], r["condition"])]
            print(f"| {r['data']} | {r['condition']} | {r['method']} | {100 * (r['nme_inbetween_%'] / li['nme_inbetween_%'] - 1):+.1f} % | "
                  f"{100 * (r['identity_error'] / li['identity_error'] - 1):+.1f} % |")


def frames_per_second(fn, start, end, k, repeats):
    fn(start, end, k)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(start, end, k)
        best = min(best, time.perf_counter() - t0)
    return start.shape[0] * k / best, best


def speed(argv):
    options = load_options("tiny")
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", default=f"1,{torch.get_num_threads()}", help="comma-separated torch thread counts to try")
    parser.add_argument("--hidden", type=int, default=options.lsg.hidden)
    parser.add_argument("--layers", type=int, default=options.lsg.layers)
    parser.add_argument("--k", type=int, default=options.lsg.k)
    args = parser.parse_args(argv)
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


def accuracy(argv):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkpoint", default=None, help="LSG checkpoint (default: baselines only)")
    parser.add_argument("--cases", type=int, default=600, help="unseen synthetic windows")
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--real", default=os.environ.get("REENACTBOOK_LSG_REAL", ""), help="prepared dataset whose test split is scored")
    args = parser.parse_args(argv)
    model = LandmarkSequenceGenerator.from_checkpoint(args.checkpoint, "cpu") if args.checkpoint else None
    started = time.time()
    with cpu_threads(1):
        rows = synthetic_table(model, args.cases, args.k)
        if args.real:
            rows += real_table(model, args.real, args.k)
    print(f"LSG accuracy: {model!r}; {time.time() - started:.0f} s; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores\n")
    print_table(rows)


ABLATIONS = {"full": {}, "without D1": {"lsg.lambda_d1": 0.0}, "without D2": {"lsg.lambda_d2": 0.0},
             "without S1": {"lsg.lambda_s1": 0.0}, "without S2": {"lsg.lambda_s2": 0.0}}


def ablation(argv):
    "Train the full LSG and one without each term of eq. 2 (same steps, seed and data), then score them like `accuracy`."
    import tempfile
    from reenactbook.face_fit import interpolate_3d
    from reenactbook.lsg_train import train_lsg
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--cases", type=int, default=300)
    parser.add_argument("--out", default=None, help="folder for the runs (default: a temporary folder)")
    parser.add_argument("--only", default="", help="comma-separated subset of: " + ", ".join(ABLATIONS))
    args = parser.parse_args(argv)
    out = args.out or tempfile.mkdtemp(prefix="lsg-ablation-")
    chosen = [name for name in ABLATIONS if not args.only or name in args.only.split(",")]
    print(f"LSG ablation: {args.steps} steps each, tiny profile, {args.cases} unseen synthetic windows; rows print as each variant ends\n")
    print("| condition | variant | in-between NME % | identity error |")
    print("|---|---|---|---|", flush=True)
    for name in chosen:
        options = load_options("tiny", {**ABLATIONS[name], "lsg.steps": args.steps})
        started = time.time()
        checkpoint = train_lsg(options, os.path.join(out, name.replace(" ", "_")), show_progress=False)
        seconds = time.time() - started
        calibrated = LandmarkSequenceGenerator.from_checkpoint(checkpoint, "cpu")
        raw = LandmarkSequenceGenerator.from_checkpoint(checkpoint, "cpu")
        raw.strength = (1.0, 1.0, 1.0)   # the residual as trained, before calibration chose how much of it to keep
        variants = {f"LSG {name}, calibrated {calibrated.strength} ({seconds:.0f} s)": calibrated.lsg,
                    f"LSG {name}, raw residual (strength 1)": raw.lsg}
        if name == chosen[0]:
            variants = {"LI": linear_interpolation, "3D base (interpolate_3d)": interpolate_3d, **variants}
        with cpu_threads(1):
            rows = synthetic_table(None, args.cases, calibrated.k, variants)
        for r in rows:
            print(f"| {r['condition']} | {r['method']} | {r['nme_inbetween_%']:.2f} | {r['identity_error']:.3f} |", flush=True)
    print(f"\nload average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    import sys
    command, argv = (sys.argv[1], sys.argv[2:]) if len(sys.argv) > 1 and sys.argv[1] in ("speed", "accuracy", "ablation") else ("speed", sys.argv[1:])
    {"speed": speed, "accuracy": accuracy, "ablation": ablation}[command](argv)
