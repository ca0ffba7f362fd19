"""The `sample` tier end to end on the CPU at a tiny size, so it cannot rot: three of the shared clips (read through
REENACTBOOK_SAMPLES) are prepared at 64 px, every model of the tier trains a few steps, the protocol notebooks run, and
the report, the models folder and the model cards come out. The real run (256 px, minutes of training) is a GPU job:
tools/gpu_sample_tier.sh."""
import json
from pathlib import Path

import pytest

from reenactbook.core import ConfigError

CLIPS = ("lp_d18", "lp_d19", "rt_5")   # three short clips; rt_5 is the held-out identity
SMALL = {  # the sample tier at a size two CPU cores run in minutes
    "prep.image_size": 64, "prep.max_frames": 20, "prep.frame_stride": 2, "prep.split": "list",
    "reenactor.image_size": 64, "reenactor.ngf": 8, "reenactor.ndf": 8, "reenactor.n_downsampling": 2, "reenactor.n_blocks": 1,
    "reenactor.num_d": 1, "reenactor.channels_last": False,
    "train.epochs": 1, "train.max_steps": 2, "train.batch_size": 2, "train.compile": False, "train.ema_decay": 0.0,
    "train.tensorboard": False, "train.eval_pairs": 2, "train.sample_pairs": 2, "train.cpu_threads": 1, "run.num_workers": 0,
    "views.pairs_per_identity": 2, "views.time_gap_seconds": 0.2,
    "lsg.steps": 10, "lsg.hidden": 16, "lsg.batch_size": 8, "lsg.checkpoint_every": 10, "lsg.log_every": 5,
    "finetune.steps": 2, "finetune.batch_size": 2,
}


def test_sample_tier_refuses_the_cpu_with_an_estimate():
    from reenactbook.experiments import check_tier_device, reproduce
    with pytest.raises(ConfigError, match=r"GPU job: its 5 reenactor trainings .* hours on this CPU .* --allow_cpu"):
        check_tier_device("sample", "cpu")
    with pytest.raises(ConfigError, match="GPU job"):
        reproduce("sample", data_root="/nonexistent", device="cpu")
    check_tier_device("sample", "cpu", allow_cpu=True)


def test_sample_tier_end_to_end_on_three_shared_clips(samples_root, tmp_path, monkeypatch):
    from reenactbook.experiments import reproduce
    from reenactbook.models import find_models
    clips = tmp_path / "clips"
    clips.mkdir()
    for name in CLIPS:
        (clips / f"{name}.mp4").symlink_to(samples_root / "clips" / f"{name}.mp4")
    (tmp_path / "test_identities.txt").write_text("rt_5\n")
    from reenactbook.core import cache_dir
    weights = cache_dir("weights")                      # converted and fetched weights (face-api, FID) are shared ...
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "weights").symlink_to(weights)
    monkeypatch.setenv("REENACTBOOK_CACHE", str(tmp_path / "cache"))   # ... trained models are not: every run trains
    monkeypatch.setenv("REENACTBOOK_MODELS", str(tmp_path / "results" / "sample" / "models"))
    overrides = {**SMALL, "prep.test_identities": str(tmp_path / "test_identities.txt")}
    report = reproduce("sample", data_root=str(clips), out=str(tmp_path / "results"), device="cpu", allow_cpu=True,
                       overrides=overrides, only=["02", "07", "08"],
                       parameters={"n_pairs": 6, "frames_per_clip": 2, "max_pairs": 12, "bootstrap": 200, "n_eval": 4})
    results = tmp_path / "results" / "sample"
    dataset = json.loads((results / "data" / "dataset.json").read_text())            # the clips were prepared at 64 px
    assert dataset["image_size"] == 64 and dataset["identities"] == 3 and dataset["prep"]["test_identities"] == ["rt_5"]
    text = report.read_text()
    for table in ("identity_network", "table2_one_shot", "self_reenactment", "self_reenactment_ablation_differences", "finetune_identity"):
        assert f"**{table}**" in text, table
    assert "Scale: real footage, few identities" in text and "Identity network (CSIM, AED):" in text
    manifest = json.loads((results / "00_train_tiny" / "models.json").read_text())
    assert set(manifest["reenactors"]) == {"full", "vanilla", "+identity", "+mask", "no_curriculum"}
    split = manifest["reenactors"]["full"]["time_split"]
    assert split["holdout"] == 0.2 and split["frames"]["unseen_time"] > 0          # the held-out time really exists
    names = {m.name for m in find_models()}
    assert {"sample-reenactor-full", "sample-reenactor-vanilla", "sample-reenactor-no_curriculum", "sample-lsg",
            "sample-reenactor-full-ft-rt_5"} <= names, names
    card = json.loads((results / "models" / "sample-reenactor-full.card.json").read_text())
    trained = json.loads((Path(manifest["reenactors"]["full"]["folder"]) / "suite.json").read_text())
    assert card["profile"] == "sample" and card["image_size"] == 64 and card["device"] == "cpu"
    assert card["steps"] == trained["step"] >= 1 and card["seconds"] == pytest.approx(trained["seconds"])
    assert "ssim" in card["metrics"] and card["data"]["identities"] == 3
    import pandas as pd
    table = pd.read_csv(results / "07_self_reenactment" / "self_reenactment.csv").set_index("method")
    assert {"full", "vanilla", "identity copy", "real target"} <= set(table.index)
    assert table.loc["real target", "SSIM ↑"] == pytest.approx(1.0) and table.loc["identity copy", "CSIM to source ↑"] == pytest.approx(1.0, abs=1e-3)
    assert table.loc["full", "SSIM 95% CI"].startswith("[")
