"""The WDW-2019H2 accuracy benchmark, run from the raw TouringPlans files.

A cell is the mean of the cleaned SPOSTMIN values of one ride, park day and
hour. Models fit on park days up to 2019-06-30 and are scored on 2019-07-01 to
2019-12-31. Every forecast of the test window is made as of 2019-06-30, so no
test observation reaches a model. The module reads the files itself, so no
database is needed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from parkcast.logs import get_logger
from parkcast.tasks.evaluate import Scores, SeasonalNaive, score
from parkcast.tasks.features import (
    CATEGORICAL_FEATURES,
    NUMERIC_FEATURES,
    Context,
    assign_training_as_of,
    build_features,
    with_history,
)

__all__ = [
    "TRAIN_END",
    "TEST_START",
    "TEST_END",
    "BENCHMARK_HORIZON_DAYS",
    "MEASURED_WEATHER_COLUMNS",
    "BacktestResult",
    "ModelResult",
    "load_benchmark_cells",
    "load_benchmark_context",
    "split_benchmark",
    "run_backtest",
    "format_backtest",
]

TRAIN_END = pd.Timestamp("2019-06-30")
TEST_START = pd.Timestamp("2019-07-01")
TEST_END = pd.Timestamp("2019-12-31")
# The last test day lies this many days after the as-of day 2019-06-30, so
# the MLP must see training cells with horizons that long.
BENCHMARK_HORIZON_DAYS = int((TEST_END - TRAIN_END).days)
# Same-day measured weather: not known days ahead, so the protocol forbids it.
MEASURED_WEATHER_COLUMNS = ["WDWMAXTEMP", "WDWMINTEMP", "WDWMEANTEMP"]
MAX_POSTED_WAIT = 500
CLOSED = -999
_PARK_CODES = {
    "Magic Kingdom": "MK",
    "Epcot": "EP",
    "Disney's Hollywood Studios": "HS",
    "Disney's Animal Kingdom": "AK",
}


def _ride_files(data_dir: Path) -> list[Path]:
    files = sorted(p for p in data_dir.glob("*.csv.gz") if p.name != "touringplans_metadata.csv.gz")
    if not files:
        raise FileNotFoundError(f"no <ride>.csv.gz files in {data_dir}; set PARKCAST_DATA_DIR to the TouringPlans folder")
    return files


def load_benchmark_cells(data_dir: Path) -> pd.DataFrame:
    """Return one row per (ride_code, park_day, hour) with `wait`, the mean cleaned SPOSTMIN.

    Rows with an empty SPOSTMIN, -999, below 0 or above 500 are dropped. The
    hour is the hour of `datetime`, and the park day is `date`, even for
    observations after midnight.
    """
    frames = []
    for path in _ride_files(Path(data_dir)):
        raw = pd.read_csv(path, usecols=["date", "datetime", "SPOSTMIN"])
        wait = pd.to_numeric(raw["SPOSTMIN"], errors="coerce")
        keep = wait.notna() & (wait != CLOSED) & (wait >= 0) & (wait <= MAX_POSTED_WAIT)
        raw = raw[keep].assign(wait=wait[keep])
        cells = (
            raw.assign(
                park_day=pd.to_datetime(raw["date"], format="%m/%d/%Y"),
                hour=pd.to_datetime(raw["datetime"]).dt.hour,
            )
            .groupby(["park_day", "hour"], as_index=False)["wait"]
            .mean()
        )
        frames.append(cells.assign(ride_code=path.name.removesuffix(".csv.gz")))
    cells = pd.concat(frames, ignore_index=True)[["ride_code", "park_day", "hour", "wait"]]
    return cells.sort_values(["park_day", "ride_code", "hour"], ignore_index=True)


def load_benchmark_context(data_dir: Path) -> Context:
    """Read attractions.csv and the park-day metadata the way load_context returns them.

    Metadata values stay raw strings, as the database stores them. The
    measured weather columns are dropped.
    """
    data_dir = Path(data_dir)
    attractions = pd.read_csv(data_dir / "attractions.csv", dtype=str, keep_default_na=False, encoding="utf-8-sig")
    unknown = sorted(set(attractions["park"]) - set(_PARK_CODES))
    if unknown:
        raise ValueError(f"{data_dir / 'attractions.csv'}: unknown park names {unknown}; known parks are {sorted(_PARK_CODES)}")
    rides = pd.DataFrame({
        "code": attractions["ride"].str.strip(),
        "name": attractions["name"].str.strip(),
        "park_code": attractions["park"].map(_PARK_CODES),
        "opened_on": pd.to_datetime(attractions.get("opened_on"), errors="coerce"),
        "duration_minutes": pd.to_numeric(attractions.get("duration"), errors="coerce"),
    })
    meta = pd.read_csv(data_dir / "touringplans_metadata.csv.gz", dtype=str, encoding="utf-8-sig")
    days = pd.to_datetime(meta["DATE"], format="%m/%d/%Y", errors="coerce")
    meta = meta[days.notna()].drop(columns=["DATE", *[c for c in MEASURED_WEATHER_COLUMNS if c in meta]])
    meta.index = days[days.notna()]
    meta = meta[~meta.index.duplicated(keep="last")]
    return Context(rides=rides, park_days=meta)


def split_benchmark(cells: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return the protocol's training cells (up to 2019-06-30) and test cells (2019H2)."""
    train = cells[cells["park_day"] <= TRAIN_END]
    test = cells[(cells["park_day"] >= TEST_START) & (cells["park_day"] <= TEST_END)]
    if train.empty or test.empty:
        raise ValueError(
            f"the benchmark needs cells up to {TRAIN_END.date()} and in {TEST_START.date()}..{TEST_END.date()}; "
            f"the data folder holds {cells['park_day'].min()}..{cells['park_day'].max()}"
        )
    return train.reset_index(drop=True), test.reset_index(drop=True)


@dataclass
class ModelResult:
    """Test scores of one model, overall and per ride, and what it cost."""

    name: str
    scores: Scores
    per_ride_mae: dict[str, float]
    seconds: float
    note: str = ""
    predictions: np.ndarray | None = field(default=None, repr=False)  # one per test cell, in test order


@dataclass
class BacktestResult:
    train_cells: int
    test_cells: int
    models: list[ModelResult] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)


def _result(name: str, test: pd.DataFrame, predicted: np.ndarray, seconds: float, note: str = "") -> ModelResult:
    errors = np.abs(np.asarray(predicted, dtype=float) - test["wait"].to_numpy(dtype=float))
    per_ride = pd.Series(errors, index=test["ride_code"].to_numpy()).groupby(level=0).mean()
    scores = score(test["wait"].to_numpy(), predicted)
    return ModelResult(name, scores, {k: float(v) for k, v in per_ride.items()}, seconds, note, np.asarray(predicted, dtype=float))


def _test_keys(test: pd.DataFrame) -> pd.DataFrame:
    return test[["ride_code", "park_day", "hour"]].assign(as_of=TRAIN_END)


def _lightgbm(train: pd.DataFrame, test: pd.DataFrame, context: Context, seed: int) -> tuple[np.ndarray, str]:
    """Fit LightGBM (L1 objective) on the MLP's features, early-stopped on the same validation days."""
    import lightgbm

    from parkcast.tasks.train import VALIDATION_SHARE, split_by_days

    validation_days = max(1, int(train["park_day"].nunique() * VALIDATION_SHARE))
    fit_cells, validation_cells = split_by_days(train, validation_days)
    fit_cells = assign_training_as_of(fit_cells, BENCHMARK_HORIZON_DAYS, seed)
    validation_cells = assign_training_as_of(validation_cells, BENCHMARK_HORIZON_DAYS, seed + 1)

    def frame(keys: pd.DataFrame, categories: dict | None = None) -> pd.DataFrame:
        features = build_features(keys, context)
        for name in CATEGORICAL_FEATURES:
            features[name] = pd.Categorical(features[name], categories=None if categories is None else categories[name])
        return features[CATEGORICAL_FEATURES + NUMERIC_FEATURES]

    fit_x = frame(fit_cells)
    categories = {name: fit_x[name].cat.categories for name in CATEGORICAL_FEATURES}
    params = {
        "objective": "l1", "learning_rate": 0.1, "num_leaves": 63, "min_data_in_leaf": 50,
        "bagging_fraction": 0.8, "bagging_freq": 1, "feature_fraction": 0.8, "seed": seed,
        "num_threads": 2, "verbose": -1,
    }
    # The native API, not LGBMRegressor, so that scikit-learn is not needed.
    fit_set = lightgbm.Dataset(fit_x, fit_cells["wait"].to_numpy())
    validation_set = lightgbm.Dataset(frame(validation_cells, categories), validation_cells["wait"].to_numpy(), reference=fit_set)
    model = lightgbm.train(
        params, fit_set, num_boost_round=1000, valid_sets=[validation_set],
        callbacks=[lightgbm.early_stopping(50, verbose=False)],
    )
    predicted = np.maximum(model.predict(frame(_test_keys(test), categories), num_iteration=model.best_iteration), 0.0)
    return predicted, f"lightgbm {lightgbm.__version__}, {model.best_iteration} trees"


def run_backtest(
    data_dir: Path,
    hparams=None,
    seeds: int = 1,
    include_lightgbm: bool = True,
) -> BacktestResult:
    """Run the protocol: fit on the training window, score every model on 2019H2.

    The MLP's test prediction is the mean over `seeds` models trained with
    seeds hparams.seed, +1, ...
    """
    from parkcast.models.mlp import HyperParameters, predict_minutes, to_model_inputs
    from parkcast.tasks.train import train_candidate

    logger = get_logger()
    hparams = hparams or HyperParameters()
    if seeds < 1:
        raise ValueError(f"seeds={seeds}: train at least one MLP (seeds >= 1)")
    cells = load_benchmark_cells(data_dir)
    train, test = split_benchmark(cells)
    # History features come from the training window only.
    context = with_history(load_benchmark_context(data_dir), train)
    result = BacktestResult(train_cells=len(train), test_cells=len(test))

    started = time.perf_counter()
    baseline = SeasonalNaive().fit(train).predict(test)
    result.models.append(_result("seasonal naive (ride x weekday x hour)", test, baseline, time.perf_counter() - started))

    started = time.perf_counter()
    test_inputs = to_model_inputs(build_features(_test_keys(test), context), CATEGORICAL_FEATURES, NUMERIC_FEATURES)
    predictions, epochs = [], []
    for offset in range(seeds):
        import keras

        keras.backend.clear_session()
        candidate = train_candidate(
            train, context, hparams.model_copy(update={"seed": hparams.seed + offset}), BENCHMARK_HORIZON_DAYS
        )
        epochs.append(len(candidate.history["loss"]))
        predictions.append(predict_minutes(candidate.model, test_inputs))
        logger.info("MLP seed %d: validation MAE %.2f after %d epochs", hparams.seed + offset, candidate.validation.mae, epochs[-1])
    result.models.append(_result(
        f"MLP ({seeds} seed{'s' if seeds > 1 else ''})", test, np.mean(predictions, axis=0),
        time.perf_counter() - started, f"epochs {epochs}",
    ))

    if include_lightgbm:
        try:
            import lightgbm  # noqa: F401
        except ImportError:
            result.skipped["LightGBM"] = "lightgbm is not installed: pip install -e '.[bench]' to score it"
        else:
            started = time.perf_counter()
            predicted, note = _lightgbm(train, test, context, hparams.seed)
            result.models.append(_result("LightGBM (L1)", test, predicted, time.perf_counter() - started, note))
    return result


def format_backtest(result: BacktestResult) -> str:
    """Render the scores as a markdown table, then per-ride MAE, one column per model."""
    lines = [
        f"WDW-2019H2: {result.train_cells} training cells (<= {TRAIN_END.date()}), "
        f"{result.test_cells} test cells ({TEST_START.date()}..{TEST_END.date()}), all forecast as of {TRAIN_END.date()}",
        "",
        "| model | MAE | RMSE | within 10 min | seconds | note |",
        "|---|---|---|---|---|---|",
    ]
    for model in result.models:
        s = model.scores
        lines.append(f"| {model.name} | {s.mae:.2f} | {s.rmse:.2f} | {s.within_10:.1%} | {model.seconds:.0f} | {model.note} |")
    for name, reason in result.skipped.items():
        lines.append(f"| {name} | skipped | | | | {reason} |")
    lines += ["", "| ride | " + " | ".join(m.name for m in result.models) + " |", "|---" * (len(result.models) + 1) + "|"]
    for ride in sorted(result.models[0].per_ride_mae):
        lines.append(f"| {ride} | " + " | ".join(f"{m.per_ride_mae.get(ride, float('nan')):.2f}" for m in result.models) + " |")
    return "\n".join(lines)
