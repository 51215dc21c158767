"""Train dropout-MLP candidates on a time-ordered split and keep the best one."""

from __future__ import annotations

import gc
from dataclasses import dataclass

import keras
import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NONE

from parkcast.logs import get_logger
from parkcast.models.mlp import HyperParameters, build_model, predict_minutes, to_model_inputs
from parkcast.tasks.evaluate import Scores, score
from parkcast.tasks.features import CATEGORICAL_FEATURES, NUMERIC_FEATURES, Context, assign_training_as_of, build_features, mask_metadata

__all__ = [
    "Candidate", "split_by_days", "train_candidate", "best_epoch_count", "fit_all_days", "train_best_candidate", "VALIDATION_SHARE",
]

# The last share of training park days, in time order, drives early stopping.
VALIDATION_SHARE = 0.1
# Share of training rows whose metadata is hidden, so that days without
# metadata are forecast as well as days with it.
METADATA_MASK_SHARE = 0.3


@dataclass
class Candidate:
    """One trained model with its learning curve and validation scores."""

    model: keras.Model
    hparams: HyperParameters
    history: dict[str, list[float]]
    validation: Scores
    train_start: pd.Timestamp
    train_end: pd.Timestamp


def split_by_days(cells: pd.DataFrame, last_days: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split cells into everything before the last `last_days` park days and those days."""
    days = np.sort(cells["park_day"].unique())
    if len(days) <= last_days:
        raise ValueError(
            f"only {len(days)} park days of observations, but {last_days} are needed for the later slice alone; "
            "ingest more history or lower PARKCAST_EVALUATION_DAYS"
        )
    cutoff = days[-last_days]
    return cells[cells["park_day"] < cutoff], cells[cells["park_day"] >= cutoff]


def train_candidate(cells: pd.DataFrame, context: Context, hparams: HyperParameters, max_horizon: int) -> Candidate:
    """Fit one model on `cells`, early-stopping on its latest park days.

    Training and validation cells get random as-of days up to `max_horizon`
    days back, as the daily job forecasts up to that many days ahead.
    """
    validation_days = max(1, int(cells["park_day"].nunique() * VALIDATION_SHARE))
    fit_cells, validation_cells = split_by_days(cells, validation_days)
    fit_cells = assign_training_as_of(fit_cells, max_horizon, hparams.seed)
    validation_cells = assign_training_as_of(validation_cells, max_horizon, hparams.seed + 1)
    fit_features = mask_metadata(build_features(fit_cells, context), METADATA_MASK_SHARE, hparams.seed)
    validation_features = build_features(validation_cells, context)

    model = build_model(hparams, fit_features, CATEGORICAL_FEATURES, NUMERIC_FEATURES)
    fit_inputs = to_model_inputs(fit_features, CATEGORICAL_FEATURES, NUMERIC_FEATURES)
    validation_inputs = to_model_inputs(validation_features, CATEGORICAL_FEATURES, NUMERIC_FEATURES)
    stop = keras.callbacks.EarlyStopping(patience=hparams.patience, restore_best_weights=True)
    history = model.fit(
        fit_inputs,
        fit_cells["wait"].to_numpy(dtype="float32"),
        validation_data=(validation_inputs, validation_cells["wait"].to_numpy(dtype="float32")),
        epochs=hparams.max_epochs,
        batch_size=hparams.batch_size,
        shuffle=True,
        callbacks=[stop],
        verbose=0,
    )
    predicted = predict_minutes(model, validation_inputs)
    return Candidate(
        model=model,
        hparams=hparams,
        history={k: [float(v) for v in values] for k, values in history.history.items()},
        validation=score(validation_cells["wait"].to_numpy(), predicted),
        train_start=cells["park_day"].min(),
        train_end=cells["park_day"].max(),
    )


def best_epoch_count(candidate: Candidate) -> int:
    """Return the epoch with the lowest validation loss, counted from 1 (the weights early stopping kept)."""
    return int(np.argmin(candidate.history["val_loss"])) + 1


def fit_all_days(cells: pd.DataFrame, context: Context, hparams: HyperParameters, max_horizon: int, epochs: int) -> keras.Model:
    """Fit one model on every park day of `cells` for a fixed number of epochs, with no validation slice.

    Use it after train_candidate has chosen `epochs` by early stopping, so that
    the latest days, which train_candidate holds out, are learned from too.
    """
    cells = assign_training_as_of(cells, max_horizon, hparams.seed)
    features = mask_metadata(build_features(cells, context), METADATA_MASK_SHARE, hparams.seed)
    model = build_model(hparams, features, CATEGORICAL_FEATURES, NUMERIC_FEATURES)
    model.fit(
        to_model_inputs(features, CATEGORICAL_FEATURES, NUMERIC_FEATURES),
        cells["wait"].to_numpy(dtype="float32"),
        epochs=epochs,
        batch_size=hparams.batch_size,
        shuffle=True,
        verbose=0,
    )
    return model


@task(cache_policy=NONE)
def train_best_candidate(
    cells: pd.DataFrame, context: Context, hparams: HyperParameters, trials: int, max_horizon: int
) -> Candidate:
    """Train `trials` candidates with seeds hparams.seed, +1, ...; return the best on validation."""
    logger = get_logger()
    best: Candidate | None = None
    for trial in range(trials):
        # Drop the previous trial's graph and tensors before the next one.
        # TODO: peak RSS still grows about 10 MiB per trial (benchmarks/trial_memory.py).
        keras.backend.clear_session()
        gc.collect()
        candidate = train_candidate(cells, context, hparams.model_copy(update={"seed": hparams.seed + trial}), max_horizon)
        logger.info(
            "Trial %d/%d: validation MAE %.2f min after %d epochs",
            trial + 1, trials, candidate.validation.mae, len(candidate.history["loss"]),
        )
        if best is None or candidate.validation.mae < best.validation.mae:
            best = candidate
    return best
