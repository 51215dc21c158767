"""The WDW-2019H2 backtest on a small real slice: scores printed, no test observation used."""

import gzip

import numpy as np
import pandas as pd
import pytest

from parkcast.models.mlp import HyperParameters
from parkcast.tasks.backtest import TEST_START, format_backtest, load_benchmark_cells, run_backtest, split_benchmark

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
    assert [m.name.split(" ")[0] for m in result.models] == ["seasonal", "MLP", "LightGBM"]
    for model in result.models:
        assert sorted(model.per_ride_mae) == RIDES
        assert model.scores.cells == len(test)
        assert model.predictions.min() >= 0.0
    text = format_backtest(result)
    assert "| LightGBM (L1) |" in text
    assert "| soarin |" in text


def test_backtest_predictions_ignore_test_window_observations(bench_slice, tmp_path):
    inflated = _inflate_test_window(bench_slice, tmp_path / "inflated")
    original = run_backtest(bench_slice, hparams=TINY, include_lightgbm=False)
    changed = run_backtest(inflated, hparams=TINY, include_lightgbm=False)
    # The targets changed, so the scores differ, but no forecast may move.
    assert changed.models[0].scores.mae != pytest.approx(original.models[0].scores.mae)
    for before, after in zip(original.models, changed.models):
        np.testing.assert_allclose(after.predictions, before.predictions, rtol=1e-5, atol=1e-3, err_msg=before.name)
