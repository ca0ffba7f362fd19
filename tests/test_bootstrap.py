import numpy as np

from reenactbook.bootstrap import bootstrap_interval


def test_interval_covers_the_mean_and_narrows_with_more_rows():
    rng = np.random.default_rng(1)
    few, many = rng.normal(2.0, 1.0, 16), rng.normal(2.0, 1.0, 1024)
    (low_few, high_few), (low_many, high_many) = bootstrap_interval(few), bootstrap_interval(many)
    assert low_few < few.mean() < high_few and low_many < many.mean() < high_many
    assert high_many - low_many < 0.5 * (high_few - low_few)


def test_paired_interval_of_the_change_against_a_baseline():
    rng = np.random.default_rng(2)
    baseline = rng.gamma(4.0, 0.5, 300)
    method = 0.7 * baseline * rng.normal(1.0, 0.05, 300)
    low, high = bootstrap_interval(method, baseline)
    assert -0.33 < low < high < -0.27          # 30 % below, drawn in pairs: a narrow interval around -0.3
    unpaired_width = np.subtract(*bootstrap_interval(method)[::-1]) / method.mean()
    assert high - low < 0.5 * unpaired_width


def test_same_seed_same_interval_and_nan_rows_left_out():
    values = [1.0, 2.0, np.nan, 4.0, 3.0]
    assert bootstrap_interval(values, seed=3) == bootstrap_interval([1.0, 2.0, 4.0, 3.0], seed=3)
    assert all(np.isnan(bootstrap_interval([1.0, np.nan])))
    assert all(np.isnan(bootstrap_interval([2.0, 1.0], [np.nan, np.nan])))
