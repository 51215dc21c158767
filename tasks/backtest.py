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
    "Window",
    "PROTOCOL_WINDOW",
    "INNER_WINDOW",
    "WINDOWS",
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
# Training settings of the classic write-up MLP baseline (see models/classic_mlp.py).
CLASSIC_NAME = "classic MLP (2x64, dropout 0.1)"
CLASSIC_MAX_EPOCHS = 30
CLASSIC_PATIENCE = 5
CLASSIC_BATCH_SIZE = 256
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


@dataclass(frozen=True)
class Window:
    """Days a backtest fits on (up to train_end) and scores (test_start to test_end)."""

    name: str
    train_end: pd.Timestamp
    test_start: pd.Timestamp
    test_end: pd.Timestamp

    @property
    def horizon_days(self) -> int:
        """Days from the as-of day (train_end) to the last scored day."""
        return int((self.test_end - self.train_end).days)


PROTOCOL_WINDOW = Window("WDW-2019H2", TRAIN_END, TEST_START, TEST_END)
# The same protocol moved back half a year: it fits up to 2018-12-31 and
# scores 2019H1, so it reads only the protocol's training window. It may
# choose settings that the validation slice cannot measure, such as a refit
# on all training days.
INNER_WINDOW = Window("WDW-2019H1 (inside the training window)", pd.Timestamp("2018-12-31"), pd.Timestamp("2019-01-01"), TRAIN_END)
WINDOWS = {"test": PROTOCOL_WINDOW, "inner": INNER_WINDOW}


def split_benchmark(cells: pd.DataFrame, window: Window = PROTOCOL_WINDOW) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return the training cells (up to window.train_end) and the scored cells of `window`.

    With the default window these are the protocol's cells up to 2019-06-30 and of 2019H2.
    """
    train = cells[cells["park_day"] <= window.train_end]
    test = cells[(cells["park_day"] >= window.test_start) & (cells["park_day"] <= window.test_end)]
    if train.empty or test.empty:
        raise ValueError(
            f"the benchmark needs cells up to {window.train_end.date()} and in "
            f"{window.test_start.date()}..{window.test_end.date()}; "
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
    window: Window = PROTOCOL_WINDOW
    models: list[ModelResult] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)


def _result(name: str, test: pd.DataFrame, predicted: np.ndarray, seconds: float, note: str = "") -> ModelResult:
    errors = np.abs(np.asarray(predicted, dtype=float) - test["wait"].to_numpy(dtype=float))
    per_ride = pd.Series(errors, index=test["ride_code"].to_numpy()).groupby(level=0).mean()
    scores = score(test["wait"].to_numpy(), predicted)
    return ModelResult(name, scores, {k: float(v) for k, v in per_ride.items()}, seconds, note, np.asarray(predicted, dtype=float))


def _test_keys(test: pd.DataFrame, window: Window) -> pd.DataFrame:
    return test[["ride_code", "park_day", "hour"]].assign(as_of=window.train_end)


def _lightgbm(
    train: pd.DataFrame, test: pd.DataFrame, context: Context, seed: int, window: Window, refit: bool
) -> tuple[np.ndarray, np.ndarray | None, str]:
    """Fit LightGBM (L1 objective) on the MLP's features, early-stopped on the same validation days.

    With `refit`, a second model with the early-stopped number of trees is
    fit on all training days, validation days included, and its predictions
    are returned second (else None).
    """
    import lightgbm

    from parkcast.tasks.train import VALIDATION_SHARE, split_by_days

    validation_days = max(1, int(train["park_day"].nunique() * VALIDATION_SHARE))
    fit_cells, validation_cells = split_by_days(train, validation_days)
    fit_cells = assign_training_as_of(fit_cells, window.horizon_days, seed)
    validation_cells = assign_training_as_of(validation_cells, window.horizon_days, seed + 1)

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
    validation_mae = model.best_score["valid_0"]["l1"]
    trees = model.best_iteration
    test_x = frame(_test_keys(test, window), categories)
    predicted = np.maximum(model.predict(test_x, num_iteration=trees), 0.0)
    refitted = None
    if refit:
        all_cells = pd.concat([fit_cells, validation_cells], ignore_index=True)
        all_set = lightgbm.Dataset(frame(all_cells, categories), all_cells["wait"].to_numpy())
        refitted = np.maximum(lightgbm.train(params, all_set, num_boost_round=trees).predict(test_x), 0.0)
    return predicted, refitted, f"validation MAE {validation_mae:.2f}; lightgbm {lightgbm.__version__}, {trees} trees"


def _classic_mlp(train: pd.DataFrame, test: pd.DataFrame, context: Context, seed: int, window: Window) -> tuple[np.ndarray, str]:
    """Fit the classic write-up MLP, early-stopped on the same validation days as the MLP."""
    import keras

    from parkcast.models.classic_mlp import build_classic_model, classic_inputs, predict_classic
    from parkcast.tasks.train import VALIDATION_SHARE, split_by_days

    validation_days = max(1, int(train["park_day"].nunique() * VALIDATION_SHARE))
    fit_cells, validation_cells = split_by_days(train, validation_days)
    # The classic model has no history features, so the as-of day does not change its inputs.
    fit_features = build_features(fit_cells.assign(as_of=fit_cells["park_day"]), context)
    validation_features = build_features(validation_cells.assign(as_of=validation_cells["park_day"]), context)
    keras.backend.clear_session()
    model = build_classic_model(fit_features, seed)
    stop = keras.callbacks.EarlyStopping(patience=CLASSIC_PATIENCE, restore_best_weights=True)
    history = model.fit(
        classic_inputs(fit_features),
        fit_cells["wait"].to_numpy(dtype="float32"),
        validation_data=(classic_inputs(validation_features), validation_cells["wait"].to_numpy(dtype="float32")),
        epochs=CLASSIC_MAX_EPOCHS,
        batch_size=CLASSIC_BATCH_SIZE,
        shuffle=True,
        callbacks=[stop],
        verbose=0,
    )
    validation = score(validation_cells["wait"].to_numpy(), predict_classic(model, validation_features))
    predicted = predict_classic(model, build_features(_test_keys(test, window), context))
    return predicted, f"validation MAE {validation.mae:.2f}, {len(history.history['loss'])} epochs"


def run_backtest(
    data_dir: Path,
    hparams=None,
    seeds: int = 1,
    include_lightgbm: bool = True,
    include_classic: bool = True,
    refit: bool = False,
    window: Window = PROTOCOL_WINDOW,
) -> BacktestResult:
    """Run the protocol: fit on the training window, score every model on the test window.

    The MLP's test prediction is the mean over `seeds` models trained with
    seeds hparams.seed, +1, ..., the forecast that a retrain with
    PARKCAST_TRIALS=seeds and PARKCAST_TRIAL_COMBINE=average saves as one model. With `refit`, each MLP and the LightGBM model
    is also fit again on all training days for the epochs or trees that early
    stopping chose, so that the validation days are learned from too. The
    refit models are scored as extra rows.
    """
    from parkcast.models.mlp import HyperParameters, predict_minutes, to_model_inputs
    from parkcast.tasks.train import best_epoch_count, fit_all_days, train_candidate

    logger = get_logger()
    hparams = hparams or HyperParameters()
    if seeds < 1:
        raise ValueError(f"seeds={seeds}: train at least one MLP (seeds >= 1)")
    cells = load_benchmark_cells(data_dir)
    train, test = split_benchmark(cells, window)
    # History features come from the training window only.
    context = with_history(load_benchmark_context(data_dir), train)
    result = BacktestResult(train_cells=len(train), test_cells=len(test), window=window)

    started = time.perf_counter()
    baseline = SeasonalNaive().fit(train).predict(test)
    result.models.append(_result("seasonal naive (ride x weekday x hour)", test, baseline, time.perf_counter() - started))

    started = time.perf_counter()
    test_inputs = to_model_inputs(build_features(_test_keys(test, window), context), CATEGORICAL_FEATURES, NUMERIC_FEATURES)
    predictions, refit_predictions, epochs, validation_maes, refit_epochs = [], [], [], [], []
    for offset in range(seeds):
        import keras

        keras.backend.clear_session()
        seed_hparams = hparams.model_copy(update={"seed": hparams.seed + offset})
        candidate = train_candidate(train, context, seed_hparams, window.horizon_days)
        epochs.append(len(candidate.history["loss"]))
        validation_maes.append(candidate.validation.mae)
        logger.info("MLP seed %d: validation MAE %.2f after %d epochs", seed_hparams.seed, candidate.validation.mae, epochs[-1])
        predictions.append(predict_minutes(candidate.model, test_inputs))
        if refit:
            keras.backend.clear_session()
            refit_epochs.append(best_epoch_count(candidate))
            refitted = fit_all_days(train, context, seed_hparams, window.horizon_days, refit_epochs[-1])
            refit_predictions.append(predict_minutes(refitted, test_inputs))
    seconds = time.perf_counter() - started
    note = f"validation MAE {', '.join(f'{mae:.2f}' for mae in validation_maes)}; epochs {epochs}"
    if seeds > 1:
        test_maes = [score(test["wait"].to_numpy(), predicted).mae for predicted in predictions]
        note += f"; test MAE per seed {', '.join(f'{mae:.2f}' for mae in test_maes)}"
    name = f"MLP ({seeds} seed{'s' if seeds > 1 else ''})"
    if seeds > 1:
        result.models.append(_result(f"MLP (seed {hparams.seed} only)", test, predictions[0], seconds, note))
    result.models.append(_result(name, test, np.mean(predictions, axis=0), seconds, note))
    if refit:
        result.models.append(_result(
            f"{name}, refit", test, np.mean(refit_predictions, axis=0), seconds,
            f"refit on all training days for {refit_epochs} epochs",
        ))

    if include_classic:
        started = time.perf_counter()
        predicted, note = _classic_mlp(train, test, context, hparams.seed, window)
        result.models.append(_result(CLASSIC_NAME, test, predicted, time.perf_counter() - started, note))

    if include_lightgbm:
        try:
            import lightgbm  # noqa: F401
        except ImportError:
            result.skipped["LightGBM"] = "lightgbm is not installed: pip install -e '.[bench]' to score it"
        else:
            started = time.perf_counter()
            predicted, refitted, note = _lightgbm(train, test, context, hparams.seed, window, refit)
            seconds = time.perf_counter() - started
            result.models.append(_result("LightGBM (L1)", test, predicted, seconds, note))
            if refitted is not None:
                result.models.append(_result("LightGBM (L1), refit", test, refitted, seconds, "refit on all training days"))
    return result


def format_backtest(result: BacktestResult) -> str:
    """Render the scores as a markdown table, then per-ride MAE, one column per model."""
    window = result.window
    lines = [
        f"{window.name}: {result.train_cells} training cells (<= {window.train_end.date()}), "
        f"{result.test_cells} test cells ({window.test_start.date()}..{window.test_end.date()}), "
        f"all forecast as of {window.train_end.date()}",
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
