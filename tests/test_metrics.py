"""Metrics: known values (identical images, hand computations, scikit-image, pytorch-fid), streaming, bad input, the
folder/CLI path, LPIPS availability, and the real pretrained networks."""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from reenactbook import image_metrics, metrics
from reenactbook.core import ConfigError, InputError, WeightsError
from reenactbook.image_metrics import akd, aed, csim, psnr, ssim
from reenactbook.fid import FeatureStatistics, frechet_distance
from reenactbook.metrics import MetricSuite, evaluate_folders, evaluate_pairs, write_metrics_table


# ---------------------------------------------------------------- small stand-in networks (dependency injection)
class PooledFeatures(torch.nn.Module):
    "A 24-d stand-in for Inception pool3 features."
    backend = "stand-in pooled features"
    weights_info = {"file": "none", "sha256": "0" * 64}

    def forward(self, images):
        return torch.cat([F.adaptive_avg_pool2d(images, 2).flatten(1), F.adaptive_max_pool2d(images, 2).flatten(1)], 1)


class ColourEmbedder(torch.nn.Module):
    backend = "stand-in colour embedder"

    def forward(self, images):
        return F.normalize(F.adaptive_avg_pool2d(images, 4).flatten(1) - 0.5, dim=-1)


class CentroidDetector(torch.nn.Module):
    "68 points on a ring around the brightness centroid."
    backend = "stand-in centroid detector"

    def landmarks_aligned(self, images):
        gray = images.mean(1)
        ys, xs = torch.meshgrid(torch.arange(gray.shape[1]), torch.arange(gray.shape[2]), indexing="ij")
        weight = gray / gray.sum((1, 2), keepdim=True)
        centre = torch.stack([(weight * xs).sum((1, 2)), (weight * ys).sum((1, 2))], -1)
        angles = torch.arange(68) * 2 * torch.pi / 68
        return centre[:, None] + 5 * torch.stack([angles.cos(), angles.sin()], -1)


STAND_INS = dict(fid_features=PooledFeatures(), identity_embedder=ColourEmbedder(), landmark_detector=CentroidDetector())
PIXEL_AND_STAND_IN = ["fid", "ssim", "psnr", "csim", "aed", "akd"]


def images(n, size=32, seed=0):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def noisy(x, amount=0.1, seed=1):
    return (x + amount * torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))).clamp(0, 1)


def blob(cx, cy, size=48):
    ys, xs = torch.meshgrid(torch.arange(float(size)), torch.arange(float(size)), indexing="ij")
    return torch.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / 30).expand(1, 3, size, size).clone()


def save_pngs(folder, batch, names=None, ext="png"):
    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(batch):
        name = names[i] if names else f"{i:03d}"
        Image.fromarray((image.permute(1, 2, 0) * 255).round().byte().numpy()).save(folder / f"{name}.{ext}")
    return folder


# ---------------------------------------------------------------- known values
def test_ssim_of_identical_images_is_one():
    x = images(3)
    assert torch.allclose(ssim(x, x), torch.ones(3), atol=1e-6)
    assert (ssim(x, noisy(x)) < 0.95).all()


@pytest.mark.parametrize("shape", [(2, 3, 32, 32), (2, 3, 40, 27), (1, 3, 64, 64)])
def test_ssim_agrees_with_scikit_image(shape):
    from skimage.metrics import structural_similarity
    x = torch.rand(shape, generator=torch.Generator().manual_seed(5))
    y = noisy(x, 0.2, seed=6)
    ours = ssim(x, y)
    for i in range(shape[0]):
        theirs = structural_similarity(x[i].permute(1, 2, 0).double().numpy(), y[i].permute(1, 2, 0).double().numpy(),
                                       gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1,
                                       channel_axis=2)
        assert abs(ours[i].item() - theirs) < 1e-3, (ours[i].item(), theirs)


def test_psnr_against_a_hand_computation():
    x = torch.zeros(2, 3, 16, 16)
    y = x.clone()
    y[0] += 0.1                                  # MSE 0.01 -> 20 dB
    y[1, :, :8] = 0.5                            # half the pixels off by 0.5: MSE 0.125 -> 9.0309 dB
    assert torch.allclose(psnr(y, x), torch.tensor([20.0, 10 * np.log10(1 / 0.125)], dtype=torch.float32), atol=1e-4)
    assert torch.isinf(psnr(x, x, ceiling=None)).all()


def test_psnr_of_identical_pairs_is_capped_so_the_mean_stays_finite():
    "Issue 15: one identical pair made the mean PSNR inf."
    x, y = images(3), noisy(images(3))
    assert torch.equal(psnr(x, x), torch.full((3,), image_metrics.PSNR_CEILING))
    out = MetricSuite(["psnr"], device="cpu").update(torch.cat([x[:1], y[1:]]), torch.cat([x[:1], x[1:]])).compute()
    assert np.isfinite(out["psnr"]) and out["psnr_capped"] == 1
    expected = (image_metrics.PSNR_CEILING + psnr(y[1:], x[1:]).sum().item()) / 3
    assert out["psnr"] == pytest.approx(expected, rel=1e-6)


def test_csim_of_an_image_with_itself_is_one_and_aed_zero():
    x = images(4)
    embedder = ColourEmbedder()
    assert torch.allclose(csim(x, x, embedder), torch.ones(4), atol=1e-6)
    assert torch.allclose(aed(x, x, embedder), torch.zeros(4), atol=1e-5)
    other = images(4, seed=9)
    assert torch.allclose(aed(x, other, embedder), (2 - 2 * csim(x, other, embedder)).clamp(min=0).sqrt(), atol=1e-5)


def test_akd_is_zero_for_identical_images_and_the_shift_in_pixels():
    detector = CentroidDetector()
    face = blob(20, 22)
    assert akd(face, face, detector).item() < 1e-5
    shifted = blob(23, 26)                        # centre moved by (3, 4): 5 px
    assert abs(akd(shifted, face, detector).item() - 5.0) < 0.05


def test_streaming_feature_statistics_equal_numpy_whatever_the_batches():
    features = torch.randn(40, 5, generator=torch.Generator().manual_seed(0)) * 3 + 100  # large offset: cancellation test
    for size in (1, 3, 40):
        stats = FeatureStatistics()
        for chunk in features.split(size):
            stats.update(chunk)
        mean, cov = stats.mean_cov()
        np.testing.assert_allclose(mean, features.double().numpy().mean(0), rtol=1e-12)
        np.testing.assert_allclose(cov, np.cov(features.double().numpy(), rowvar=False), rtol=1e-9, atol=1e-9)


def test_fid_of_a_set_with_itself_is_about_zero_and_uses_pytorch_fid():
    from pytorch_fid.fid_score import calculate_frechet_distance
    x, y = images(64, seed=1), images(64, seed=2) ** 2  # y darker
    features = PooledFeatures()
    suite = lambda a, b: MetricSuite(["fid"], device="cpu", fid_features=features).update(a, b).compute()["fid"]
    different = suite(x, y)
    assert different > 0.05
    assert abs(suite(x, x)) < 1e-3 * different
    fx, fy = features(x).double().numpy(), features(y).double().numpy()
    reference = calculate_frechet_distance(fx.mean(0), np.cov(fx, rowvar=False), fy.mean(0), np.cov(fy, rowvar=False))
    assert abs(different - reference) < 1e-6 * max(1.0, reference)


def test_suite_results_do_not_depend_on_batching_and_name_backends():
    gen, ref, src = images(10, seed=3), noisy(images(10, seed=3), 0.05), images(10, seed=4)
    one = evaluate_pairs(gen, ref, src, batch_size=10, metrics=PIXEL_AND_STAND_IN, device="cpu", **STAND_INS)
    many = evaluate_pairs(gen, ref, src, batch_size=3, metrics=PIXEL_AND_STAND_IN, device="cpu", **STAND_INS)
    for metric in PIXEL_AND_STAND_IN + ["csim_source", "aed_source"]:
        assert one[metric] == pytest.approx(many[metric], rel=1e-5, abs=1e-6), metric
    assert one["num_images"] == 10 and one["image_size"] == [32, 32]
    assert one["backends"]["csim"] == "stand-in colour embedder"
    assert one["backends"]["akd"] == "stand-in centroid detector"
    assert one["weights_info"]["fid"]["sha256"] == "0" * 64
    assert one["csim"] > one["csim_source"]       # generated is a noisy copy of the reference, not of the source
    # iterables of batches (uint8, numpy NHWC) give the same as float tensors
    as_uint8 = lambda t: (t.permute(0, 2, 3, 1) * 255).round().byte().numpy()
    batches = evaluate_pairs((as_uint8(g) for g in gen.split(4)), [as_uint8(r) for r in ref.split(4)],
                             metrics=["ssim", "psnr"], device="cpu")
    assert batches["ssim"] == pytest.approx(one["ssim"], abs=2e-3)


def test_image_size_option_resizes_both_sets():
    gen, ref = images(2, size=40), images(2, size=40, seed=1)
    out = MetricSuite(["ssim", "akd"], device="cpu", image_size=24, landmark_detector=CentroidDetector()).update(gen, ref).compute()
    assert out["image_size"] == [24, 24]


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("generated, reference, message", [
    (torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 17), "differ in shape"),
    (torch.rand(2, 3, 16, 16), torch.rand(3, 3, 16, 16), "differ in shape"),
    (torch.rand(2, 3, 16, 16) * 255, torch.rand(2, 3, 16, 16), r"must lie in \[0, 1\]"),
    (torch.rand(2, 3, 16, 16) * 2 - 1, torch.rand(2, 3, 16, 16), r"\(x \+ 1\) / 2"),
    (torch.rand(2, 1, 16, 16), torch.rand(2, 1, 16, 16), r"\[B,3,H,W\]"),
    (np.zeros((2, 3, 16, 16), np.uint8), np.zeros((2, 3, 16, 16), np.uint8), r"\[N,H,W,3\]"),
    (torch.full((1, 3, 16, 16), float("nan")), torch.rand(1, 3, 16, 16), "NaN"),
    (torch.zeros(2, 3, 16, 16, dtype=torch.int64), torch.zeros(2, 3, 16, 16, dtype=torch.int64), "uint8"),
])
def test_bad_images_raise_input_error(generated, reference, message):
    with pytest.raises(InputError, match=message):
        ssim(generated, reference)


def test_bad_sets_and_options_raise_clear_errors(tmp_path):
    with pytest.raises(InputError, match="run out at different points"):
        evaluate_pairs([images(2), images(2)], [images(2)], metrics=["ssim"], device="cpu")
    with pytest.raises(InputError, match="no images were given"):
        MetricSuite(["ssim"], device="cpu").compute()
    with pytest.raises(InputError, match="at least 2 images"):
        MetricSuite(["fid"], device="cpu", fid_features=PooledFeatures()).update(images(1), images(1)).compute()
    with pytest.raises(ConfigError, match="unknown metric"):
        MetricSuite(["ssim", "fidd"], device="cpu")
    suite = MetricSuite(["ssim"], device="cpu").update(images(1, size=32), images(1, size=32))
    with pytest.raises(InputError, match="earlier batches"):
        suite.update(images(1, size=24), images(1, size=24))
    with pytest.raises(InputError, match="source images"):
        MetricSuite(["csim"], device="cpu", identity_embedder=ColourEmbedder()).update(images(2), images(2), images(3))
    with pytest.raises(InputError, match="at least 12 pixels"):
        ssim(images(1, size=8), images(1, size=8))


def test_bad_folders_raise_input_error(tmp_path):
    gen = save_pngs(tmp_path / "gen", images(3))
    ref = save_pngs(tmp_path / "ref", images(3, seed=1))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="holds no image files"):
        evaluate_folders(gen, tmp_path / "empty", metrics=["ssim"], device="cpu")
    with pytest.raises(InputError, match="does not exist"):
        evaluate_folders(gen, tmp_path / "missing", metrics=["ssim"], device="cpu")
    (ref / "002.png").rename(ref / "two.png")
    with pytest.raises(InputError, match=r"file names do not match.*'002'.*'two'"):
        evaluate_folders(gen, ref, metrics=["ssim"], device="cpu")
    (ref / "two.png").rename(ref / "002.png")
    save_pngs(tmp_path / "src", images(2, seed=2))
    with pytest.raises(InputError, match="no source image of the same name"):
        evaluate_folders(gen, ref, tmp_path / "src", metrics=["ssim"], device="cpu")
    (gen / "000.jpg").write_bytes((gen / "000.png").read_bytes())
    with pytest.raises(InputError, match="same name"):
        evaluate_folders(gen, ref, metrics=["ssim"], device="cpu")
    (gen / "000.jpg").unlink()
    (gen / "001.png").write_bytes(b"not an image")
    with pytest.raises(InputError, match="cannot be read as an image"):
        evaluate_folders(gen, ref, metrics=["ssim"], device="cpu")
    save_pngs(gen, images(1, size=40), names=["001"])
    with pytest.raises(InputError, match="differs from"):
        evaluate_folders(gen, ref, metrics=["ssim"], device="cpu")


# ---------------------------------------------------------------- folders, tables, CLI
def test_folders_match_by_name_across_formats_and_subfolders(tmp_path):
    gen, ref, src = images(5, seed=3), noisy(images(5, seed=3), 0.05), images(5, seed=4)
    names = ["a/000", "a/001", "b/000", "b/001", "b/002"]
    for root, batch, ext in (("gen", gen, "png"), ("ref", ref, "png"), ("src", src, "png")):
        for name, image in zip(names, batch):
            save_pngs((tmp_path / root / name).parent, image[None], names=[name.split("/")[1]], ext=ext)
    out = evaluate_folders(tmp_path / "gen", tmp_path / "ref", tmp_path / "src", batch_size=2, read_threads=2,
                           metrics=["ssim", "psnr", "csim"], device="cpu", identity_embedder=ColourEmbedder(),
                           per_image_csv=tmp_path / "per_image.csv")
    direct = evaluate_pairs(gen, ref, src, metrics=["ssim", "psnr", "csim"], device="cpu", identity_embedder=ColourEmbedder())
    for metric in ("ssim", "psnr", "csim", "csim_source"):
        tolerance = 0.02 if metric == "psnr" else 3e-3                          # 8-bit quantisation only
        assert out[metric] == pytest.approx(direct[metric], abs=tolerance), metric
    table = (tmp_path / "per_image.csv").read_text().splitlines()
    assert table[0].split(",") == ["name", "ssim", "psnr", "csim", "csim_source"] and table[1].startswith("a/000,")
    assert out["folders"]["source"] == str(tmp_path / "src")


def test_table_writer_writes_csv_and_markdown(tmp_path):
    rows = [{"name": "ours", "fid": 43.9, "ssim": 0.79, "csim": 0.18, "backend_csim": "arcface"},
            {"name": "LI", "fid": None, "ssim": float("inf"), "csim": 0.7}]
    csv_path, md_path = write_metrics_table(rows, tmp_path / "table2.csv")
    assert csv_path.name == "table2.csv" and md_path.name == "table2.md"
    assert csv_path.read_text().splitlines() == ["name,fid,ssim,csim,backend_csim", "ours,43.9,0.79,0.18,arcface", "LI,,inf,0.7,"]
    md = md_path.read_text().splitlines()
    assert md[0] == "| name | fid | ssim | csim | backend_csim |" and md[3] == "| LI | n/a | inf | 0.7 | n/a |"
    assert not list(tmp_path.glob(".*tmp"))


def test_eval_cli_writes_results(tmp_path, capsys):
    from reenactbook.cli import main
    gen = save_pngs(tmp_path / "gen", images(3))
    ref = save_pngs(tmp_path / "ref", noisy(images(3)))
    code = main(["eval", str(gen), str(ref), "--metrics", "ssim,psnr", "--out", str(tmp_path / "out"),
                 "--batch_size", "2", "--overrides", "run.device=cpu"])
    assert code == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["num_images"] == 3 and 0 < results["ssim"] < 1 and results["psnr_capped"] == 0
    assert (tmp_path / "out" / "metrics.md").read_text().count("\n") == 3
    assert "| ssim | psnr |" in capsys.readouterr().out
    assert main(["eval", str(gen), str(tmp_path / "nowhere"), "--metrics", "ssim"]) == 2   # clear one-line error


def test_eval_cli_stops_when_a_requested_metric_cannot_be_computed(tmp_path, monkeypatch, capsys):
    "Issue 15: `eval --metrics lpips` without its weights (and csim with corrupt weights) exited 0 with `n/a`."
    from reenactbook.cli import main
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))          # no LPIPS backbone there
    monkeypatch.setenv("REENACTBOOK_WEIGHTS", str(tmp_path / "weights"))
    image_metrics.default_network.cache_clear()
    gen = save_pngs(tmp_path / "gen", images(3))
    ref = save_pngs(tmp_path / "ref", noisy(images(3)))
    code = main(["eval", str(gen), str(ref), "--metrics", "ssim,lpips", "--out", str(tmp_path / "out"), "--overrides", "run.device=cpu"])
    error = capsys.readouterr().err.strip()
    assert code == 2 and len(error.splitlines()) == 1 and not (tmp_path / "out" / "results.json").exists()
    assert "lpips cannot be computed" in error and "alexnet-owt-7be5be79.pth" in error
    assert f"Put it in {tmp_path / 'torch' / 'hub' / 'checkpoints'}" in error


def test_eval_cli_refuses_corrupt_identity_weights(tmp_path, monkeypatch, capsys, shared_weights):
    from reenactbook import pretrained
    from reenactbook.cli import main
    (tmp_path / "weights").mkdir()
    data = bytearray((shared_weights / "mobilefacenet_arcface_128.pt").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / "weights" / "mobilefacenet_arcface_128.pt").write_bytes(bytes(data))
    monkeypatch.setenv("REENACTBOOK_WEIGHTS", str(tmp_path / "weights"))
    monkeypatch.setattr(pretrained, "_INSTANCES", {})
    image_metrics.default_network.cache_clear()
    gen = save_pngs(tmp_path / "gen", images(2))
    code = main(["eval", str(gen), str(gen), "--metrics", "csim", "--overrides", "run.device=cpu", "models.identity=auto"])
    error = capsys.readouterr().err.strip()
    assert code == 2 and len(error.splitlines()) == 1
    assert "csim cannot be computed" in error and "mobilefacenet_arcface_128.pt" in error and "damaged" in error
    assert "fetch_faceapi" not in error and "REENACTBOOK_WEIGHTS" in error
    from reenactbook.core import CorruptWeightsError
    image_metrics.default_network.cache_clear()
    with pytest.raises(CorruptWeightsError, match="mobilefacenet_arcface_128.pt"):   # never skipped, not even in a notebook
        MetricSuite(["csim"], device="cpu")


# ---------------------------------------------------------------- LPIPS: torchmetrics' public API, registered weights
def test_lpips_is_torchmetrics_with_registered_weights_and_refuses_a_corrupt_one(tmp_path, monkeypatch):
    import dataclasses
    import torchvision
    from torchmetrics.functional.image.lpips import learned_perceptual_image_patch_similarity
    from reenactbook import pretrained
    from reenactbook.core import CorruptWeightsError, sha256_file
    name = image_metrics.lpips_backbone_file("squeeze")
    assert name in pretrained.WEIGHTS and "squeeze.pth" in pretrained.WEIGHTS      # registered, like every other network
    assert pretrained.find_weights("squeeze.pth").parent.name == "lpips_models"    # the linear layers torchmetrics ships
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("REENACTBOOK_WEIGHTS", str(tmp_path / "weights"))
    (tmp_path / "weights").mkdir()
    torch.manual_seed(0)
    path = tmp_path / "weights" / name            # a stand-in backbone (random weights) registered under its own hash
    torch.save(torchvision.models.squeezenet1_1(weights=None).state_dict(), path)
    with pytest.raises(CorruptWeightsError, match=f"{name}.*damaged or another version"):
        image_metrics.load_lpips("squeeze")             # the real file's hash prefix: refused
    monkeypatch.setitem(pretrained.WEIGHTS, name, dataclasses.replace(pretrained.WEIGHTS[name], sha256=sha256_file(path)))
    network = image_metrics.load_lpips("squeeze")
    assert network.weights_info[name]["path"] == str(path) and not (tmp_path / "torch" / "hub").exists()
    x, y = images(2, size=64), images(2, size=64, seed=1)
    assert torch.allclose(image_metrics.lpips(x, x, network), torch.zeros(2), atol=1e-6)
    ours = image_metrics.lpips(x, y, network)
    assert (ours > 0).all() and ours.dtype == torch.float32
    # the same numbers as torchmetrics' functional API reading the same backbone from its hub cache
    (tmp_path / "torch" / "hub" / "checkpoints").mkdir(parents=True)
    (tmp_path / "torch" / "hub" / "checkpoints" / name).symlink_to(path)
    theirs = learned_perceptual_image_patch_similarity(x, y, net_type="squeeze", reduction="none", normalize=True)
    torch.testing.assert_close(ours, theirs.reshape(2), atol=1e-6, rtol=1e-5)


def test_lpips_says_what_is_missing_and_where(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("REENACTBOOK_WEIGHTS", str(tmp_path / "weights"))
    image_metrics.default_network.cache_clear()
    with pytest.raises(WeightsError, match=rf"lpips cannot be computed.*alexnet-owt-7be5be79.pth.*Put it in {tmp_path / 'torch'}"):
        MetricSuite(["ssim", "lpips"], device="cpu", skip_unavailable=False)   # what `reenactbook eval` uses
    suite = MetricSuite(["ssim", "lpips"], device="cpu")   # in a notebook: reported as unavailable, with the reason
    assert "alexnet-owt-7be5be79.pth" in suite.unavailable["lpips"]
    out = suite.update(images(2), images(2)).compute()
    assert out["lpips"] is None and out["ssim"] is not None


# ---------------------------------------------------------------- the real pretrained networks
@pytest.fixture(scope="module")
def faces(shared_weights):
    "Two 256x256 face-like test images (the synthetic faces when available, else smooth deterministic images)."
    try:
        from reenactbook.synthetic import tiny_dataset
        data = tiny_dataset(size=64)
        return torch.stack([torch.from_numpy(np.array(data.image(i))).permute(2, 0, 1) for i in (0, 1)]).float() / 255
    except (ImportError, AttributeError):
        return F.interpolate(images(2, size=16), size=64, mode="bilinear", align_corners=False)


def test_real_identity_network_gives_csim_one_for_identical_images(faces):
    out = MetricSuite(["csim", "aed"], device="cpu").update(faces, faces).compute()
    assert not out["unavailable"], out["unavailable"]
    assert out["csim"] == pytest.approx(1.0, abs=1e-4) and out["aed"] == pytest.approx(0.0, abs=1e-2)
    assert out["backends"]["csim"] and out["backends"]["csim"] == out["backends"]["aed"]


def test_real_landmark_detector_gives_akd_zero_for_identical_images(faces):
    out = MetricSuite(["akd"], device="cpu").update(faces, faces).compute()
    assert not out["unavailable"], out["unavailable"]
    assert out["akd"] == pytest.approx(0.0, abs=1e-3) and out["backends"]["akd"]


def test_real_fid_features_are_pool3_with_named_weights(faces):
    suite = MetricSuite(["fid"], device="cpu").update(faces, faces.flip(-1))
    assert not suite.unavailable, suite.unavailable
    mean, cov = suite.fid_stats["generated"].mean_cov()
    assert mean.shape == (2048,) and cov.shape == (2048, 2048) and (mean >= 0).all()   # pool3 follows a ReLU
    info = suite.networks["fid"].weights_info
    assert len(info["sha256"]) == 64 and info["file"]


# ---------------------------------------------------------------- videos (issue 15: eval could not read what reenact writes)
def write_video(path, frames, fps=25):
    "uint8 frames [N,H,W,3] as an mp4 (mpeg4, high quality) with PyAV."
    import av
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.height, stream.width, stream.pix_fmt = frames.shape[1], frames.shape[2], "yuv420p"
        stream.options = {"qscale": "1"}
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        container.mux(stream.encode())
    return path


def video_frames_u8(n, size=48, seed=0):
    x = F.interpolate(images(n, size=8, seed=seed), size=size, mode="bilinear", align_corners=False)
    return (x.permute(0, 2, 3, 1) * 255).round().byte().numpy()


def test_eval_takes_two_videos_frame_by_frame(tmp_path, capsys):
    from reenactbook.cli import main
    driving = write_video(tmp_path / "driving.mp4", video_frames_u8(7))
    generated = write_video(tmp_path / "out.mp4", video_frames_u8(7, seed=3))
    code = main(["eval", str(driving), str(driving), "--metrics", "ssim,psnr", "--batch_size", "3", "--out", str(tmp_path / "same"),
                 "--overrides", "run.device=cpu"])
    assert code == 0 and "| ssim | psnr |" in capsys.readouterr().out
    same = json.loads((tmp_path / "same" / "results.json").read_text())
    assert same["num_images"] == 7 and same["ssim"] == pytest.approx(1.0) and same["psnr"] == pytest.approx(image_metrics.PSNR_CEILING)
    assert same["psnr_capped"] == 7 and same["videos"]["reference"] == str(driving)
    assert (tmp_path / "same" / "per_image.csv").read_text().splitlines()[1].startswith("000000,")
    different = metrics.evaluate_videos(generated, driving, batch_size=4, metrics=["ssim", "psnr"], device="cpu")
    assert different["num_images"] == 7 and different["ssim"] < 0.9 and different["psnr_capped"] == 0


def test_eval_videos_of_different_lengths_or_sizes(tmp_path, capsys):
    from reenactbook.cli import main
    driving = write_video(tmp_path / "driving.mp4", video_frames_u8(7))
    short = write_video(tmp_path / "short.mp4", video_frames_u8(5))
    assert main(["eval", str(short), str(driving), "--metrics", "ssim", "--overrides", "run.device=cpu"]) == 2
    error = capsys.readouterr().err
    assert "short.mp4 has 5 frames and" in error and "has 7" in error and "same length" in error
    with pytest.raises(InputError, match="same length"):   # a container that does not say: found while streaming
        list(metrics.video_batches(short, driving, batch_size=2, source=None))
    assert main(["eval", str(driving), str(tmp_path), "--metrics", "ssim"]) == 2
    assert "two folders or two videos" in capsys.readouterr().err
    large = write_video(tmp_path / "large.mp4", video_frames_u8(7, size=96))
    out = metrics.evaluate_videos(driving, large, metrics=["ssim"], device="cpu")
    assert out["image_size"] == [48, 48] and out["videos"]["reference_resized_from"] == [96, 96] and out["ssim"] > 0.8
    photo = save_pngs(tmp_path / "photo", images(1, size=64))
    with_source = metrics.evaluate_videos(driving, driving, tmp_path / "photo" / "000.png", metrics=["csim"], device="cpu",
                                          identity_embedder=ColourEmbedder())
    assert with_source["csim"] == pytest.approx(1.0, abs=1e-5) and with_source["csim_source"] < 0.99


# ---------------------------------------------------------------- dtype contract (issue 12): bf16 / fp16 images
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_metrics_take_low_precision_images(dtype):
    gen, ref = images(4, size=32).to(dtype), noisy(images(4, size=32), 0.05).to(dtype)
    suite = lambda g, r: MetricSuite(PIXEL_AND_STAND_IN, device="cpu", **STAND_INS).update(g, r).compute()
    low, full = suite(gen, ref), suite(gen.float(), ref.float())
    for metric in PIXEL_AND_STAND_IN:
        assert low[metric] == pytest.approx(full[metric], rel=1e-5, abs=1e-6), metric
    for fn in (ssim, psnr):
        assert fn(gen, ref).dtype == torch.float32


def test_fast_frechet_distance_equals_pytorch_fid_also_with_fewer_images_than_dimensions():
    from pytorch_fid.fid_score import calculate_frechet_distance
    generator = torch.Generator().manual_seed(0)
    for count, dim in ((200, 16), (40, 96)):       # the second: rank-deficient covariances, as FID on few images
        a = torch.randn(count, dim, generator=generator).abs()
        b = torch.randn(count, dim, generator=generator).abs() * 1.3 + 0.1
        ours = frechet_distance(FeatureStatistics().update(a), FeatureStatistics().update(b))
        fa, fb = a.double().numpy(), b.double().numpy()
        theirs = calculate_frechet_distance(fa.mean(0), np.cov(fa, rowvar=False), fb.mean(0), np.cov(fb, rowvar=False))
        assert ours == pytest.approx(theirs, rel=1e-6, abs=1e-6), (count, dim)
