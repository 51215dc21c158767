"""The dropout MLP: hyper-parameter checks, .h5 round trip, non-negative output."""

import numpy as np
import pandas as pd
import pytest

from parkcast.models.mlp import (
    HyperParameters,
    InvalidHyperParametersError,
    build_model,
    predict_minutes,
    to_model_inputs,
)
from parkcast.tasks.features import CATEGORICAL_FEATURES, NUMERIC_FEATURES
from parkcast.tasks.predict import load_model_file
from parkcast.tasks.promote import file_sha256


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"dropout_rate": 1.0}, "dropout_rate=1.0"),
        ({"dropout_rate": -0.1}, "dropout_rate=-0.1"),
        ({"dropout_placement": "middle"}, "dropout_placement='middle'"),
        ({"hidden_units": ()}, "hidden_units"),
        ({"learning_rate": 0}, "learning_rate=0"),
        ({"loss": "mse"}, "loss='mse'"),
        ({"output_form": "multiply"}, "output_form='multiply'"),
        ({"batch_size": 0}, "batch_size=0"),
        ({"patience": 0}, "patience=0"),
        ({"max_epochs": 0}, "max_epochs=0"),
    ],
    ids=[
        "rate-one", "rate-negative", "unknown-placement", "no-layers", "zero-learning-rate", "unknown-loss",
        "unknown-output-form", "zero-batch", "zero-patience", "zero-epochs",
    ],
)
def test_invalid_hyperparameter_is_named(values, message):
    with pytest.raises(InvalidHyperParametersError, match=message):
        HyperParameters.parse(**values)


def _synthetic_features(rows: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({name: rng.normal(size=rows) for name in NUMERIC_FEATURES})
    frame["base_level"] = rng.uniform(0, 90, rows)
    for name in CATEGORICAL_FEATURES:
        frame[name] = rng.choice(["a", "b", "c"], rows)
    return frame


@pytest.mark.parametrize(
    ("placement", "batch_norm", "output_form"),
    [("first", False, "add"), ("every", False, "add"), ("first", True, "add"), ("every", True, "add"),
     ("every", False, "scale"), ("first", True, "scale")],
)
def test_h5_round_trip_gives_same_predictions(tmp_path, placement, batch_norm, output_form):
    features = _synthetic_features(256)
    hparams = HyperParameters.parse(
        hidden_units=(16, 8), dropout_rate=0.5, dropout_placement=placement, batch_norm=batch_norm, output_form=output_form
    )
    model = build_model(hparams, features, CATEGORICAL_FEATURES, NUMERIC_FEATURES)
    inputs = to_model_inputs(features, CATEGORICAL_FEATURES, NUMERIC_FEATURES)
    model.fit(inputs, features["base_level"].to_numpy() * 1.1, epochs=1, batch_size=64, verbose=0)
    path = tmp_path / "model.h5"
    model.save(path)

    in_memory = predict_minutes(model, inputs)
    reloaded = load_model_file(path, file_sha256(path))
    first, second = predict_minutes(reloaded, inputs), predict_minutes(reloaded, inputs)
    np.testing.assert_allclose(first, in_memory, rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(first, second)  # dropout inactive at inference


@pytest.mark.parametrize("output_form", ["add", "scale"])
def test_predictions_are_never_negative(output_form):
    features = _synthetic_features(512, seed=1)
    features["base_level"] = 0.0
    hparams = HyperParameters.parse(hidden_units=(8,), output_form=output_form)
    model = build_model(hparams, features, CATEGORICAL_FEATURES, NUMERIC_FEATURES)
    # Push the correction strongly negative: the output must stay at zero or above.
    model.get_layer("correction_minutes").bias.assign([-500.0])
    predicted = predict_minutes(model, to_model_inputs(features, CATEGORICAL_FEATURES, NUMERIC_FEATURES))
    assert predicted.min() >= 0.0


def test_unseen_category_is_accepted_at_prediction():
    features = _synthetic_features(64)
    model = build_model(HyperParameters.parse(hidden_units=(8,)), features, CATEGORICAL_FEATURES, NUMERIC_FEATURES)
    features.loc[0, "ride_code"] = "a_ride_opened_later"
    predicted = predict_minutes(model, to_model_inputs(features, CATEGORICAL_FEATURES, NUMERIC_FEATURES))
    assert np.isfinite(predicted).all()


def test_checksum_mismatch_is_rejected(tmp_path):
    path = tmp_path / "model.h5"
    path.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="fails its checksum"):
        load_model_file(path, "0" * 64)
