"""Few-shot identity fine-tuning (reenactbook.finetune): augmentation geometry, the loop, the saved model and its card, the CLI."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from reenactbook.core import CheckpointError, ConfigError, InputError
from reenactbook.config import load_options
from reenactbook.finetune import (FinetuneConfig, PersonPhotos, augment, finetune, finetune_cli, identity_similarity,
                                  jitter_colors, load_for_finetuning, random_similarity, save_finetuned)
from reenactbook.landmarks import LAYOUTS
from reenactbook.reenactor import Reenactor
from reenactbook.views import _example_dataset

TINY = {"reenactor.ngf": 4, "reenactor.ndf": 4, "reenactor.n_blocks": 1, "reenactor.image_size": 32,
        "losses.terms": ["adversarial", "feature_matching"], "run.device": "cpu"}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return _example_dataset(tmp_path_factory.mktemp("finetune") / "ds", identities=2, videos=1, frames=6, size=32)


@pytest.fixture()
def base(tmp_path):
    options = load_options("tiny", TINY)
    return Reenactor(options.reenactor).save(tmp_path / "base.safetensors", {"kind": "reenactor", "options": options.to_dict(), "step": 1})


def test_augmentation_moves_landmarks_with_the_image():
    size = 64
    rng = np.random.default_rng(1)
    points = torch.tensor(rng.uniform(18, 46, (1, 68, 2)), dtype=torch.float32)
    config = FinetuneConfig(max_rotation=10, max_scale=0.1, max_shift=0.05)
    for k in (0, 8, 30, 48):  # a marked pixel under landmark k stays under it (under its mirrored name after a flip)
        image = torch.zeros(1, 3, size, size)
        x, y = points[0, k].round().long()
        image[0, :, y - 1:y + 2, x - 1:x + 2] = 1.0
        photos = PersonPhotos(image, points, points.clone())
        for seed in range(6):
            out = augment(photos, torch.tensor([0]), config, torch.Generator().manual_seed(seed))
            flipped = random_similarity(1, config, torch.Generator().manual_seed(seed))[1].item()
            name = LAYOUTS["68"].mirror[k] if flipped else k
            px, py = out["landmarks"][0, name].round().long().tolist()
            assert out["images"][0, 0, py, px] > 0.3, (k, seed, flipped)


def test_no_augmentation_is_the_identity_and_jitter_stays_in_range():
    images = torch.rand(2, 3, 16, 16)
    points = torch.rand(2, 68, 2) * 15
    photos = PersonPhotos(images, points, points.clone())
    still = FinetuneConfig(flip=False, max_rotation=0, max_scale=0, max_shift=0, color_jitter=0)
    out = augment(photos, torch.tensor([1, 0]), still, torch.Generator().manual_seed(0))
    torch.testing.assert_close(out["images"], images[[1, 0]], atol=1e-5, rtol=0)
    torch.testing.assert_close(out["landmarks"], points[[1, 0]], atol=1e-4, rtol=0)
    jittered = jitter_colors(images, 0.5, torch.Generator().manual_seed(0))
    assert 0 <= jittered.min() and jittered.max() <= 1 and not torch.equal(jittered, images)


def test_finetune_adapts_g_and_saves_a_reenactor_with_a_card(dataset, base, tmp_path):
    model, options, path = load_for_finetuning(base, "cpu")
    photos = PersonPhotos.from_dataset(dataset, dataset.rows(identities=["id01"])[:2], 32)
    before = [p.detach().clone() for p in model.generator.parameters()]
    result = finetune(model, options, photos, config=FinetuneConfig(steps=3, batch_size=2), show_progress=False)
    assert result["steps"] == 3 and result["loss_terms"] == ["adversarial", "feature_matching"]
    assert all(np.isfinite(v) for v in result["losses"].values())
    assert any(not torch.equal(a, b) for a, b in zip(before, model.generator.parameters()))
    out = save_finetuned(model, options, tmp_path / "models" / "ft.safetensors", name="tiny-ft-id01", base=path, photos=photos, result=result,
                         metrics={"identity_after": 0.6})
    reloaded = Reenactor.from_checkpoint(out, discriminator=False)
    torch.testing.assert_close(reloaded.generator.state_dict(), model.generator.state_dict())
    card = json.loads((tmp_path / "models" / "ft.card.json").read_text())
    assert card["name"] == "tiny-ft-id01" and card["kind"] == "reenactor" and card["steps"] == 3 and card["metrics"] == {"identity_after": 0.6}
    model2, _, _ = load_for_finetuning(out, "cpu")   # a fine-tuned model can be fine-tuned again
    assert model2.discriminator is not None


def test_identity_similarity_scores_generated_faces_against_the_source(base):
    model, _, _ = load_for_finetuning(base, "cpu")
    embed = lambda images, points=None: images.flatten(1)   # a stand-in identity network: the pixels
    source = torch.rand(1, 3, 32, 32)
    value = identity_similarity(model, source, torch.rand(3, 3, 32, 32), embed)
    assert -1 <= value <= 1
    model.generator.forward = lambda x: x[:, :3]                # a G that copies its source scores 1
    assert identity_similarity(model, source, torch.rand(2, 3, 32, 32), embed) == pytest.approx(1.0, abs=1e-5)
    model.generator.forward = lambda x: 1 - x[:, :3]            # ... and its negative image less
    assert identity_similarity(model, source, torch.rand(2, 3, 32, 32), embed) < 0.9


def test_bad_inputs_are_named(base, dataset, tmp_path):
    model, options, _ = load_for_finetuning(base, "cpu")
    photos = PersonPhotos.from_dataset(dataset, dataset.rows(identities=["id01"])[:1], 16)
    with pytest.raises(InputError, match="16 px but the reenactor works at 32 px"):
        finetune(model, options, photos, config=FinetuneConfig(steps=1, batch_size=1), show_progress=False)
    with pytest.raises(ConfigError, match="finetune.steps"):
        FinetuneConfig(steps=0)
    with pytest.raises(InputError, match="PersonPhotos"):
        PersonPhotos(torch.rand(2, 3, 8, 8), torch.rand(1, 68, 2), torch.rand(2, 68, 2))
    from reenactbook.checkpoints import save_checkpoint
    lsg = save_checkpoint(tmp_path / "lsg.safetensors", {"generator": {"w": torch.zeros(1)}}, {"kind": "lsg"})
    with pytest.raises(CheckpointError, match="LSG checkpoint, not a reenactor"):
        load_for_finetuning(lsg, "cpu")
    bare = save_checkpoint(tmp_path / "bare.safetensors", Reenactor(options.reenactor).state(), {"reenactor": options.reenactor.to_dict()})
    with pytest.raises(CheckpointError, match="stores no run options"):
        load_for_finetuning(bare, "cpu")


def test_finetune_cli_on_a_real_photo(samples_root, base, tmp_path, monkeypatch):
    "The command on a real landmarked photo: face found, aligned, fine-tuned, written under models/ with a card."
    photos = sorted(p for p in (samples_root / "landmarked").rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    assert photos, f"no photos under {samples_root / 'landmarked'}"
    monkeypatch.chdir(tmp_path)
    path = finetune_cli(str(base), [str(photos[0])], steps=2, device="cpu")
    assert path.parent == Path("models") and path.name.startswith("base-ft-")
    assert path.exists() and path.with_suffix(".card.json").exists()
    card = json.loads(path.with_suffix(".card.json").read_text())
    assert card["steps"] == 2 and card["data"]["photos"] == 1
