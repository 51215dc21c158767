"""The WDW-2019H2 backtest on a small real slice: scores printed, no test observation used."""

import gzip

import numpy as np
import pandas as pd
import pytest

from parkcast.models.classic_mlp import CLASSIC_NUMERIC_FEATURES, build_classic_model
from parkcast.models.mlp import BASE_INPUT, HyperParameters
from parkcast.tasks.backtest import (
    INNER_WINDOW,
    TEST_START,
    TRAIN_END,
    format_backtest,
    load_benchmark_cells,
    run_backtest,
    split_benchmark,
)
from parkcast.tasks.features import CATEGORICAL_FEATURES, NUMERIC_FEATURES, TREND_FEATURE

from .conftest import write_slice

RIDES = ["soarin", "spaceship_earth"]
TINY = HyperParameters.parse(hidden_units=(16,), max_epochs=2, batch_size=256)


@pytest.fixture(scope="module")
def bench_slice(tmp_path_factory):
    return write_slice(tmp_path_factory.mktemp("bench"), rides=RIDES, start="03/01/2019", end="08/31/2019")


def _inflate_test_window(source, target):
    """Copy of `source` whose test-window posted waits are tripled."""
    write_slice(target, rides=RIDES, start="03/01/2019", end="08/31/2019")
    for ride in RIDES:
        frame = pd.read_csv(source / f"{ride}.csv.gz", dtype=str, keep_default_na=False)
        test_rows = pd.to_datetime(frame["date"], format="%m/%d/%Y") >= TEST_START
        waits = pd.to_numeric(frame["SPOSTMIN"], errors="coerce")
        frame.loc[test_rows & (waits > 0), "SPOSTMIN"] = (waits * 3).clip(upper=500).astype("Int64").astype(str)
        with gzip.open(target / f"{ride}.csv.gz", "wt") as handle:
            frame.to_csv(handle, index=False)
    return target


def test_backtest_scores_every_model_side_by_side(bench_slice):
    pytest.importorskip("lightgbm")
    result = run_backtest(bench_slice, hparams=TINY)
    _, test = split_benchmark(load_benchmark_cells(bench_slice))
    assert result.test_cells == len(test)
    assert [m.name.split(" ")[0] for m in result.models] == ["seasonal", "MLP", "classic", "LightGBM"]
    for model in result.models:
        assert sorted(model.per_ride_mae) == RIDES
        assert model.scores.cells == len(test)
        assert model.predictions.min() >= 0.0
    text = format_backtest(result)
    assert "| LightGBM (L1) |" in text
    assert "| classic MLP (2x64, dropout 0.1) |" in text
    assert "| soarin |" in text


def test_backtest_predictions_ignore_test_window_observations(bench_slice, tmp_path):
    inflated = _inflate_test_window(bench_slice, tmp_path / "inflated")
    original = run_backtest(bench_slice, hparams=TINY, include_lightgbm=False)
    changed = run_backtest(inflated, hparams=TINY, include_lightgbm=False)
    # The targets changed, so the scores differ, but no forecast may move.
    assert changed.models[0].scores.mae != pytest.approx(original.models[0].scores.mae)
    for before, after in zip(original.models, changed.models):
        np.testing.assert_allclose(after.predictions, before.predictions, rtol=1e-5, atol=1e-3, err_msg=before.name)


def test_classic_mlp_matches_write_up():
    rng = np.random.default_rng(0)
    features = pd.DataFrame({name: rng.normal(size=64) for name in [*NUMERIC_FEATURES, TREND_FEATURE]})
    for name in CATEGORICAL_FEATURES:
        features[name] = rng.choice(["a", "b"], 64)
    model = build_classic_model(features, seed=1)
    dense = [layer for layer in model.layers if layer.__class__.__name__ == "Dense"]
    dropout = [layer for layer in model.layers if layer.__class__.__name__ == "Dropout"]
    assert [layer.units for layer in dense] == [64, 64, 1]
    assert [layer.rate for layer in dropout] == [0.1, 0.1]
    assert BASE_INPUT not in model.input
    assert model.input["numeric"].shape[-1] == len(CLASSIC_NUMERIC_FEATURES)


def test_classic_mlp_has_no_history_features():
    history = {"base_level", "recent_level", "recent_hour_level", "last_year_level", "profile_level", "year_profile_level"}
    assert history.isdisjoint(CLASSIC_NUMERIC_FEATURES)
    assert "holiday_metric" in CLASSIC_NUMERIC_FEATURES
    # The classic model distinguishes the years by the trend, but the product's MLP does not read it.
    assert TREND_FEATURE in CLASSIC_NUMERIC_FEATURES
    assert TREND_FEATURE not in NUMERIC_FEATURES


def test_inner_window_stays_in_training_window():
    days = pd.date_range("2018-06-01", "2019-12-31", freq="D")
    cells = pd.DataFrame({"ride_code": "soarin", "park_day": days, "hour": 10, "wait": 30.0})
    train, scored = split_benchmark(cells, INNER_WINDOW)
    assert train["park_day"].max() == pd.Timestamp("2018-12-31")
    assert scored["park_day"].min() == pd.Timestamp("2019-01-01")
    assert scored["park_day"].max() == TRAIN_END


def test_backtest_refit_uses_early_stopped_epochs(bench_slice):
    result = run_backtest(bench_slice, hparams=TINY, include_lightgbm=False, include_classic=False, refit=True)
    assert [m.name for m in result.models[1:]] == ["MLP (1 seed)", "MLP (1 seed), refit"]
    refitted = result.models[2]
    assert "refit on all training days for [" in refitted.note
    assert refitted.predictions.min() >= 0.0
    assert refitted.scores.cells == result.test_cells


def test_best_epoch_count_is_lowest_validation_loss():
    from parkcast.tasks.train import Candidate, best_epoch_count

    candidate = Candidate(
        model=None, hparams=TINY, history={"loss": [5.0, 4.0, 3.0, 2.0], "val_loss": [4.0, 2.5, 3.0, 2.6]},
        validation=None, train_start=None, train_end=None,
    )
    assert best_epoch_count(candidate) == 2
