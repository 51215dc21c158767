"""Train dropout-MLP candidates on a time-ordered split and keep the best one."""

from __future__ import annotations

import gc
from dataclasses import dataclass

import keras
import numpy as np
import pandas as pd
from prefect import task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.cache_policies import NONE
from prefect.context import TaskRunContext

from parkcast.logs import get_logger
from parkcast.progress import ProgressBar, progress_bar
from parkcast.models.mlp import HyperParameters, build_model, predict_minutes, to_model_inputs
from parkcast.tasks.evaluate import Scores, score
from parkcast.tasks.features import CATEGORICAL_FEATURES, NUMERIC_FEATURES, Context, assign_training_as_of, build_features, mask_metadata

__all__ = ["Candidate", "split_by_days", "train_candidate", "train_best_candidate", "VALIDATION_SHARE",
           "PROGRESS_ARTIFACT_KEY", "TrainingProgress"]

# The last share of training park days, in time order, drives early stopping.
VALIDATION_SHARE = 0.1
# Share of training rows whose metadata is hidden, so that days without
# metadata are forecast as well as days with it.
METADATA_MASK_SHARE = 0.3
# Key of the Prefect progress artifact that train_best_candidate updates per epoch.
PROGRESS_ARTIFACT_KEY = "training-progress"


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


class TrainingProgress(keras.callbacks.Callback):
    """Keras callback that reports each finished epoch to a Prefect progress artifact and a CLI bar.

    Progress is the share of the planned epochs of all trials, in percent.
    A trial that stops early counts as complete when its training ends.
    """

    def __init__(self, artifact_id, trial: int, trials: int, max_epochs: int, bar: ProgressBar) -> None:
        super().__init__()
        self.artifact_id = artifact_id
        self.trial = trial
        self.trials = trials
        self.max_epochs = max_epochs
        self.bar = bar

    def _percent(self, epochs_done: int) -> float:
        return 100.0 * (self.trial + epochs_done / self.max_epochs) / self.trials

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.bar.advance()
        if self.artifact_id is None:
            return
        val_loss = (logs or {}).get("val_loss")
        loss_text = f", validation loss {val_loss:.2f}" if val_loss is not None else ""
        update_progress_artifact(
            self.artifact_id, self._percent(epoch + 1),
            description=f"Trial {self.trial + 1}/{self.trials}, epoch {epoch + 1}/{self.max_epochs}{loss_text}",
        )

    def on_train_end(self, logs: dict | None = None) -> None:
        if self.artifact_id is not None:
            update_progress_artifact(self.artifact_id, self._percent(self.max_epochs),
                                     description=f"Trial {self.trial + 1}/{self.trials} finished")


def train_candidate(cells: pd.DataFrame, context: Context, hparams: HyperParameters, max_horizon: int,
                    callbacks: list[keras.callbacks.Callback] | None = None) -> Candidate:
    """Fit one model on `cells`, early-stopping on its latest park days.

    Training and validation cells get random as-of days up to `max_horizon`
    days back, as the daily job forecasts up to that many days ahead.
    `callbacks` run after early stopping, so they see its final epoch.
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
        callbacks=[stop, *(callbacks or [])],
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


@task(cache_policy=NONE)
def train_best_candidate(
    cells: pd.DataFrame, context: Context, hparams: HyperParameters, trials: int, max_horizon: int
) -> Candidate:
    """Train `trials` candidates with seeds hparams.seed, +1, ...; return the best on validation.

    Inside a Prefect task run, the progress artifact PROGRESS_ARTIFACT_KEY
    goes from 0 to 100 percent over the trials' epochs.
    """
    logger = get_logger()
    artifact_id = None
    if TaskRunContext.get() is not None:
        artifact_id = create_progress_artifact(
            0.0, key=PROGRESS_ARTIFACT_KEY, description=f"Training {trials} candidate(s), up to {hparams.max_epochs} epochs each")
    best: Candidate | None = None
    with progress_bar("Training trials", trials) as trial_bar:
        for trial in range(trials):
            # Drop the previous trial's graph and tensors before the next one.
            # TODO: peak RSS still grows about 10 MiB per trial (benchmarks/trial_memory.py).
            keras.backend.clear_session()
            gc.collect()
            with progress_bar(f"Trial {trial + 1} epochs", hparams.max_epochs) as epoch_bar:
                reporter = TrainingProgress(artifact_id, trial, trials, hparams.max_epochs, epoch_bar)
                candidate = train_candidate(cells, context, hparams.model_copy(update={"seed": hparams.seed + trial}),
                                            max_horizon, callbacks=[reporter])
            trial_bar.advance()
            logger.info(
                "Trial %d/%d: validation MAE %.2f min after %d epochs",
                trial + 1, trials, candidate.validation.mae, len(candidate.history["loss"]),
            )
            if best is None or candidate.validation.mae < best.validation.mae:
                best = candidate
    return best
