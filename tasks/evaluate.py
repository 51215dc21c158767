"""Accuracy metrics in minutes and the seasonal-naive baseline."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

__all__ = ["Scores", "score", "SeasonalNaive"]


@dataclass(frozen=True)
class Scores:
    """Accuracy of predictions against observed waits, in minutes."""

    mae: float
    rmse: float
    within_10: float  # share of cells predicted within 10 minutes
    cells: int

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def score(actual: np.ndarray, predicted: np.ndarray) -> Scores:
    """Score `predicted` against `actual`, each cell weighted equally."""
    actual = np.asarray(actual, dtype=float)
    predicted = np.asarray(predicted, dtype=float)
    if actual.shape != predicted.shape:
        raise ValueError(f"actual has shape {actual.shape} but predicted has {predicted.shape}")
    if actual.size == 0:
        raise ValueError("no cells to score: the evaluation window contains no observations")
    errors = predicted - actual
    return Scores(
        mae=float(np.mean(np.abs(errors))),
        rmse=float(np.sqrt(np.mean(errors**2))),
        within_10=float(np.mean(np.abs(errors) <= 10.0)),
        cells=int(actual.size),
    )


class SeasonalNaive:
    """Mean training wait per ride x weekday x hour, falling back to ride x hour, then ride."""

    def fit(self, cells: pd.DataFrame) -> "SeasonalNaive":
        frame = cells.assign(weekday=pd.to_datetime(cells["park_day"]).dt.dayofweek)
        self._by_weekday_hour = frame.groupby(["ride_code", "weekday", "hour"])["wait"].mean()
        self._by_hour = frame.groupby(["ride_code", "hour"])["wait"].mean()
        self._by_ride = frame.groupby("ride_code")["wait"].mean()
        self._overall = float(frame["wait"].mean())
        return self

    def predict(self, keys: pd.DataFrame) -> np.ndarray:
        frame = keys.assign(weekday=pd.to_datetime(keys["park_day"]).dt.dayofweek)
        index = pd.MultiIndex.from_frame(frame[["ride_code", "weekday", "hour"]])
        result = self._by_weekday_hour.reindex(index).to_numpy()
        by_hour = self._by_hour.reindex(pd.MultiIndex.from_frame(frame[["ride_code", "hour"]])).to_numpy()
        result = np.where(np.isnan(result), by_hour, result)
        by_ride = self._by_ride.reindex(frame["ride_code"]).to_numpy()
        result = np.where(np.isnan(result), by_ride, result)
        return np.where(np.isnan(result), self._overall, result)
