"""Sketch map p_t: sketches per second at 256x256 for each implementation, and head-pose accuracy.

Run: .venv/bin/python bench/bench_sketch.py [--size 256] [--faces 512] [--threads N]
Prints figures only (no asserts); see nbs/01_landmarks.ipynb for what is measured.
"""
import argparse
import time

import numpy as np
import torch

from reenactbook.landmarks import MEAN_FACE_3D, TEMPLATE_68, LAYOUT_68, LAYOUT_98, MEAN_FACE_3D_98, template_points
from reenactbook.sketch import _render_sketch_opencv, _render_sketch_torch, render_sketch, _default_thickness, stroke_width
from reenactbook.alignment import (camera_matrix, head_pose, project_points, rotation_matrix, align_face, transform_points,
                                   invert_transform)


def random_faces(n: int, size: int, layout: str, seed: int = 0) -> np.ndarray:
    "n faces posed at random (yaw, pitch within +-40, roll within +-20) and projected into a size x size image."
    rng = np.random.default_rng(seed)
    face = MEAN_FACE_3D_98 if layout == "98" else MEAN_FACE_3D
    poses = rng.uniform([-40, -40, -20], [40, 40, 20], (n, 3))
    cam = camera_matrix(size)
    dist = 1000 * 256 / size * 2.2
    return np.stack([project_points(face, rotation_matrix(*p), [0, 0, dist], cam) for p in poses]).astype(np.float32)


def rate(fn, n_faces: int, min_seconds: float = 1.0) -> float:
    fn()  # warm up
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < min_seconds:
        fn()
        count += n_faces
    return count / (time.perf_counter() - start)


def bench_sketch(size: int, faces: int) -> None:
    print(f"== sketch map p_t at {size}x{size}, stroke {stroke_width(_default_thickness(size))[1]} px (torch threads: {torch.get_num_threads()})")
    for layout_name, layout in (("68", LAYOUT_68), ("98", LAYOUT_98)):
        pts = random_faces(faces, size, layout_name)
        pts_t = torch.from_numpy(pts)
        th = stroke_width(_default_thickness(size))[1]
        rows = [("opencv  cv2.polylines LINE_AA, loop", lambda: _render_sketch_opencv(pts.astype(np.float64), size, th, layout), faces)]
        for batch in (1, 16, 64):
            rows.append((f"torch   segment rasteriser, batch {batch:3d}",
                         (lambda b: lambda: [_render_sketch_torch(pts_t[i:i + b], size, th, layout) for i in range(0, faces, b)])(batch), faces))
        rows.append(("render_sketch(auto), numpy batch", lambda: render_sketch(pts, size), faces))
        if torch.cuda.is_available():
            pts_gpu = pts_t.cuda()
            def gpu(b=256):
                for i in range(0, faces, b):
                    _render_sketch_torch(pts_gpu[i:i + b], size, th, layout)
                torch.cuda.synchronize()
            rows.append(("torch   segment rasteriser, cuda batch 256", gpu, faces))
        for name, fn, n in rows:
            print(f"  {layout_name}-point  {name:45s} {rate(fn, n):9.0f} sketches/s")


def bench_pose(faces: int = 400) -> None:
    "Head pose from projected 3D faces of known pose: the mean face and perturbed (other identities, noisy) versions."
    print("== head pose from 2D landmarks of known pose (yaw, pitch uniform in +-45, roll in +-20; 256 px, focal 256)")
    rng = np.random.default_rng(1)
    cam = camera_matrix(256)
    cases = {"mean face, exact": (0.0, 0.0, 0.0),
             "other faces (size 5%/axis, 1 mm offsets), 0.5 px": (3.0, 0.5, 0.0),
             "other faces (size 5%/axis, 1 mm offsets), 1 px": (3.0, 1.0, 0.0),
             "other faces (size 8%/axis, 2 mm offsets), 1 px": (5.0, 1.0, 0.0),
             "as above, true focal 2x the assumed one": (5.0, 1.0, 1.0)}
    for name, (shape_mm, noise_px, focal_off) in cases.items():
        truth = rng.uniform([-45, -45, -20], [45, 45, 20], (faces, 3))
        pts = []
        for pose in truth:
            # another identity: per-axis size changes (sd shape_mm/60) and left/right-symmetric point offsets (sd shape_mm/2/sqrt(2) mm)
            face = MEAN_FACE_3D * rng.normal(1, shape_mm / 60, 3)
            offsets = rng.normal(0, shape_mm / 2, (68, 3))
            face = face + (offsets + offsets[list(LAYOUT_68.mirror)] * [-1, 1, 1]) / 2
            dist = rng.uniform(500, 900)
            cam_true = camera_matrix(256, 256 * (2.0 if focal_off else 1.0))
            p = project_points(face, rotation_matrix(*pose), [rng.normal(0, 20), rng.normal(0, 20), dist * (2.0 if focal_off else 1.0)], cam_true)
            pts.append(p + rng.normal(0, noise_px, p.shape))
        t0 = time.perf_counter()
        est = head_pose(np.stack(pts), 256)
        per = (time.perf_counter() - t0) / faces * 1e3
        err = np.abs(est - truth)
        print(f"  {name:50s} median |error| yaw {np.median(err[:, 0]):5.2f}  pitch {np.median(err[:, 1]):5.2f}  roll {np.median(err[:, 2]):5.2f} deg"
              f"  (90th pct yaw {np.percentile(err[:, 0], 90):5.2f}, pitch {np.percentile(err[:, 1], 90):5.2f}); {per:.2f} ms/face")


def bench_alignment() -> None:
    print("== alignment round trip (align, then invert) at 256x256")
    rng = np.random.default_rng(2)
    errs = []
    for _ in range(200):
        img = np.zeros((480, 640, 3), np.uint8)
        pts = random_faces(1, 300, "68", int(rng.integers(1e9)))[0] + rng.uniform(50, 250, 2)
        al = align_face(img, pts, 256)
        errs.append(np.abs(transform_points(al.landmarks.astype(np.float64), invert_transform(al.matrix)) - pts).max())
    print(f"  max |error| over 200 faces: {max(errs):.2e} px")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--faces", type=int, default=512)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    bench_sketch(args.size, args.faces)
    bench_pose()
    bench_alignment()
