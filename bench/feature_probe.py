"""Probe candidate features with LightGBM before spending MLP runs on them.

Builds the backtest's features once (fit and validation cells with random
as-of days, test cells as of 2019-06-30), caches them under var/, then fits
one LightGBM model per experiment: L1 objective, learning rate 0.03,
early-stopped on the validation days. It prints the validation MAE (the
number to choose by), the test MAE, and the test MAE of a refit on all
training days for the early-stopped number of trees. Not a timed benchmark.

    .venv/bin/pip install -e '.[bench]'
    .venv/bin/python bench/feature_probe.py base school capacity weather all_metadata yoy recency
"""

from __future__ import annotations

import argparse
import pickle
import time
from pathlib import Path

import numpy as np
import pandas as pd

from parkcast.tasks.backtest import (
    BENCHMARK_HORIZON_DAYS, PROTOCOL_WINDOW, load_benchmark_cells, load_benchmark_context, split_benchmark,
)
from parkcast.tasks.features import assign_training_as_of, build_features, with_history
from parkcast.tasks.train import VALIDATION_SHARE, split_by_days

SPLITS = ("fit", "validation", "test")


def load(data_dir: Path, cache: Path) -> tuple[dict, dict, pd.DataFrame]:
    """Build the features and cells of each split, the metadata and the training cells, or read them from `cache`."""
    if cache.exists():
        return pickle.loads(cache.read_bytes())
    cells = load_benchmark_cells(data_dir)
    train, test = split_benchmark(cells)
    context = with_history(load_benchmark_context(data_dir), train)
    fit, validation = split_by_days(train, max(1, int(train["park_day"].nunique() * VALIDATION_SHARE)))
    keys = {
        "fit": assign_training_as_of(fit, BENCHMARK_HORIZON_DAYS, 42).reset_index(drop=True),
        "validation": assign_training_as_of(validation, BENCHMARK_HORIZON_DAYS, 43).reset_index(drop=True),
        "test": test.assign(as_of=PROTOCOL_WINDOW.train_end).reset_index(drop=True),
    }
    features = {name: build_features(keys[name], context) for name in SPLITS}
    loaded = (features, keys, context.park_days, train)
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_bytes(pickle.dumps(loaded))
    return loaded


def parse_metadata(park_days: pd.DataFrame) -> pd.DataFrame:
    """Parse each metadata column that reads as a number or an HH:MM clock time in at least 30% of rows."""
    out = {}
    for column in park_days.columns:
        text = park_days[column].astype(str)
        number = pd.to_numeric(text.str.rstrip("%"), errors="coerce")
        if number.notna().mean() > 0.3:
            out[column] = number
            continue
        clock = text.str.extract(r"^(\d{1,2}):(\d{2})$").astype(float)
        if clock[0].notna().mean() > 0.3:
            out[column] = clock[0] + clock[1] / 60
    return pd.DataFrame(out, index=park_days.index).astype("float64")


def metadata_of(metadata: pd.DataFrame, keys: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    values = metadata[columns].reindex(pd.to_datetime(keys["park_day"]).to_numpy())
    return values.set_axis(keys.index).add_prefix("meta_")


def year_over_year(features: pd.DataFrame, keys: pd.DataFrame, train: pd.DataFrame, window: int = 182) -> pd.DataFrame:
    """Compute the growth of the ride's mean daily wait over `window` days to as-of, against the same days a year before."""
    daily = train.groupby(["ride_code", "park_day"])["wait"].mean()
    rolled = {}
    for ride, part in daily.groupby(level=0):
        part = part.droplevel(0)
        rolled[ride] = part.reindex(pd.date_range(part.index.min(), train["park_day"].max())).rolling(
            window, min_periods=window // 3).mean()
    as_of = pd.to_datetime(keys["as_of"])
    now = np.array([rolled[r].get(d, np.nan) for r, d in zip(keys["ride_code"], as_of)])
    then = np.array([rolled[r].get(d, np.nan) for r, d in zip(keys["ride_code"], as_of - pd.Timedelta(days=364))])
    growth = now / then
    return pd.DataFrame({
        "growth": growth,
        "yoy_last_year_level": features["last_year_level"].to_numpy() * growth,
        "yoy_year_profile_level": features["year_profile_level"].to_numpy() * growth,
    }, index=features.index)


def fit_and_score(name: str, frames: dict, keys: dict, half_life_days: float | None = None) -> None:
    import lightgbm

    keep = [c for c in frames["fit"].columns if frames["fit"][c].nunique() > 1]
    categorical = [c for c in keep if frames["fit"][c].dtype == object]
    frames = {split: frame[keep].copy() for split, frame in frames.items()}
    for split in SPLITS:
        for column in keep:
            if column in categorical:
                frames[split][column] = pd.Categorical(frames[split][column], categories=sorted(frames["fit"][column].unique()))
            else:
                frames[split][column] = frames[split][column].astype("float64")

    def weights(split_keys: list[pd.DataFrame]) -> np.ndarray | None:
        if half_life_days is None:
            return None
        days = pd.to_datetime(pd.concat([k["park_day"] for k in split_keys], ignore_index=True))
        return 0.5 ** ((PROTOCOL_WINDOW.train_end - days).dt.days.to_numpy() / half_life_days)

    params = {
        "objective": "l1", "learning_rate": 0.03, "num_leaves": 63, "min_data_in_leaf": 50, "bagging_fraction": 0.8,
        "bagging_freq": 1, "feature_fraction": 0.8, "seed": 42, "num_threads": 1, "verbose": -1,
    }
    started = time.perf_counter()
    fit_set = lightgbm.Dataset(frames["fit"], keys["fit"]["wait"].to_numpy(), weight=weights([keys["fit"]]))
    validation_set = lightgbm.Dataset(frames["validation"], keys["validation"]["wait"].to_numpy(), reference=fit_set)
    model = lightgbm.train(params, fit_set, 4000, valid_sets=[validation_set],
                           callbacks=[lightgbm.early_stopping(50, verbose=False)])
    truth = keys["test"]["wait"].to_numpy()
    test_mae = np.abs(np.maximum(model.predict(frames["test"], num_iteration=model.best_iteration), 0) - truth).mean()
    everything = pd.concat([frames["fit"], frames["validation"]], ignore_index=True)
    for column in categorical:
        everything[column] = pd.Categorical(everything[column], categories=frames["fit"][column].cat.categories)
    target = np.concatenate([keys["fit"]["wait"].to_numpy(), keys["validation"]["wait"].to_numpy()])
    refit = lightgbm.train(params, lightgbm.Dataset(everything, target, weight=weights([keys["fit"], keys["validation"]])),
                           model.best_iteration)
    refit_mae = np.abs(np.maximum(refit.predict(frames["test"]), 0) - truth).mean()
    print(f"| {name} | {model.best_score['valid_0']['l1']:.2f} | {test_mae:.2f} | {refit_mae:.2f} | "
          f"{model.best_iteration} | {time.perf_counter() - started:.0f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiments", nargs="+",
                        choices=["base", "school", "capacity", "weather", "all_metadata", "yoy", "recency"])
    parser.add_argument("--data-dir", type=Path, default=Path("data/touringplans"))
    parser.add_argument("--cache", type=Path, default=Path("var/feature_probe.pkl"))
    args = parser.parse_args()
    features, keys, park_days, train = load(args.data_dir, args.cache)
    metadata = parse_metadata(park_days)
    groups = {
        "school": [c for c in metadata.columns if "insession" in c.lower()],
        "capacity": [c for c in metadata.columns if c.startswith("CapacityLostWGT_")],
        "weather": [c for c in metadata.columns if c.startswith("WEATHER_")],
        "all_metadata": list(metadata.columns),
    }
    print("| experiment | validation MAE | test MAE | test MAE after refit | trees | seconds |\n|---|---|---|---|---|---|")
    for name in args.experiments:
        if name in groups:
            frames = {s: features[s].join(metadata_of(metadata, keys[s], groups[name])) for s in SPLITS}
        elif name == "yoy":
            frames = {s: features[s].join(year_over_year(features[s], keys[s], train)) for s in SPLITS}
        else:
            frames = dict(features)
        fit_and_score(name, frames, keys, half_life_days=365.0 if name == "recency" else None)


if __name__ == "__main__":
    main()
