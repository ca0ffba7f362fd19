"""The LSG against linear interpolation (LI) and the 3D-aware baseline (`face_fit.interpolate_3d`) on people it never saw.

Usage: python bench/bench_lsg.py accuracy --checkpoint runs/lsg-tiny/lsg.safetensors [--cases 600] [--real /path/to/prepared]
       python bench/bench_lsg.py ablation [--steps 1000] [--only "full,without D1"]   (eq. 2's terms, one at a time)
       python bench/bench_lsg.py speed [--threads 1,2] [--hidden H] [--layers L]
       python bench/bench_lsg.py bounds [--cases 3000] [--real /path/to/prepared]   (what no method given two endpoints can beat)

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


def _linear_in_time(sampler):
    "Wrap a `tracks` motion sampler so that every window moves linearly in time between its own two endpoints."
    def sample(*args, **kwargs):
        values = sampler(*args, **kwargs)                                       # [N, K, C]
        w = np.linspace(0, 1, values.shape[1])[None, :, None]
        return values[:, :1] + (values[:, -1:] - values[:, :1]) * w
    return sample


def oracle_tracks(cases: int, k: int, linear: tuple[str, ...]) -> np.ndarray:
    """The windows of `unseen_tracks(cases, k)` with the same people, framing and endpoints, but with the motions named in `linear`
    ("pose", "expression") made linear in time: an interpolator that knows each person's exact 3D shape and nothing else."""
    from unittest import mock
    from reenactbook import tracks
    patches = [mock.patch.object(tracks, f"_track_{name}", _linear_in_time(getattr(tracks, f"_track_{name}"))) for name in linear]
    for patch in patches:
        patch.start()
    try:
        return unseen_tracks(cases, k).landmarks
    finally:
        for patch in patches:
            patch.stop()


def pose_path_predictability(cases: int, k: int) -> dict:
    """R^2 of the best linear prediction of each in-between frame's departure from a constant-speed turn (yaw, pitch, roll), from the
    endpoint poses and the size of the expression change; fitted on the training pool's people, scored on unseen ones."""
    from reenactbook.tracks import sample_tracks
    def features(tracks):
        pose = tracks.pose.astype(np.float64)
        w = np.linspace(0, 1, k)[None, :, None]
        departure = (pose - (pose[:, :1] + (pose[:, -1:] - pose[:, :1]) * w))[:, 1:-1]                      # [N, K-2, 3]
        change = np.abs(tracks.expression[:, -1] - tracks.expression[:, 0]).sum(-1, keepdims=True)
        x = np.concatenate([pose[:, 0], pose[:, -1], np.abs(pose[:, -1] - pose[:, 0]), change, np.ones((len(pose), 1))], -1)
        return x, departure.reshape(len(pose), -1)
    x_fit, y_fit = features(sample_tracks(max(4 * cases, 4000), k, seed=1))
    x_new, y_new = features(unseen_tracks(cases, k))
    predicted = x_new @ np.linalg.lstsq(x_fit, y_fit, rcond=None)[0]
    r2 = 1 - ((y_new - predicted) ** 2).reshape(len(y_new), k - 2, 3).mean((0, 1)) / (y_new ** 2).reshape(len(y_new), k - 2, 3).mean((0, 1))
    return dict(zip(("yaw", "pitch", "roll"), r2.tolist()))


def real_learnable_share(root: str, k: int, stride: int = 3, ridges=(30, 300, 3000)) -> list[dict]:
    """Leave one person out on a prepared dataset's train split: ridge regression of LI's in-between error (in each window's own
    frame) from the endpoints, with shape features (both endpoints) or identity-free ones (their difference only); the change of the
    held-out person's in-between NME against LI, per person and on average (negative = the learnt correction helps)."""
    from reenactbook.dataset import FaceDataset
    from reenactbook.landmarks import interocular_distance, nme
    from reenactbook.views import LandmarkWindows
    windows, people = LandmarkWindows(FaceDataset(root), k, stride, "train").tensors()
    truth, people = windows.numpy().astype(np.float64), people.numpy()
    li = linear_interpolation(truth[:, 0], truth[:, -1], k)
    centre = li.mean(2, keepdims=True)
    unit = np.asarray(interocular_distance(truth[:, 0]))[:, None, None, None]
    frame = lambda x: (x - centre[:, :x.shape[1]]) / unit
    target = (frame(truth) - frame(li))[:, 1:-1].reshape(len(truth), -1)
    inputs = {"shape (both endpoints)": np.concatenate([frame(truth[:, :1]), frame(truth[:, -1:])], 1).reshape(len(truth), -1),
              "identity-free (their difference)": (frame(truth[:, -1:]) - frame(truth[:, :1])).reshape(len(truth), -1)}
    error = lambda seq, rows: np.asarray(nme(seq[rows, 1:-1], truth[rows, 1:-1])).mean()
    rows = []
    for name, x in inputs.items():
        for ridge in ridges:
            changes = []
            for person in np.unique(people):
                seen, held = people != person, people == person
                mean_x, mean_y = x[seen].mean(0), target[seen].mean(0)
                weights = np.linalg.solve((x[seen] - mean_x).T @ (x[seen] - mean_x) + ridge * np.eye(x.shape[1]),
                                          (x[seen] - mean_x).T @ (target[seen] - mean_y))
                corrected = li.copy()
                corrected[:, 1:-1] += (((x - mean_x) @ weights + mean_y).reshape(len(x), k - 2, -1, 2) * unit)
                changes.append(100 * (error(corrected, held) / error(li, held) - 1))
            rows.append({"features": name, "ridge": ridge, "people": len(changes), "mean change %": float(np.mean(changes)),
                         "best person %": float(np.min(changes)), "worst person %": float(np.max(changes))})
    return rows


def bounds(argv):
    "What no method that sees only the two endpoints can beat, measured: the floors behind the targets this benchmark misses."
    from reenactbook.face_fit import fit_faces, interpolate_3d
    from reenactbook.landmarks import nme
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cases", type=int, default=3000, help="unseen synthetic windows (about 10 % turn by more than 25 degrees)")
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--real", default=os.environ.get("REENACTBOOK_LSG_REAL", ""), help="prepared dataset (leave-one-person-out rows)")
    args = parser.parse_args(argv)
    k, started = args.k, time.time()
    tracks = unseen_tracks(args.cases, k)
    truth = tracks.landmarks
    turn = np.flatnonzero(np.abs(tracks.pose[:, -1, 0] - tracks.pose[:, 0, 0]) > 25)
    identity = lambda frames: fit_faces(torch.from_numpy(np.ascontiguousarray(frames[:, 1:-1], np.float32))).identity
    truth_identity = identity(truth)
    rng = np.random.default_rng(0)
    noisy = lambda x, sigma: (x + rng.normal(0, sigma, x.shape)).astype(np.float32)
    start2, end2 = noisy(truth[:, 0], 2.0), noisy(truth[:, -1], 2.0)
    # name -> (sequences, condition, what the row bounds); the exact-shape oracles keep the true framing path (translation and
    # scale), so their NME is no bound; their identity error is (the fit is blind to translation and scale)
    sequences = {
        "LI": (linear_interpolation(truth[:, 0], truth[:, -1], k), "clean", "baseline"),
        "3D (shipped)": (interpolate_3d(truth[:, 0], truth[:, -1], k), "clean", "shipped"),
        "oracle: exact 3D shape, pose linear in time": (
            oracle_tracks(args.cases, k, ("pose",)), "clean", "identity error, the face known exactly, the head turning at constant speed"),
        "oracle: exact 3D shape, pose and expression linear in time": (
            oracle_tracks(args.cases, k, ("pose", "expression")), "clean", "identity error, the face known exactly, the path between the endpoints not"),
        "LI, 2 px endpoint noise": (linear_interpolation(start2, end2, k), "noise 2 px", "baseline"),
        "3D (shipped), 2 px endpoint noise": (interpolate_3d(start2, end2, k), "noise 2 px", "shipped"),
        "oracle: LI of the clean endpoints": (
            linear_interpolation(truth[:, 0], truth[:, -1], k), "noise 2 px", "NME, the noise removed, points moving linearly"),
        "oracle: true frames + 1.41 px (two 2 px endpoints averaged)": (
            noisy(truth, 2.0 / np.sqrt(2)), "noise 2 px", "identity error, the motion known, the two noisy endpoints averaged"),
    }
    print(f"LSG bounds: {args.cases} unseen synthetic windows ({len(turn)} turn > 25 deg), K={k}\n")
    print("| windows | sequence | condition | in-between NME % | identity error | what it bounds |")
    print("|---|---|---|---|---|---|")
    for name, (seq, condition, bounded) in sequences.items():
        seq = np.asarray(seq, np.float64)
        for label, rows in (("all", slice(None)), ("turn > 25 deg", turn)):
            if condition != "clean" and label != "all":
                continue
            error = np.asarray(nme(seq[rows, 1:-1], truth[rows, 1:-1].astype(np.float64))).mean() * 100
            identity_error = (identity(seq[rows]) - truth_identity[rows]).norm(dim=-1).mean().item()
            print(f"| {label} | {name} | {condition} | {error:.2f} | {identity_error:.3f} | {bounded} |")
    print("\n| head motion | R^2 of the best linear prediction of the in-between departure from a constant-speed turn |")
    print("|---|---|")
    for axis, r2 in pose_path_predictability(args.cases, k).items():
        print(f"| {axis} | {r2:.3f} |")
    if args.real:
        print("\n| learnt correction of LI on real windows (stride 3), leave one person out | ridge | people | mean change of NME % | best person | worst person |")
        print("|---|---|---|---|---|---|")
        for r in real_learnable_share(args.real, k):
            print(f"| {r['features']} | {r['ridge']:g} | {r['people']} | {r['mean change %']:+.2f} | {r['best person %']:+.1f} | {r['worst person %']:+.1f} |")
    print(f"\n{time.time() - started:.0f} s; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    import sys
    command, argv = (sys.argv[1], sys.argv[2:]) if len(sys.argv) > 1 and sys.argv[1] in ("speed", "accuracy", "ablation", "bounds") else ("speed", sys.argv[1:])
    {"speed": speed, "accuracy": accuracy, "ablation": ablation, "bounds": bounds}[command](argv)
