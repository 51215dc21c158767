"""Probe changes to the MLP's inputs and training data on the WDW-2019H2 protocol.

Each experiment trains one MLP per seed the way tasks/train.py does (same
split, as-of days, early stopping and default hyper-parameters), with one
change. It prints three MAEs per seed. The first is on the validation days,
the number to choose by. The second is on the same days with the metadata of
every row hidden, which shows how the model forecasts days beyond the
metadata (the daily job's December 2021 window has none). The third is on
the test window. Not a timed benchmark.

    .venv/bin/python bench/mlp_probe.py --seeds 42,43,44 current old trend mask_0.3 mask_0 copies_mask_0.3 as_of_x2 recency_730
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from parkcast.models.mlp import HyperParameters, build_model, predict_minutes, to_model_inputs
from parkcast.settings import REPO_ROOT
from parkcast.tasks.backtest import (
    BENCHMARK_HORIZON_DAYS, TRAIN_END, load_benchmark_cells, load_benchmark_context, split_benchmark,
)
from parkcast.tasks.evaluate import score
from parkcast.tasks.features import (
    CATEGORICAL_FEATURES, NUMERIC_FEATURES, TREND_FEATURE, assign_training_as_of, build_features, mask_metadata,
    with_history,
)
from parkcast.tasks.train import METADATA_MASK_SHARE, _training_split

# The product's numeric inputs with the year trend where it stood before it was dropped.
WITH_TREND = [*NUMERIC_FEATURES[:3], TREND_FEATURE, *NUMERIC_FEATURES[3:]]


@dataclass(frozen=True)
class Change:
    """One change to the product's training. Fields left at their defaults keep the product's settings."""

    numeric: tuple[str, ...] = tuple(NUMERIC_FEATURES)
    mask_share: float = METADATA_MASK_SHARE
    masked_copies_share: float = 0.0  # add masked copies of this share of rows, keep every row unmasked
    as_of_copies: int = 1  # each fit cell this many times, with other random as-of days
    recency_halflife_days: float | None = None  # sample weights halving every this many days before validation


EXPERIMENTS = {
    "current": Change(),
    "old": Change(numeric=tuple(WITH_TREND), mask_share=0.3),
    "trend": Change(numeric=tuple(WITH_TREND)),
    "mask_0.3": Change(mask_share=0.3),
    "mask_0": Change(mask_share=0.0),
    "copies_mask_0.3": Change(mask_share=0.0, masked_copies_share=0.3),
    "as_of_x2": Change(as_of_copies=2),
    "recency_730": Change(recency_halflife_days=730.0),
}


def run(change: Change, seed: int, train: pd.DataFrame, test: pd.DataFrame, context) -> dict:
    keras.backend.clear_session()
    hparams = HyperParameters(seed=seed)
    numeric = list(change.numeric)
    fit_cells, validation_cells = _training_split(train, BENCHMARK_HORIZON_DAYS, seed)
    if change.as_of_copies > 1:
        extra = [assign_training_as_of(fit_cells, BENCHMARK_HORIZON_DAYS, seed + 100 * k) for k in range(1, change.as_of_copies)]
        fit_cells = pd.concat([fit_cells, *extra], ignore_index=True)
    fit_features = mask_metadata(build_features(fit_cells, context), change.mask_share, seed)
    if change.masked_copies_share:
        rows = np.random.default_rng(seed + 7).random(len(fit_cells)) < change.masked_copies_share
        copies = mask_metadata(fit_features[rows].reset_index(drop=True), 1.0, seed)
        fit_features = pd.concat([fit_features, copies], ignore_index=True)
        fit_cells = pd.concat([fit_cells, fit_cells[rows]], ignore_index=True)
    weights = None
    if change.recency_halflife_days:
        age = (validation_cells["park_day"].min() - pd.to_datetime(fit_cells["park_day"])).dt.days.to_numpy()
        weights = 0.5 ** (age / change.recency_halflife_days)
        weights = (weights / weights.mean()).astype("float32")

    validation_features = build_features(validation_cells, context)
    test_features = build_features(test[["ride_code", "park_day", "hour"]].assign(as_of=TRAIN_END), context)
    model = build_model(hparams, fit_features, CATEGORICAL_FEATURES, numeric)
    validation_inputs = to_model_inputs(validation_features, CATEGORICAL_FEATURES, numeric)
    history = model.fit(
        to_model_inputs(fit_features, CATEGORICAL_FEATURES, numeric), fit_cells["wait"].to_numpy(dtype="float32"),
        sample_weight=weights,
        validation_data=(validation_inputs, validation_cells["wait"].to_numpy(dtype="float32")),
        epochs=hparams.max_epochs, batch_size=hparams.batch_size, shuffle=True, verbose=0,
        callbacks=[keras.callbacks.EarlyStopping(patience=hparams.patience, restore_best_weights=True)],
    )
    hidden = mask_metadata(validation_features, 1.0, seed)
    observed = validation_cells["wait"].to_numpy()
    return {
        "seed": seed,
        "validation": score(observed, predict_minutes(model, validation_inputs)).mae,
        "validation_no_metadata": score(observed, predict_minutes(model, to_model_inputs(hidden, CATEGORICAL_FEATURES, numeric))).mae,
        "test": score(test["wait"].to_numpy(), predict_minutes(model, to_model_inputs(test_features, CATEGORICAL_FEATURES, numeric))).mae,
        "epochs": len(history.history["loss"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiments", nargs="+", choices=sorted(EXPERIMENTS))
    parser.add_argument("--seeds", default="42", help="comma-separated seeds, one MLP each")
    parser.add_argument("--data-dir", default=str(REPO_ROOT / "data" / "touringplans"))
    args = parser.parse_args()
    seeds = [int(seed) for seed in args.seeds.split(",")]
    data_dir = Path(args.data_dir)
    train, test = split_benchmark(load_benchmark_cells(data_dir))
    context = with_history(load_benchmark_context(data_dir), train)
    rows = []
    for name in args.experiments:
        results = [run(EXPERIMENTS[name], seed, train, test, context) for seed in seeds]
        for result in results:
            print(json.dumps({"experiment": name, **{k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()}}), flush=True)
        means = {key: np.mean([result[key] for result in results]) for key in ("validation", "validation_no_metadata", "test")}
        rows.append(f"| {name} | {means['validation']:.2f} | {means['validation_no_metadata']:.2f} | {means['test']:.2f} |")
    print(f"\nMeans over seeds {args.seeds}:\n")
    print("| experiment | validation MAE | validation MAE, metadata hidden | test MAE |")
    print("|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
