"""The MLP as the classic dropout write-up builds it, kept as a benchmark baseline.

Two hidden ReLU layers of 64 units, each followed by dropout 0.1, on one-hot
categorical inputs and standardised numeric inputs, predicting the wait in
minutes directly with a mean squared error loss. It reads the calendar, ride
and park-day metadata features but none of the history features (recent
levels, profiles, base level), because the write-up has no such inputs.
"""

from __future__ import annotations

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from parkcast.tasks.features import BASE_LEVEL, CATEGORICAL_FEATURES, NUMERIC_FEATURES, TREND_FEATURE

__all__ = [
    "CLASSIC_NUMERIC_FEATURES", "CLASSIC_HIDDEN_UNITS", "CLASSIC_DROPOUT_RATE", "build_classic_model", "classic_inputs",
    "predict_classic",
]

# History features are computed from observed waits up to the as-of day.
_HISTORY_FEATURES = {
    "recent_level", "has_recent_level", "recent_hour_level", "has_recent_hour_level",
    "last_year_level", "has_last_year_level", "profile_level", "has_profile_level",
    "year_profile_level", "has_year_profile_level", "horizon_days", BASE_LEVEL,
}
_CALENDAR_NUMERIC = [name for name in NUMERIC_FEATURES if name not in _HISTORY_FEATURES]
# The trend goes after the three day and hour fields, where the product's
# feature list had it when the baseline was first measured, so that the
# same seed gives the same network.
CLASSIC_NUMERIC_FEATURES = [*_CALENDAR_NUMERIC[:3], TREND_FEATURE, *_CALENDAR_NUMERIC[3:]]
CLASSIC_HIDDEN_UNITS = (64, 64)
CLASSIC_DROPOUT_RATE = 0.1
CLASSIC_LEARNING_RATE = 1e-3


def classic_inputs(features: pd.DataFrame) -> dict[str, tf.Tensor]:
    """Turn a feature frame into the classic model's named inputs (missing numbers become 0)."""
    inputs = {"numeric": tf.constant(features[CLASSIC_NUMERIC_FEATURES].fillna(0.0).to_numpy(dtype="float32"))}
    for name in CATEGORICAL_FEATURES:
        inputs[name] = tf.constant(features[name].astype(str).to_numpy().reshape(-1, 1))
    return inputs


def build_classic_model(features: pd.DataFrame, seed: int) -> keras.Model:
    """Build and compile the classic MLP, fitting its scaling and one-hot layers to `features`."""
    keras.utils.set_random_seed(seed)
    numeric_input = keras.Input(shape=(len(CLASSIC_NUMERIC_FEATURES),), name="numeric", dtype="float32")
    normalizer = keras.layers.Normalization(name="numeric_scaling")
    normalizer.adapt(features[CLASSIC_NUMERIC_FEATURES].fillna(0.0).to_numpy(dtype="float32"))
    inputs = {"numeric": numeric_input}
    parts = [normalizer(numeric_input)]
    for name in CATEGORICAL_FEATURES:
        inputs[name] = keras.Input(shape=(1,), name=name, dtype="string")
        vocabulary = sorted(features[name].astype(str).unique())
        parts.append(keras.layers.StringLookup(vocabulary=vocabulary, output_mode="one_hot", name=f"{name}_one_hot")(inputs[name]))
    x = keras.layers.Concatenate(name="all_features")(parts)
    for index, units in enumerate(CLASSIC_HIDDEN_UNITS):
        x = keras.layers.Dense(units, activation="relu", name=f"hidden_{index}")(x)
        x = keras.layers.Dropout(CLASSIC_DROPOUT_RATE, seed=seed + index, name=f"dropout_{index}")(x)
    output = keras.layers.Dense(1, name="wait_minutes")(x)
    model = keras.Model(inputs=inputs, outputs=output, name="classic_mlp")
    model.compile(optimizer=keras.optimizers.Adam(CLASSIC_LEARNING_RATE), loss="mse")
    return model


def predict_classic(model: keras.Model, features: pd.DataFrame) -> np.ndarray:
    """Predict waits in minutes, clipped at zero because the linear output can go below it."""
    predicted = np.asarray(model.predict(classic_inputs(features), batch_size=8192, verbose=0)).reshape(-1)
    return np.maximum(predicted, 0.0)
