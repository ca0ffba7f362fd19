"""lsg_eval: the identity-gap measurements (Table 1 at the landmark level) and the smoothing comparison."""
import numpy as np
import pytest

from reenactbook import lsg_eval, metrics
from reenactbook.core import DataError
from reenactbook.lsg import linear_interpolation
from reenactbook.bootstrap import bootstrap_interval
from reenactbook.lsg_eval import (dataset_tracks, default_methods, evaluate_sequences, identity_gap,
                                  shape_frechet, smoothing_comparison, synthetic_tracks, track_windows, window_conditions)


@pytest.fixture(scope="module")
def tracks():
    return synthetic_tracks(6, frames=30)


@pytest.fixture(scope="module")
def example_dataset(tmp_path_factory):
    from reenactbook.views import _example_dataset
    return _example_dataset(tmp_path_factory.mktemp("ds") / "ds", identities=4, frames=12)


def test_evaluation_noise_is_in_the_one_interocular_unit(example_dataset):
    "Noise of sigma inter-ocular distances per coordinate moves a point by sigma * sqrt(pi / 2) * IOD on average (issue 16)."
    table = evaluate_sequences(None, example_dataset, split="test", noise_levels=(0.1,), attributes=(), max_windows=50, judge_steps=5,
                               methods={"LI": linear_interpolation})
    noisy = float(table.query("condition == 'noise 0.1' and method == 'LI'")["nme_endpoints"].iloc[0])
    assert noisy == pytest.approx(0.1 * np.sqrt(np.pi / 2), rel=0.15)     # eye-centre units (the old bug) gave about 0.09


def test_one_frechet_distance():
    assert lsg_eval.frechet_distance is metrics.frechet_distance
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(400, 4)), rng.normal(0.5, 1.0, size=(400, 4))
    assert shape_frechet(a, a) == pytest.approx(0, abs=1e-6)
    assert shape_frechet(a, b) == pytest.approx(4 * 0.25, rel=0.3)


def test_bootstrap_interval_covers_the_mean_and_pairs_the_change():
    rng = np.random.default_rng(1)
    values = rng.normal(10, 2, 200)
    low, high = bootstrap_interval(values)
    assert low < values.mean() < high and high - low < 1.0
    baseline = values / 0.7                                                 # 30 % below the baseline, window by window
    low, high = bootstrap_interval(values, baseline)
    assert low == pytest.approx(-0.3, abs=1e-9) and high == pytest.approx(-0.3, abs=1e-9)


def test_windows_and_conditions(tracks):
    windows, people = track_windows(tracks, k=8, stride=2)
    assert windows.shape[1:] == (8, 68, 2) and len(windows) == len(people) == 6 * 2     # 30 frames: spans of 15 every 14
    assert np.array_equal(windows[0, 1], tracks.points[0][2])
    with pytest.raises(DataError, match="long enough"):
        track_windows(tracks, k=8, stride=10)
    conditions = window_conditions(windows, seed=3)
    assert list(conditions)[:4] == ["clean", "noise 1 px", "noise 2 px", "noise 4 px"]
    start, end = conditions["noise 2 px"]
    assert np.linalg.norm(start - windows[:, 0], axis=-1).mean() == pytest.approx(2 * np.sqrt(np.pi / 2), rel=0.1)
    manipulated = [v for name, v in conditions.items() if name.startswith("manipulated")][0]
    assert np.array_equal(manipulated[0], windows[:, 0]) and not np.allclose(manipulated[1], windows[:, -1])
    again = window_conditions(windows, seed=3)
    assert all(np.array_equal(again[c][1], conditions[c][1]) for c in conditions)


def test_dataset_tracks_split_runs_between_evaluation_and_judge(example_dataset):
    real = dataset_tracks(example_dataset, size=256)
    assert len(real.points) >= 4 and all(len(p) >= 5 for p in real.points)
    assert len(real.judge_points) == len(example_dataset.index) - sum(len(p) for p in real.points)
    scale = 256 / example_dataset.image_size
    first = np.asarray(example_dataset.landmarks("68")[0], np.float32) * scale
    assert any(np.allclose(p[0], first) for p in real.points)


def test_identity_gap_table(tracks):
    table = identity_gap(tracks, default_methods(None), k=6, stride=1, max_windows=30, judge_steps=30)
    rows = table.set_index(["condition", "method"])
    assert {"clean", "noise 2 px", "reference"} <= set(table["condition"]) and {"LI", "3D", "another person"} <= set(table["method"])
    for column in ("NME %", "identity error (sd)", "judge cosine", "Fréchet (shape)", "jerk / real jerk", "NME % 95% CI", "identity error (sd) vs LI"):
        assert column in table.columns
    # the scale of the identity measures: another person is far, a clean LI close; noise makes LI worse
    assert rows.loc[("clean", "LI"), "identity error (sd)"] < 0.5 * rows.loc[("reference", "another person"), "identity error (sd)"]
    assert rows.loc[("noise 4 px", "LI"), "NME %"] > rows.loc[("clean", "LI"), "NME %"]
    assert rows.loc[("clean", "LI"), "jerk / real jerk"] < 0.05                            # LI is a straight line in time
    assert table.attrs["windows"] == 30 and sum(table.attrs["yaw_windows"].values()) == 30


def test_smoothing_comparison(tracks):
    table = smoothing_comparison(tracks, None, max_tracks=3, identity_every=10).set_index("smoother")
    raw = table.loc["raw", "jitter (px/frame)"]
    assert table.loc["One-Euro", "jitter (px/frame)"] < 0.7 * raw
    gaussian = [name for name in table.index if name.startswith("Gaussian")][0]
    assert table.loc[gaussian, "jitter (px/frame)"] < 0.5 * raw
    assert raw == pytest.approx(1.5 * np.sqrt(np.pi), rel=0.15)            # difference of two N(0, 1.5^2 I) points


def test_synthetic_head_turns_populate_large_yaw_changes():
    from reenactbook.lsg_eval import yaw_change
    calm = track_windows(synthetic_tracks(6, frames=40), k=8, stride=3)[0]
    turning = track_windows(synthetic_tracks(6, frames=40, turn=40.0), k=8, stride=3)[0]
    assert (yaw_change(turning) > 25).sum() > (yaw_change(calm) > 25).sum()
    assert np.array_equal(synthetic_tracks(2, frames=10).points[0], synthetic_tracks(2, frames=10).points[0])   # seeded


# ---------------------------------------------------------------- bench/bench_lsg.py bounds, small (so it cannot rot)
def test_bench_bounds_prints_the_oracle_floors(capsys, monkeypatch):
    "The oracle that knows each person's exact 3D shape beats LI on identity across turns; the pose path is not predictable."
    import sys
    from pathlib import Path
    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "bench"))
    import bench_lsg
    bench_lsg.bounds(["--cases", "200"])
    rows = [[cell.strip() for cell in line.split("|")[1:-1]] for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    scored = {(r[0], r[1]): (float(r[3]), float(r[4])) for r in rows if len(r) == 6 and r[0] in ("all", "turn > 25 deg")}
    li, oracle = scored[("turn > 25 deg", "LI")], scored[("turn > 25 deg", "oracle: exact 3D shape, pose linear in time")]
    assert oracle[1] < 0.9 * li[1], (oracle, li)
    assert scored[("all", "oracle: LI of the clean endpoints")][0] < scored[("all", "LI, 2 px endpoint noise")][0]
    predictability = {r[0]: float(r[1]) for r in rows if len(r) == 2 and r[0] in ("yaw", "pitch", "roll")}
    assert set(predictability) == {"yaw", "pitch", "roll"} and all(v < 0.3 for v in predictability.values()), predictability


def test_identity_gap_leaves_out_windows_that_are_not_faces(tracks, caplog):
    "One glitch in the evaluated tracks is left out (counted and warned), not a crash of the whole table."
    from dataclasses import replace
    points = [p.copy() for p in tracks.points]
    points[0][0] = np.random.default_rng(1).uniform(60, 190, (68, 2))       # the first frame of the first track: not a face
    glitchy = replace(tracks, points=points)
    with caplog.at_level("WARNING"):
        table = identity_gap(glitchy, default_methods(None), k=6, stride=1, max_windows=30, judge_steps=30)
    assert table.attrs["not_faces"] == 1 and "do not read as faces" in caplog.text
    assert identity_gap(tracks, default_methods(None), k=6, stride=1, max_windows=30, judge_steps=30).attrs["not_faces"] == 0
