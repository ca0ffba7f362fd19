"""Training views: reenactor pairs, the pose curriculum and LSG landmark windows (reenactbook.views)."""
import numpy as np
import pytest
import torch

from reenactbook.core import ConfigError, DataError
from reenactbook.config import load_options
from reenactbook.views import LandmarkWindows, PoseCurriculum, ReenactorPairs, _example_dataset, add_sketches, hull_mask


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return _example_dataset(tmp_path_factory.mktemp("views") / "ds", identities=5, videos=2, frames=12)


def test_pairs_same_video_distinct_frames_and_counts(dataset):
    pairs = ReenactorPairs(dataset, "train", pairs_per_identity=10, seed=3, render_sketch_in_loader=False)
    assert len(pairs) == 4 * 10
    index = dataset.index
    for source, target in pairs.pairs:
        assert source != target
        assert index["identity"].iat[source] == index["identity"].iat[target]
        assert index["video"].iat[source] == index["video"].iat[target]
        assert index["split"].iat[source] == "train"
    labels = [pairs[i]["identity"].item() for i in range(len(pairs))]
    assert np.bincount(labels).tolist() == [10, 10, 10, 10]


def test_pairs_item_contents(dataset):
    pairs = ReenactorPairs(dataset, "train", pairs_per_identity=2, image_size=32, render_sketch_in_loader=False, hull_mask=True)
    item = pairs[1]
    assert item["source"].shape == item["target"].shape == (3, 32, 32)
    assert item["source"].dtype == torch.float32 and 0 <= item["source"].min() and item["source"].max() <= 1
    assert item["target_landmarks"].shape == item["source_landmarks"].shape == (68, 2)
    row = item["target_row"].item()
    np.testing.assert_allclose(item["target_landmarks"].numpy(), dataset.landmarks("68")[row] * 0.5, rtol=1e-6)
    assert item["target_mask"].shape == (1, 32, 32) and set(item["target_mask"].unique().tolist()) <= {0.0, 1.0}
    assert item["target_mask"].sum() > 0


def test_pairs_deterministic_per_seed_and_epoch(dataset):
    a = ReenactorPairs(dataset, "train", seed=5, render_sketch_in_loader=False)
    b = ReenactorPairs(dataset, "train", seed=5, render_sketch_in_loader=False)
    a.set_epoch(3); b.set_epoch(2); b.set_epoch(3)
    np.testing.assert_array_equal(a.pairs, b.pairs)
    c = ReenactorPairs(dataset, "train", seed=6, render_sketch_in_loader=False)
    c.set_epoch(3)
    assert not np.array_equal(a.pairs, c.pairs)
    a.set_epoch(4)
    assert not np.array_equal(a.pairs, b.pairs)


def test_pairs_bad_config(dataset):
    with pytest.raises(ConfigError, match="pairs_per_identity"):
        ReenactorPairs(dataset, pairs_per_identity=0)
    with pytest.raises(DataError, match="no 98-point landmarks"):
        ReenactorPairs(dataset, sketch_layout="98")
    with pytest.raises(DataError, match="no frames in split"):
        ReenactorPairs(dataset, split="validation")


def test_curriculum_admits_large_pose_identities_gradually(dataset):
    curriculum = PoseCurriculum(dataset, "train", start_quantile=0.25, quantile_step=0.25, every=3)
    counts = [len(curriculum.identities(e)) for e in range(0, 12, 3)]
    assert counts == sorted(counts) and counts[0] < counts[-1] == 4
    # identity idNN moves 10*NN degrees: the calmest come first
    assert curriculum.identities(0) == ["id00"]
    assert curriculum.identities(3) == ["id00", "id01"]
    assert curriculum.stage(2) == 0 and curriculum.stage(3) == 1
    state = curriculum.log(3)
    assert state["identities"] == len(curriculum.identities(3)) and state["yaw_threshold"] >= 0
    off = PoseCurriculum(dataset, "train", enabled=False)
    assert off.identities(0) == ["id00", "id01", "id02", "id03"]


def test_curriculum_from_options_and_pairs(dataset):
    options = load_options("tiny", {"views.curriculum_start_quantile": 0.0, "views.curriculum_every": 1, "views.pairs_per_identity": 3})
    pairs = ReenactorPairs.from_options(dataset, options)
    assert len(pairs) == 3  # stage 0 with quantile 0: only the calmest identity
    pairs.set_epoch(10)
    assert len(pairs) == 12
    with pytest.raises(ConfigError, match="start_quantile"):
        PoseCurriculum(dataset, start_quantile=-0.1)


def test_windows_are_consecutive_frames_of_one_clip(dataset):
    windows = LandmarkWindows(dataset, k=8, stride=1, split="train")
    assert len(windows) == 4 * 2 * 5
    index = dataset.index
    for rows in windows.rows:
        assert index.iloc[rows][["identity", "video", "clip"]].nunique().max() == 1
        assert np.all(np.diff(index["frame"].to_numpy()[rows]) == 1)
    x, y = windows.tensors()
    assert x.shape == (40, 8, 68, 2) and x.dtype == torch.float32 and y.dtype == torch.int64
    item = windows[7]
    torch.testing.assert_close(item["landmarks"], x[7])
    assert item["identity"].item() == y[7].item()
    assert windows.identities == ["id00", "id01", "id02", "id03"]


def test_windows_stride_hop_and_gaps(tmp_path):
    from reenactbook.dataset import DatasetWriter
    writer = DatasetWriter(tmp_path / "gaps", image_size=16, source="test")
    with writer.shard("a") as shard:
        for t in [0, 1, 2, 3, 5, 6, 7, 8, 9, 10]:  # frame 4 was dropped by preprocessing
            shard.add(np.zeros((16, 16, 3), np.uint8), {"identity": "a", "video": "v", "clip": "c", "frame": t},
                      {"68": np.full((68, 2), float(t))})
    data = writer.finalize()
    windows = LandmarkWindows(data, k=3, stride=1)
    starts = data.index["frame"].to_numpy()[windows.rows[:, 0]].tolist()
    assert starts == [0, 1, 5, 6, 7, 8]  # no window crosses the gap
    windows2 = LandmarkWindows(data, k=3, stride=2)
    assert data.index["frame"].to_numpy()[windows2.rows].tolist() == [[1, 3, 5], [3, 5, 7], [5, 7, 9], [6, 8, 10]]
    assert len(LandmarkWindows(data, k=3, stride=1, hop=2)) == 3
    with pytest.raises(DataError, match="no window of 20 frames"):
        LandmarkWindows(data, k=20)
    with pytest.raises(ConfigError, match="k >= 2"):
        LandmarkWindows(data, k=1)


def test_hull_mask_covers_the_face():
    points = np.array([[10, 10], [50, 10], [50, 50], [10, 50], [30, 30]], np.float32)
    mask = hull_mask(points, 64)
    assert mask.shape == (1, 64, 64)
    assert mask[0, 30, 30] == 1 and mask[0, 5, 5] == 0
    assert abs(mask.sum().item() - 41 * 41) < 100


def test_sketches_in_loader_and_in_step_agree(dataset):
    pytest.importorskip("reenactbook.landmarks")
    in_loader = ReenactorPairs(dataset, "train", pairs_per_identity=2, seed=1, render_sketch_in_loader=True)
    in_step = ReenactorPairs(dataset, "train", pairs_per_identity=2, seed=1, render_sketch_in_loader=False)
    batch = torch.utils.data.default_collate([in_step[i] for i in range(4)])
    add_sketches(batch)
    expected = torch.stack([in_loader[i]["target_sketch"] for i in range(4)])
    assert batch["target_sketch"].shape == (4, 3, 64, 64)
    torch.testing.assert_close(batch["target_sketch"], expected)
    assert expected.max() > 0


# -- self-reenactment on unseen time: the time split

def test_time_split_holds_out_the_end_of_every_training_clip_after_a_gap(dataset):
    from reenactbook.views import TIME_GAP, UNSEEN_TIME, split_in_time
    timed = split_in_time(dataset, holdout=0.25, gap_seconds=2 / 25, fps=25)
    for (identity, video, clip), group in timed.index.groupby(["identity", "video", "clip"]):
        splits = group.sort_values("frame")["split"].tolist()
        if dataset.index.loc[group.index, "split"].iloc[0] == "test":
            assert set(splits) == {"test"}                            # held-out identities keep their split
            continue
        assert splits == ["train"] * 7 + [TIME_GAP] * 2 + [UNSEEN_TIME] * 3, (identity, video, splits)
    assert timed.meta["time_split"]["frames"] == {"train": 4 * 2 * 7, TIME_GAP: 4 * 2 * 2, UNSEEN_TIME: 4 * 2 * 3}
    assert not dataset.index["split"].isin([UNSEEN_TIME, TIME_GAP]).any()   # the original is untouched


def test_trainings_never_read_the_held_out_time(dataset):
    from reenactbook.views import split_in_time
    timed = split_in_time(dataset, holdout=0.25, gap_seconds=0.08, fps=25)
    pairs = ReenactorPairs(timed, "train", pairs_per_identity=200, render_sketch_in_loader=False)
    for epoch in range(3):
        pairs.set_epoch(epoch)
        assert set(timed.index["split"].iloc[pairs.pairs.reshape(-1)]) == {"train"}
    windows = LandmarkWindows(timed, k=4, stride=1, split="train")
    assert set(timed.index["split"].iloc[windows.rows.reshape(-1)]) == {"train"}
    last_seen = timed.index[timed.index["split"] == "train"].groupby(["identity", "video"])["frame"].max()
    assert (last_seen == 6).all()


def test_time_split_uses_the_recorded_frame_rate_and_options(dataset):
    import copy
    from reenactbook.views import ViewsConfig, apply_time_split, split_in_time
    recorded = copy.copy(dataset)
    recorded.meta = {**dataset.meta, "prep": {"video_fps": 50.0}}
    timed = split_in_time(recorded, holdout=0.25, gap_seconds=2 / 25, fps=25)  # 0.08 s at 50 fps = 4 frames
    clip = timed.index[(timed.index["identity"] == "id00") & (timed.index["video"] == "v0")].sort_values("frame")
    assert clip["split"].tolist() == ["train"] * 5 + ["time_gap"] * 4 + ["unseen_time"] * 3
    assert apply_time_split(dataset, ViewsConfig()) is dataset              # time_holdout 0: no split
    assert load_options("tiny").views.time_holdout == 0.2 and load_options("sample").views.time_holdout == 0.2
    with pytest.raises(ConfigError, match="time_holdout"):
        ViewsConfig(time_holdout=1.0)


def test_time_split_is_applied_once_and_by_every_training(dataset):
    from reenactbook.train import training_dataset
    from reenactbook.views import UNSEEN_TIME, ViewsConfig, apply_time_split
    views = ViewsConfig(time_holdout=0.25, time_gap_seconds=0.0)
    once = apply_time_split(dataset, views)
    assert apply_time_split(once, views) is once  # a second application would cut the seen part again
    with pytest.raises(ConfigError, match="already split in time"):
        apply_time_split(once, ViewsConfig(time_holdout=0.5, time_gap_seconds=0.0))
    options = load_options("tiny", {"run.data_root": str(dataset.root), "views.time_holdout": 0.25, "views.time_gap_seconds": 0.0})
    trained_on = training_dataset(options)
    assert (trained_on.index["split"] == UNSEEN_TIME).sum() == (once.index["split"] == UNSEEN_TIME).sum() > 0


def test_time_split_keeps_short_clips_whole_and_fails_clearly_when_nothing_is_long_enough(dataset):
    from reenactbook.views import split_in_time
    with pytest.raises(DataError, match="no clip is long enough"):
        split_in_time(dataset, holdout=0.2, gap_seconds=5.0, fps=25)
    with pytest.raises(ConfigError, match="holdout"):
        split_in_time(dataset, holdout=0.0)
