"""MAE, RMSE and within-10 scoring, and the seasonal-naive baseline."""

import math

import numpy as np
import pandas as pd
import pytest

from parkcast.tasks.evaluate import SeasonalNaive, score


def test_score_matches_plain_loop():
    rng = np.random.default_rng(3)
    actual = rng.uniform(0, 120, 500)
    predicted = actual + rng.normal(0, 15, 500)
    absolute = [abs(p - a) for p, a in zip(predicted, actual)]
    scores = score(actual, predicted)
    assert scores.mae == pytest.approx(sum(absolute) / len(absolute))
    assert scores.rmse == pytest.approx(math.sqrt(sum(e * e for e in absolute) / len(absolute)))
    assert scores.within_10 == pytest.approx(sum(e <= 10 for e in absolute) / len(absolute))
    assert scores.cells == 500


def test_score_rejects_empty_window():
    with pytest.raises(ValueError, match="no cells to score"):
        score(np.array([]), np.array([]))


def test_score_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="shape"):
        score(np.array([1.0, 2.0]), np.array([1.0]))


def test_seasonal_naive_uses_weekday_hour_mean_then_falls_back():
    cells = pd.DataFrame({
        "ride_code": ["a", "a", "a", "b"],
        "park_day": pd.to_datetime(["2019-01-07", "2019-01-14", "2019-01-08", "2019-01-07"]),  # Mon, Mon, Tue, Mon
        "hour": [10, 10, 10, 9],
        "wait": [20.0, 40.0, 60.0, 5.0],
    })
    model = SeasonalNaive().fit(cells)
    keys = pd.DataFrame({
        "ride_code": ["a", "a", "b", "c"],
        "park_day": pd.to_datetime(["2019-01-21", "2019-01-23", "2019-01-21", "2019-01-21"]),  # Mon, Wed, Mon, Mon
        "hour": [10, 10, 15, 10],
    })
    predicted = model.predict(keys)
    assert predicted[0] == pytest.approx(30.0)  # Monday 10:00 mean of ride a
    assert predicted[1] == pytest.approx(40.0)  # no Wednesday: ride a's 10:00 mean
    assert predicted[2] == pytest.approx(5.0)  # no 15:00: ride b's mean
    assert predicted[3] == pytest.approx(31.25)  # unknown ride: overall mean
