"""The dropout multilayer perceptron that maps raw features to a wait in minutes."""

from __future__ import annotations

import os
from typing import Literal

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import pandas as pd
import tensorflow as tf
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from parkcast.tasks.features import BASE_LEVEL

# Name of the model input that carries the base level in minutes.
BASE_INPUT = "base_level_minutes"

__all__ = [
    "HyperParameters", "InvalidHyperParametersError", "build_model", "ModelAverage", "to_model_inputs", "predict_minutes",
]


class InvalidHyperParametersError(ValueError):
    """A hyper-parameter is outside its allowed range."""


class HyperParameters(BaseModel):
    """Architecture and training settings of one MLP; validated on creation."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    hidden_units: tuple[int, ...] = Field(default=(256, 128, 64), min_length=1)
    # Defaults of dropout and batch norm: the winner of `parkcast sweep`, see docs/benchmarks.md.
    dropout_rate: float = Field(default=0.0, ge=0.0, lt=1.0)
    dropout_placement: Literal["first", "every"] = "first"
    batch_norm: bool = True
    loss: Literal["mae", "huber"] = "mae"
    # How the network's output meets the base level. "add" adds a correction
    # in minutes. "scale" multiplies the base by exp(a learned log-factor) and
    # then adds the correction, so that busy rides get proportional changes.
    output_form: Literal["add", "scale"] = "add"
    # 1e-4 beat 3e-4 on the backtest's validation slice (13.28 vs 13.46 min
    # MAE) and tied 3e-5 there at less than half the epochs (docs/benchmarks.md).
    learning_rate: float = Field(default=1e-4, gt=0.0, le=1.0)
    batch_size: int = Field(default=1024, ge=1)
    max_epochs: int = Field(default=40, ge=1)
    patience: int = Field(default=6, ge=1)
    seed: int = 42

    @classmethod
    def parse(cls, **values: object) -> "HyperParameters":
        """Validate `values`, raising InvalidHyperParametersError that names each bad one."""
        try:
            return cls(**values)
        except ValidationError as error:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}={e.get('input')!r}: {e['msg']}" for e in error.errors()
            )
            raise InvalidHyperParametersError(f"invalid hyper-parameters: {problems}") from None


def to_model_inputs(features: pd.DataFrame, categorical: list[str], numeric: list[str]) -> dict[str, tf.Tensor]:
    """Turn a feature frame into the model's named inputs.

    Missing numeric values become 0; the has_metadata feature tells the model
    which rows had no metadata. Categorical values are passed as strings.
    """
    inputs = {"numeric": tf.constant(features[numeric].fillna(0.0).to_numpy(dtype="float32"))}
    inputs[BASE_INPUT] = tf.constant(features[[BASE_LEVEL]].fillna(0.0).to_numpy(dtype="float32"))
    for name in categorical:
        inputs[name] = tf.constant(features[name].astype(str).to_numpy().reshape(-1, 1))
    return inputs


def build_model(
    hparams: HyperParameters,
    features: pd.DataFrame,
    categorical: list[str],
    numeric: list[str],
) -> keras.Model:
    """Build and compile the MLP, fitting its preprocessing layers to `features`.

    The Normalization and StringLookup layers are part of the model, so the
    saved .h5 file maps raw feature values to minutes on its own. Values of a
    categorical feature never seen in training map to an out-of-vocabulary slot.
    """
    keras.utils.set_random_seed(hparams.seed)
    numeric_input = keras.Input(shape=(len(numeric),), name="numeric", dtype="float32")
    normalizer = keras.layers.Normalization(name="numeric_scaling")
    normalizer.adapt(features[numeric].fillna(0.0).to_numpy(dtype="float32"))
    # adapt() leaves tensor copies of the statistics in `mean` and `variance`
    # (Keras 3.15), and a traced training function keeps using those copies.
    # Pointing both at the variables makes a compiled model that is reused for
    # new data (tasks/train.py) scale with the statistics assigned to it.
    normalizer.mean, normalizer.variance = normalizer.adapt_mean, normalizer.adapt_variance
    parts = [normalizer(numeric_input)]
    inputs = {"numeric": numeric_input}
    for name in categorical:
        vocabulary = sorted(features[name].astype(str).unique())
        inputs[name] = keras.Input(shape=(1,), name=name, dtype="string")
        lookup = keras.layers.StringLookup(vocabulary=vocabulary, output_mode="one_hot", name=f"{name}_one_hot")
        parts.append(lookup(inputs[name]))

    x = keras.layers.Concatenate(name="all_features")(parts)
    for index, units in enumerate(hparams.hidden_units):
        x = keras.layers.Dense(units, use_bias=not hparams.batch_norm, name=f"hidden_{index}")(x)
        if hparams.batch_norm:
            x = keras.layers.BatchNormalization(name=f"batch_norm_{index}")(x)
        x = keras.layers.Activation("relu", name=f"relu_{index}")(x)
        if hparams.dropout_rate > 0 and (hparams.dropout_placement == "every" or index == 0):
            x = keras.layers.Dropout(hparams.dropout_rate, seed=hparams.seed + index, name=f"dropout_{index}")(x)
    # The network learns a correction in minutes to the base level (a recent
    # level of the ride, see the features), so it starts from a sound forecast;
    # the ReLU keeps every prediction at or above zero.
    correction = keras.layers.Dense(1, name="correction_minutes")(x)
    base = keras.Input(shape=(1,), name=BASE_INPUT, dtype="float32")
    inputs[BASE_INPUT] = base
    level = base
    if hparams.output_form == "scale":
        # Zero weights start every factor at exp(0) = 1, the base level itself.
        log_factor = keras.layers.Dense(1, kernel_initializer="zeros", name="log_factor")(x)
        factor = keras.layers.Activation("exponential", name="factor")(log_factor)
        level = keras.layers.Multiply(name="scaled_base")([base, factor])
    output = keras.layers.ReLU(name="wait_minutes")(keras.layers.Add(name="base_plus_correction")([level, correction]))

    model = keras.Model(inputs=inputs, outputs=output, name="parkcast_mlp")
    loss = keras.losses.Huber(delta=10.0) if hparams.loss == "huber" else keras.losses.MeanAbsoluteError()
    model.compile(optimizer=keras.optimizers.Adam(hparams.learning_rate), loss=loss)
    return model


def predict_minutes(model: keras.Model, inputs: dict[str, tf.Tensor], batch_size: int = 8192) -> np.ndarray:
    """Predict waits in minutes with dropout inactive (Keras inference mode)."""
    return np.asarray(model.predict(inputs, batch_size=batch_size, verbose=0)).reshape(-1)


class ModelAverage:
    """A builder that collects trained models into one model that outputs the mean of their forecasts.

    add() copies the model's layers and current weights at once, so the same
    compiled model can be trained again for the next member. The members'
    layers sit side by side in one flat graph, prefixed member_<i>_, on
    shared inputs. Nested models would not do: a Normalization layer inside a
    nested model loads from .h5 with zero mean and unit variance (Keras
    3.15), so the reloaded file would forecast other values.
    """

    def __init__(self) -> None:
        self.inputs: dict[str, keras.KerasTensor] | None = None
        self.outputs: list[keras.KerasTensor] = []

    def add(self, model: keras.Model) -> None:
        """Copy `model`, with its weights as they are now, in as the next member."""
        if self.inputs is None:
            self.inputs = {name: keras.Input(shape=tensor.shape[1:], dtype=tensor.dtype, name=name)
                           for name, tensor in model.input.items()}
        prefix = f"member_{len(self.outputs)}_"

        def renamed(layer: keras.layers.Layer) -> keras.layers.Layer:
            return layer.__class__.from_config({**layer.get_config(), "name": prefix + layer.name})

        copy = keras.models.clone_model(model, input_tensors=self.inputs, clone_function=renamed)
        for source in model.layers:
            if isinstance(source, keras.layers.InputLayer):
                continue
            target = copy.get_layer(prefix + source.name)
            target.set_weights(source.get_weights())
            if isinstance(target, keras.layers.Normalization):
                # set_weights fills the adapted statistics, and this makes the layer scale with them.
                target.finalize_state()
        self.outputs.append(copy.output)

    def build(self) -> keras.Model:
        """Return the averaged model (the one member itself when there is one)."""
        if not self.outputs:
            raise ValueError("the average has no members: call add() with a trained model before build()")
        output = self.outputs[0] if len(self.outputs) == 1 else keras.layers.Average(name="mean_minutes")(self.outputs)
        return keras.Model(inputs=self.inputs, outputs=output, name=f"parkcast_mlp_average_of_{len(self.outputs)}")
