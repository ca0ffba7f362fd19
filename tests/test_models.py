"""reenactbook.models: the model registry (where trained models are found, their cards, the best available one) and the one
model loader. Every test builds tiny models in tmp_path and points the registry there (REENACTBOOK_MODELS, the cache, cwd)."""
import json
import time

import pytest
import torch

from reenactbook.core import CheckpointMismatchError, ConfigError, InputError
from reenactbook.config import load_options
from reenactbook.checkpoints import save_checkpoint
from reenactbook.lsg import LandmarkSequenceGenerator
from reenactbook.models import (best_model, card_paths, find_models, load_lsg, load_reenactor, model_dirs, models_cli,
                                read_model, resolve_model, write_model_card)
from reenactbook.reenactor import Reenactor, ReenactorConfig


def reenactor(size=32):
    torch.manual_seed(0)
    return Reenactor(ReenactorConfig(image_size=size, ngf=4, n_blocks=1), discriminator=False)


def save_reenactor(path, profile="tiny", size=32, step=10, **changes):
    "A reenactor checkpoint as the training loop exports it (run options in the meta)."
    options = load_options(profile, changes or None).to_dict()
    return reenactor(size).save(path, {"step": step, "options": options})


def save_lsg(path, profile="tiny", step=5):
    "An LSG checkpoint as the LSG trainer writes it (generator weights; meta kind 'lsg' with the options)."
    model = LandmarkSequenceGenerator(68, hidden=8)
    options = load_options(profile, {"lsg.hidden": 8}).to_dict()
    return save_checkpoint(path, {"generator": model.net.state_dict()},
                           {"kind": "lsg", "step": step, "num_points": 68, "k": 8, "options": options})


@pytest.fixture()
def registry(tmp_path, cache, monkeypatch):
    "An empty registry: a private cache, cwd in tmp_path, REENACTBOOK_MODELS -> tmp_path/extra."
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("REENACTBOOK_MODELS", str(tmp_path / "extra"))
    return tmp_path


def test_every_place_a_model_can_be_is_searched(registry, cache):
    save_reenactor(registry / "extra" / "mine.safetensors")
    save_reenactor(cache / "models" / "reenactor-tiny-full-0123456789ab" / "reenactor.safetensors")   # the experiment suite's cache
    save_lsg(cache / "models" / "lsg-tiny-ba9876543210" / "lsg.safetensors")                          # lsg.pretrained_lsg's cache
    save_reenactor(registry / "runs" / "reenactor-tiny" / "reenactor.safetensors")                      # `reenactbook train`
    save_reenactor(registry / "runs" / "reenactor-tiny" / "checkpoints" / "step-00000010.safetensors")  # training state: not listed
    save_reenactor(registry / "results" / "sample" / "models" / "sample-reenactor-full.safetensors", "sample")
    save_checkpoint(registry / "models" / "other.safetensors", {"w": torch.zeros(2)}, {"kind": "prep-cache"})  # another kind
    (registry / "models" / "junk.safetensors").write_bytes(b"not a checkpoint")
    names = [e.name for e in find_models()]
    assert names == ["mine", "reenactor-tiny", "sample-reenactor-full", "lsg-tiny-ba9876543210", "reenactor-tiny-full-0123456789ab"]
    assert [e.name for e in find_models("lsg")] == ["lsg-tiny-ba9876543210"]
    assert model_dirs()[0] == registry / "extra"


def test_card_is_written_checked_and_read(registry):
    path = save_reenactor(registry / "extra" / "x.safetensors", step=70)
    written = write_model_card(path, {"name": "tiny-full", "seconds": 12.5, "device": "cpu", "data": {"root": "synthetic", "identities": 16},
                                      "protocol": "48 held-out pairs", "metrics": {"ssim": 0.61, "csim": 0.42}})
    assert written == card_paths(path)[0] and card_paths(path)[1].read_text().startswith("# tiny-full")
    card = json.loads(written.read_text())
    assert card["kind"] == "reenactor" and card["image_size"] == 32 and card["steps"] == 70 and card["checkpoint"] == "x.safetensors"
    entry = read_model(path)
    assert entry.has_card and entry.name == "tiny-full" and entry.card["metrics"]["ssim"] == 0.61
    assert resolve_model("tiny-full").checkpoint == path
    with pytest.raises(CheckpointMismatchError, match="is a reenactor checkpoint, not an LSG"):
        write_model_card(path, {"name": "wrong", "kind": "lsg"})
    with pytest.raises(ConfigError, match="metrics must map names to numbers"):
        write_model_card(path, {"name": "bad", "metrics": {"ssim": "high"}})
    with pytest.raises(ConfigError, match="name"):
        write_model_card(path, {"name": "has spaces"})


def test_a_broken_card_falls_back_to_the_checkpoint(registry):
    path = save_reenactor(registry / "extra" / "x.safetensors")
    card_paths(path)[0].write_text("{ not json")
    entry = read_model(path)
    assert not entry.has_card and entry.name == "x" and entry.kind == "reenactor"


def test_best_available_prefers_profile_then_size_then_the_full_method_then_the_newest(registry):
    folder = registry / "extra"
    save_reenactor(folder / "tiny-64.safetensors", "tiny", size=64)
    assert resolve_model().name == "tiny-64"
    save_reenactor(folder / "sample-32.safetensors", "sample", size=32)
    assert resolve_model().name == "sample-32"                             # profile before size
    save_reenactor(folder / "sample-64-vanilla.safetensors", "sample", size=64, **{"losses.preset": "vanilla"})
    assert resolve_model().name == "sample-64-vanilla"                     # then the larger size
    save_reenactor(folder / "sample-64-full.safetensors", "sample", size=64)
    assert resolve_model().name == "sample-64-full"                        # then the paper's full method over an ablation
    time.sleep(1.1)
    save_reenactor(folder / "sample-64-newer.safetensors", "sample", size=64)
    assert resolve_model().name == "sample-64-newer"                       # then the newest
    entries = find_models("reenactor")
    assert best_model(entries).name == "sample-64-newer"


def test_a_model_of_the_wrong_kind_is_named_as_such(registry):
    lsg = save_lsg(registry / "extra" / "my-lsg.safetensors")
    net = save_reenactor(registry / "extra" / "my-reenactor.safetensors")
    for spec in ("my-lsg", str(lsg)):
        with pytest.raises(CheckpointMismatchError, match="my-lsg.safetensors is an LSG checkpoint, not a reenactor"):
            load_reenactor(spec)
    with pytest.raises(CheckpointMismatchError, match="is a reenactor checkpoint, not an LSG"):
        load_lsg(str(net))
    with pytest.raises(InputError, match="where a reenactor is needed"):
        load_reenactor(LandmarkSequenceGenerator(68, hidden=8))
    with pytest.raises(InputError, match="no model named 'nope'.*reenactbook models"):
        load_reenactor("nope")
    with pytest.raises(InputError, match="no such checkpoint file"):
        load_reenactor(str(registry / "missing.safetensors"))


def test_no_model_at_all_says_how_to_get_one(registry):
    with pytest.raises(ConfigError, match="no trained reenactor found.*make reproduce"):
        resolve_model()


def test_the_one_loader_takes_names_paths_folders_and_objects(registry):
    path = save_reenactor(registry / "runs" / "reenactor-tiny" / "reenactor.safetensors")
    save_lsg(registry / "extra" / "the-lsg.safetensors")
    by_name, by_path, by_folder = load_reenactor("reenactor-tiny"), load_reenactor(str(path)), load_reenactor(str(path.parent))
    for model in (by_name, by_path, by_folder):
        assert isinstance(model, Reenactor) and not model.training and model.card["name"] == "reenactor-tiny" and model.source == path
        assert model.meta["options"]["run"]["profile"] == "tiny"
    saved = reenactor().generator.state_dict()
    assert all(torch.equal(v, saved[k]) for k, v in by_name.generator.state_dict().items())
    given = reenactor()
    assert load_reenactor(given) is given
    lsg = load_lsg()
    assert isinstance(lsg, LandmarkSequenceGenerator) and lsg.card["name"] == "the-lsg"


def test_a_training_checkpoint_loads_its_ema_generator(registry):
    from torch.optim.swa_utils import AveragedModel
    model = reenactor()
    ema = AveragedModel(model.generator)
    with torch.no_grad():
        for p in ema.module.parameters():
            p.add_(1.0)
    options = load_options("tiny").to_dict()
    path = save_checkpoint(registry / "step.safetensors", {"generator": model.generator.state_dict(), "ema": ema.state_dict()},
                           {"kind": "reenactor-training", "step": 3, "options": {**options, "reenactor": model.config.to_dict()}})
    loaded = load_reenactor(str(path))
    first = lambda m: next(iter(m.state_dict().values()))
    assert torch.equal(first(loaded.generator), first(ema.module))


def test_models_command_lists_kind_profile_size_steps_data_and_metrics(registry, capsys):
    path = save_reenactor(registry / "extra" / "x.safetensors", step=70)
    write_model_card(path, {"name": "tiny-full", "data": {"root": "synthetic"}, "metrics": {"ssim": 0.61}})
    save_lsg(registry / "extra" / "the-lsg.safetensors")
    models_cli()
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("| tiny-full"))
    for text in ("reenactor", "tiny", "32 px", "70", "synthetic", "ssim 0.61"):
        assert text in row
    assert "default reenactor: tiny-full" in out and "default lsg: the-lsg" in out
    models_cli(kind="lsg", as_json=True)
    assert [m["name"] for m in json.loads(capsys.readouterr().out)] == ["the-lsg"]
