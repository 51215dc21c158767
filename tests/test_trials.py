"""Retrain trials: memory stays flat across trials, and the best trial or the average of all is returned."""

from __future__ import annotations

import gc
import tracemalloc

import keras
import numpy as np
import pandas as pd
import pytest
from tensorflow.python.framework.func_graph import FuncGraph

from parkcast.db import make_engine, migrate
from parkcast.models.mlp import HyperParameters, predict_minutes, to_model_inputs
from parkcast.tasks import train
from parkcast.tasks.features import (
    CATEGORICAL_FEATURES, NUMERIC_FEATURES, build_features, load_cells, load_context, with_history,
)
from parkcast.tasks.ingest import ingest_folder
from parkcast.tasks.registry import file_sha256, load_model_file
from tests.conftest import write_slice

pytestmark = pytest.mark.slow

# Small enough that 20 trials stay cheap; the memory checks count objects and
# bytes, never time.
TINY = dict(hidden_units=(16,), max_epochs=1, batch_size=256, patience=1)


@pytest.fixture(scope="module")
def one_ride(tmp_path_factory):
    """Cells and context of one real ride for six weeks of 2019."""
    folder = tmp_path_factory.mktemp("one_ride")
    engine = make_engine(f"sqlite:///{folder / 'parkcast.db'}")
    migrate(engine)
    ingest_folder.fn(engine, write_slice(folder / "slice", ["soarin"], "01/01/2019", "02/11/2019"), 500)
    cells = load_cells.fn(engine)
    context = with_history(load_context.fn(engine), cells)
    engine.dispose()
    return cells, context


def _count(kind: type) -> int:
    return sum(1 for item in gc.get_objects() if isinstance(item, kind))


def test_trials_memory_bounded(one_ride, monkeypatch):
    """Python allocations, live models and traced graphs after trial 20 match those after trial 2."""
    cells, context = one_ride
    real_train_candidate = train.train_candidate
    after_trial: list[dict[str, int]] = []

    def measured_train_candidate(*args, **kwargs):
        candidate = real_train_candidate(*args, **kwargs)
        gc.collect()
        after_trial.append({
            "python_bytes": tracemalloc.get_traced_memory()[0],
            "models": _count(keras.Model),
            "traced_graphs": _count(FuncGraph),
        })
        return candidate

    monkeypatch.setattr(train, "train_candidate", measured_train_candidate)
    tracemalloc.start()
    try:
        best = train.train_best_candidate.fn(cells, context, HyperParameters.parse(seed=3, **TINY), 20, 7)
    finally:
        tracemalloc.stop()

    assert len(after_trial) == 20
    second, last = after_trial[1], after_trial[-1]
    # A new compiled model per trial kept 1.2 to 3.6 MiB of traced graphs per
    # trial alive (TensorFlow 2.21, without and with clear_session), so 18
    # more trials would add at least 20 MiB.
    assert last["python_bytes"] <= second["python_bytes"] + 2 * 2**20, after_trial
    assert last["models"] <= second["models"], after_trial
    assert last["traced_graphs"] <= second["traced_graphs"], after_trial
    assert best.hparams.seed in range(3, 23)


def test_trials_return_best_weights(one_ride, monkeypatch):
    """The returned model contains the weights of the trial with the lowest validation MAE."""
    cells, context = one_ride
    real_train_candidate = train.train_candidate
    trials: list[tuple[float, int, list[np.ndarray]]] = []

    def recording_train_candidate(*args, **kwargs):
        candidate = real_train_candidate(*args, **kwargs)
        trials.append((candidate.validation.mae, candidate.hparams.seed, candidate.model.get_weights()))
        return candidate

    monkeypatch.setattr(train, "train_candidate", recording_train_candidate)
    hparams = HyperParameters.parse(seed=11, **TINY)
    best = train.train_best_candidate.fn(cells, context, hparams, 3, 7)

    best_mae, best_seed, best_weights = min(trials, key=lambda trial: trial[0])
    assert len({seed for _, seed, _ in trials}) == 3
    assert best.validation.mae == best_mae
    assert best.hparams.seed == best_seed
    for actual, expected in zip(best.model.get_weights(), best_weights, strict=True):
        np.testing.assert_array_equal(actual, expected)

    # Same data, seed and trial count: the same trials again.
    first_run = [mae for mae, _, _ in trials]
    again = train.train_best_candidate.fn(cells, context, hparams, 3, 7)
    assert [mae for mae, _, _ in trials[3:]] == first_run
    assert again.validation.mae == best.validation.mae


def test_retrains_reuse_compiled_model(one_ride):
    """Later calls train the first call's compiled model again: no new traced graphs, same results."""
    cells, context = one_ride
    hparams, first = _first_retrain(cells, context)
    first_weights = first.model.get_weights()
    gc.collect()
    graphs_after_first = _count(FuncGraph)

    for _ in range(4):
        again = train.train_best_candidate.fn(cells, context, hparams, 1, 7)
    gc.collect()

    assert again.model is first.model
    assert _count(FuncGraph) <= graphs_after_first
    assert again.validation.mae == first.validation.mae
    _assert_same_weights(again.model.get_weights(), first_weights)


def test_new_vocabulary_builds_new_model(one_ride):
    """A retrain whose data has another vocabulary trains a new model and leaves the old one untouched."""
    cells, context = one_ride
    hparams, first = _first_retrain(cells, context)
    first_weights = first.model.get_weights()
    # Dropping the night hours changes the hour vocabulary of the StringLookup layer.
    day_hours = cells[cells["hour"].between(9, 20)]
    other = train.train_best_candidate.fn(day_hours, context, hparams, 1, 7)

    assert other.model is not first.model
    _assert_same_weights(first.model.get_weights(), first_weights)


def test_concurrent_retrain_gets_own_model(one_ride):
    """While another thread has the shared model's lock, a call trains a model of its own."""
    cells, context = one_ride
    hparams, first = _first_retrain(cells, context)
    with train._shared_model_lock:
        other = train.train_best_candidate.fn(cells, context, hparams, 1, 7)
    assert other.model is not first.model
    assert train._shared_model is first.model
    assert other.validation.mae == first.validation.mae


def test_reused_model_matches_fresh_on_new_data(one_ride):
    """A retrain on new data gives the same model whether it reuses the compiled model or builds one."""
    cells, context = one_ride
    # Busier waits change the history features and so their scaling
    # statistics, but not the categorical vocabularies.
    busier = cells.assign(wait=cells["wait"] * 1.5 + 10.0)
    busier_context = with_history(context, busier)
    hparams, first = _first_retrain(cells, context)
    reused = train.train_best_candidate.fn(busier, busier_context, hparams, 1, 7)
    assert reused.model is first.model
    reused_weights = reused.model.get_weights()
    reused_predictions = reused.model.predict(_inputs_of(busier, busier_context), verbose=0)

    train._shared_model = None
    fresh = train.train_best_candidate.fn(busier, busier_context, hparams, 1, 7)

    assert fresh.model is not reused.model
    assert reused.validation.mae == fresh.validation.mae
    _assert_same_weights(reused_weights, fresh.model.get_weights())
    np.testing.assert_array_equal(reused_predictions, fresh.model.predict(_inputs_of(busier, busier_context), verbose=0))


def _first_retrain(cells, context):
    """Drop the process's shared model, then run one retrain that builds a new one."""
    hparams = HyperParameters.parse(seed=5, **TINY)
    train._shared_model = None
    return hparams, train.train_best_candidate.fn(cells, context, hparams, 1, 7)


def _assert_same_weights(actual_weights, expected_weights):
    for actual, expected in zip(actual_weights, expected_weights, strict=True):
        np.testing.assert_array_equal(actual, expected)


def _inputs_of(cells, context):
    keys = cells[["ride_code", "park_day", "hour"]].assign(as_of=cells["park_day"] - pd.Timedelta(days=1))
    return to_model_inputs(build_features(keys, context), CATEGORICAL_FEATURES, NUMERIC_FEATURES)


def test_average_of_trials_forecasts_their_mean(one_ride, monkeypatch, tmp_path):
    """With combine="average" the model forecasts the mean of the trials, also after an .h5 round trip."""
    cells, context = one_ride
    keys = cells.assign(as_of=cells["park_day"].min())
    inputs = to_model_inputs(build_features(keys, context), CATEGORICAL_FEATURES, NUMERIC_FEATURES)
    real_train_candidate = train.train_candidate
    forecasts: list[np.ndarray] = []

    def recording_train_candidate(*args, **kwargs):
        candidate = real_train_candidate(*args, **kwargs)
        forecasts.append(predict_minutes(candidate.model, inputs))
        return candidate

    monkeypatch.setattr(train, "train_candidate", recording_train_candidate)
    hparams = HyperParameters.parse(seed=11, **TINY)
    average = train.train_best_candidate.fn(cells, context, hparams, 3, 7, "average")

    assert len(forecasts) == 3
    # Three different trials, so the mean differs from each of them.
    assert all(np.abs(forecast - np.mean(forecasts, axis=0)).max() > 0.01 for forecast in forecasts)
    expected = np.mean(forecasts, axis=0)
    np.testing.assert_allclose(predict_minutes(average.model, inputs), expected, rtol=1e-5, atol=1e-4)
    assert average.hparams.seed == 11
    assert average.model is not train._shared_model

    # The validation score is the average's own, on the first trial's validation cells.
    _, validation_cells = train._training_split(cells, 7, 11)
    validation_inputs = to_model_inputs(build_features(validation_cells, context), CATEGORICAL_FEATURES, NUMERIC_FEATURES)
    by_hand = np.abs(predict_minutes(average.model, validation_inputs) - validation_cells["wait"].to_numpy()).mean()
    assert average.validation.mae == pytest.approx(by_hand, rel=1e-6)

    path = tmp_path / "average.h5"
    average.model.save(path)
    reloaded = load_model_file(path, file_sha256(path))
    first, second = predict_minutes(reloaded, inputs), predict_minutes(reloaded, inputs)
    np.testing.assert_allclose(first, predict_minutes(average.model, inputs), rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(first, second)


def test_average_leaves_compiled_model_for_next_retrain(one_ride):
    """After an averaged retrain, a "best" retrain still trains the shared compiled model, with no new graph."""
    cells, context = one_ride
    hparams = HyperParameters.parse(seed=11, **TINY)
    train.train_best_candidate.fn(cells, context, hparams, 2, 7, "average")
    gc.collect()
    graphs = _count(FuncGraph)
    best = train.train_best_candidate.fn(cells, context, hparams, 2, 7, "best")
    gc.collect()
    assert best.model is train._shared_model
    assert _count(FuncGraph) <= graphs


def test_unknown_combine_is_rejected(one_ride):
    cells, context = one_ride
    with pytest.raises(ValueError, match=r"combine='median' is not a way to combine trials; use one of best, average"):
        train.train_best_candidate.fn(cells, context, HyperParameters.parse(**TINY), 2, 7, "median")
