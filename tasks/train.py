"""Train dropout-MLP candidates on a time-ordered split and keep the best one."""

from __future__ import annotations

import gc
import threading
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
from parkcast.models.mlp import HyperParameters, ModelAverage, build_model, predict_minutes, to_model_inputs
from parkcast.settings import check_trial_combine
from parkcast.tasks.evaluate import Scores, score
from parkcast.tasks.features import CATEGORICAL_FEATURES, NUMERIC_FEATURES, Context, assign_training_as_of, build_features, mask_metadata

__all__ = [
    "Candidate", "split_by_days", "train_candidate", "best_epoch_count", "fit_all_days", "train_best_candidate", "VALIDATION_SHARE",
    "PROGRESS_ARTIFACT_KEY", "TrainingProgress",
]

# The last share of training park days, in time order, drives early stopping.
VALIDATION_SHARE = 0.1
# Share of training rows whose metadata is hidden, so that days without
# metadata are forecast as well as days with it. 0.1 and no year trend input
# beat 0.3 with the trend on the backtest's validation days, both with their
# metadata and with it hidden. Each change alone won on one and lost on the
# other (docs/benchmarks.md).
METADATA_MASK_SHARE = 0.1
# Key of the Prefect progress artifact that train_best_candidate updates per epoch.
PROGRESS_ARTIFACT_KEY = "training-progress"

# The compiled model the last train_best_candidate call of this process
# trained. The next call trains it again when architecture and vocabularies
# match, so a long-running process (`parkcast serve`, `parkcast replay`)
# traces one set of training functions, not one per retrain. The lock keeps a
# concurrent call in another thread on a model of its own.
_shared_model: keras.Model | None = None
_shared_model_lock = threading.Lock()


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


def _training_split(cells: pd.DataFrame, max_horizon: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split off the validation days and give every cell a random as-of day, repeatably for `seed`."""
    validation_days = max(1, int(cells["park_day"].nunique() * VALIDATION_SHARE))
    fit_cells, validation_cells = split_by_days(cells, validation_days)
    return (assign_training_as_of(fit_cells, max_horizon, seed),
            assign_training_as_of(validation_cells, max_horizon, seed + 1))


def train_candidate(
    cells: pd.DataFrame, context: Context, hparams: HyperParameters, max_horizon: int,
    reuse: keras.Model | None = None, callbacks: list[keras.callbacks.Callback] | None = None,
) -> Candidate:
    """Fit one model on `cells`, early-stopping on its latest park days.

    Training and validation cells get random as-of days up to `max_horizon`
    days back, as the daily job forecasts up to that many days ahead. With
    `reuse`, the fresh model's initial weights and optimizer state are copied
    into `reuse`, which is then trained in its place (see _reset_to), so no
    new training function is traced. The returned candidate's model is then
    `reuse` itself.
    `callbacks` run after early stopping, so they see its final epoch.
    """
    fit_cells, validation_cells = _training_split(cells, max_horizon, hparams.seed)
    fit_features = mask_metadata(build_features(fit_cells, context), METADATA_MASK_SHARE, hparams.seed)
    validation_features = build_features(validation_cells, context)

    model = build_model(hparams, fit_features, CATEGORICAL_FEATURES, NUMERIC_FEATURES)
    if reuse is not None and _reset_to(reuse, model):
        model = reuse
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


def _vocabularies(model: keras.Model) -> dict[str, list[str]]:
    return {layer.name: list(layer.get_vocabulary()) for layer in model.layers
            if isinstance(layer, keras.layers.StringLookup)}


def _shapes(variables) -> list[tuple]:
    return [(tuple(v.shape), str(v.dtype)) for v in variables]


def _reset_to(target: keras.Model, fresh: keras.Model) -> bool:
    """Copy a freshly built model's state into an already trained model of the same architecture.

    The copy covers every model variable (weights, batch-norm statistics,
    Normalization mean and variance, dropout seed state) and the optimizer's
    variables (step count, learning rate, zeroed moments). Returns False, and
    copies nothing, when the models differ in a way the copy cannot carry over:
    another architecture or another StringLookup vocabulary.
    """
    if _shapes(target.variables) != _shapes(fresh.variables):
        return False
    if _vocabularies(target) != _vocabularies(fresh):
        return False
    fresh.optimizer.build(fresh.trainable_variables)
    if _shapes(target.optimizer.variables) != _shapes(fresh.optimizer.variables):
        return False
    for destination, source in zip(target.variables, fresh.variables):
        destination.assign(source.value)
    for destination, source in zip(target.optimizer.variables, fresh.optimizer.variables):
        destination.assign(source.value)
    return True


@task(cache_policy=NONE)
def train_best_candidate(
    cells: pd.DataFrame, context: Context, hparams: HyperParameters, trials: int, max_horizon: int,
    combine: str = "best",
) -> Candidate:
    """Train `trials` candidates with seeds hparams.seed, hparams.seed + 1, ... and combine them into one.

    With `combine` "best", that is the candidate with the lowest validation
    MAE. With "average", it is one model that outputs the mean of all the
    candidates' forecasts (models/mlp.py ModelAverage), scored on the first
    candidate's validation cells. It keeps that candidate's seed and the best
    candidate's learning curve.

    Every trial trains the same compiled Keras model, reset to the fresh
    initial state of its own seed. A new model per trial made TensorFlow trace
    new training functions each time, and the traced graphs stayed in memory
    after keras.backend.clear_session(): peak RSS grew about 10 MiB per trial
    (TensorFlow 2.21, Keras 3.15). With "best", only the best trial's
    weights are kept, as NumPy arrays, so memory does not grow with `trials`.
    With "average", each trial adds a copy of its layers, untraced. The next
    call in the same process starts from this call's compiled model when it
    fits (see _shared_model), so memory does not grow with retrains either.
    With "best", the returned model is that shared object, and the next call
    resets it. The result is repeatable for the same data, seed and trial
    count, and the tests find a reused model equal to a new one. Inside a
    Prefect task run, the progress artifact PROGRESS_ARTIFACT_KEY goes from 0
    to 100 percent over the trials' epochs.

    NOTE: in the 2019 replay, 3 of 53 challengers scored differently with a
    reused model than with new ones (docs/benchmarks.md), for a reason not
    known.
    """
    global _shared_model
    check_trial_combine(combine)
    logger = get_logger()
    owns_shared = _shared_model_lock.acquire(blocking=False)
    model: keras.Model | None = _shared_model if owns_shared else None
    try:
        best, trained = _train_trials(cells, context, hparams, trials, max_horizon, model, combine, logger)
        if owns_shared:
            _shared_model = trained
        return best
    finally:
        if owns_shared:
            _shared_model_lock.release()


def _train_trials(cells: pd.DataFrame, context: Context, hparams: HyperParameters, trials: int, max_horizon: int,
                  model: keras.Model | None, combine: str, logger) -> tuple[Candidate, keras.Model]:
    """Train the trials on `model`, or on a new one, and return the combined candidate and the compiled model."""
    if model is None:
        # Reset Keras's global state (layer names, seeds) left by earlier
        # models. It does not free their traced graphs, so only reusing one
        # compiled model keeps those from piling up.
        keras.backend.clear_session()
        gc.collect()
    artifact_id = None
    if TaskRunContext.get() is not None:
        artifact_id = create_progress_artifact(
            0.0, key=PROGRESS_ARTIFACT_KEY, description=f"Training {trials} candidate(s), up to {hparams.max_epochs} epochs each")
    best: Candidate | None = None
    best_model: keras.Model | None = None
    best_weights: list[np.ndarray] = []
    average = ModelAverage() if combine == "average" and trials > 1 else None
    with progress_bar("Training trials", trials) as trial_bar:
        for trial in range(trials):
            with progress_bar(f"Trial {trial + 1} epochs", hparams.max_epochs) as epoch_bar:
                reporter = TrainingProgress(artifact_id, trial, trials, hparams.max_epochs, epoch_bar)
                candidate = train_candidate(cells, context, hparams.model_copy(update={"seed": hparams.seed + trial}),
                                            max_horizon, reuse=model, callbacks=[reporter])
            trial_bar.advance()
            if model is not None and candidate.model is not model and trial == 0:
                logger.info("The previous retrain's compiled model has another vocabulary or shape, "
                            "so this retrain traced a new one")
            elif model is not None and candidate.model is not model:
                logger.warning("Trial %d/%d could not reuse the compiled model (another vocabulary or shape), "
                               "so it traced a new one", trial + 1, trials)
            model = candidate.model
            if average is not None:
                average.add(model)
            logger.info(
                "Trial %d/%d: validation MAE %.2f min after %d epochs",
                trial + 1, trials, candidate.validation.mae, len(candidate.history["loss"]),
            )
            if best is None or candidate.validation.mae < best.validation.mae:
                best, best_model, best_weights = candidate, model, model.get_weights()
    # The shared model contains the last trial's weights, so restore the best trial's.
    best_model.set_weights(best_weights)
    if average is not None:
        return _average_candidate(average.build(), best, best_model, cells, context, hparams, max_horizon, logger), best_model
    best.model = best_model
    return best, best_model


def _average_candidate(model: keras.Model, best: Candidate, best_model: keras.Model, cells: pd.DataFrame,
                       context: Context, hparams: HyperParameters, max_horizon: int, logger) -> Candidate:
    """Score the averaged model on the first trial's validation cells."""
    _, validation_cells = _training_split(cells, max_horizon, hparams.seed)
    inputs = to_model_inputs(build_features(validation_cells, context), CATEGORICAL_FEATURES, NUMERIC_FEATURES)
    observed = validation_cells["wait"].to_numpy()
    validation = score(observed, predict_minutes(model, inputs))
    # Each trial drew its own as-of days, so the best trial is scored again on the same cells for the log.
    logger.info("Average of the trials: validation MAE %.2f min on the first trial's validation cells, "
                "where the best trial scores %.2f", validation.mae, score(observed, predict_minutes(best_model, inputs)).mae)
    return Candidate(model=model, hparams=hparams, history=best.history, validation=validation,
                     train_start=best.train_start, train_end=best.train_end)
