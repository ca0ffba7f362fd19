"""Stand-ins with the interfaces of reenactbook.pretrained, shared by the loss, training and fine-tuning tests.

A plain module, not `conftest.py`: test files import it by name (`from stand_ins import ...`), and `tests/e2e/` has a
conftest of its own, so `from conftest import ...` would find whichever conftest pytest put on the path first."""
# ---------------------------------------------------------------- stand-ins with the interfaces of reenactbook.pretrained
# Small networks shared by the loss, training and fine-tuning tests (`from stand_ins import stand_ins`). None of them
# syncs with the device or builds a tensor from Python data in a forward pass: test_train counts both in a training step.
import torch
import torch.nn.functional as F
from torch import nn


class StandInFeatures(nn.Module):
    "A perceptual feature pyramid: strided convolutions with ReLU, one feature map per layer."
    backend = "stand-in"

    def __init__(self, channels=(8, 16, 16)):
        super().__init__()
        widths = (3, *channels)
        self.layers = nn.ModuleList([nn.Conv2d(a, b, 3, 2, 1) for a, b in zip(widths, widths[1:])])

    def forward(self, x):
        features = []
        for layer in self.layers:
            x = torch.relu(layer(x))
            features.append(x)
        return features


class StandInEmbedder(nn.Module):
    "An identity embedder: unit vectors; remembers the landmarks it was given (for the crop tests)."
    backend = "stand-in"

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 16, 5, 4, 2), nn.Tanh(), nn.Conv2d(16, 16, 3, 2, 1),
                                 nn.AdaptiveAvgPool2d(4), nn.Flatten())

    def forward(self, x, landmarks=None):
        self.last_landmarks = landmarks
        return F.normalize(self.net(x), dim=-1)


class StandInLandmarks(nn.Module):
    "Brightness centroid in a Gaussian window around each template point: moves with the image content."
    backend, differentiable = "stand-in", True

    def __init__(self, template, width=0.08):
        super().__init__()
        self.register_buffer("template", template.float())
        self.width = width

    def landmarks_aligned(self, images):
        h, w = images.shape[-2:]
        ys, xs = torch.meshgrid(torch.arange(h, dtype=images.dtype), torch.arange(w, dtype=images.dtype), indexing="ij")
        centres = self.template * images.new_tensor([w, h])
        window = torch.exp(-((xs - centres[:, :1, None]) ** 2 + (ys - centres[:, 1:, None]) ** 2) / (2 * (self.width * w) ** 2))
        weight = images.mean(1, keepdim=True) * window + 1e-6 * window
        weight = weight / weight.sum((-2, -1), keepdim=True)
        return torch.stack([(weight * xs).sum((-2, -1)), (weight * ys).sum((-2, -1))], -1)


class StandInLandmarkHead(nn.Module):
    "A linear landmark regressor (3-channel images at any size -> 68 points near the centre): cheap and free of host syncs."
    backend, differentiable = "stand-in", True

    def __init__(self):
        super().__init__()
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(48, 136))

    def landmarks_aligned(self, images):
        return self.head(images).view(-1, 68, 2) + images.shape[-1] / 2


class CountingMasker:
    "The central half of the image (stands in for the landmark-polygon masker); counts its calls."
    backend = "stand-in"

    def __init__(self):
        self.calls = 0

    def __call__(self, images, landmarks=None):
        self.calls += 1
        mask = torch.zeros_like(images[:, :1])
        h, w = images.shape[-2:]
        mask[..., h // 4: 3 * h // 4, w // 4: 3 * w // 4].fill_(1)  # (`= 1` would build a tensor from a Python number at every call)
        return mask


def template():
    "68 landmark positions in [0.25, 0.75] (fractions of the image side), the same at every call."
    g = torch.Generator().manual_seed(1)
    return torch.rand(68, 2, generator=g) * 0.5 + 0.25


def stand_ins(**changes):
    "Stand-ins for every pretrained network `losses.ReenactorLoss` takes (seeded), with `changes` replacing some."
    torch.manual_seed(0)
    nets = dict(identity_embedder=StandInEmbedder(), perceptual_features=StandInFeatures(),
                landmark_detector=StandInLandmarks(template()), face_masker=CountingMasker())
    return {**nets, **changes}


def training_stand_ins():
    "Cheaper stand-ins for training steps (a two-layer feature pyramid, a linear landmark head)."
    return {"perceptual_features": StandInFeatures((4, 4)), "identity_embedder": StandInEmbedder(),
            "landmark_detector": StandInLandmarkHead(), "face_masker": CountingMasker()}
