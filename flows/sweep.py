"""The dropout experiment as a Prefect flow: dropout rate x placement x batch norm.

Every configuration trains on the WDW-2019H2 training window (park days up to
2019-06-30) and is scored on its validation slice, the last
VALIDATION_SHARE of those days. The test window 2019H2 is never read here, so
the sweep cannot tune on it. To keep 40 configurations affordable on 2
cores, each trains on a random share of the training cells (`sample_share`)
for few epochs (`max_epochs`). The features are built once and shared.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from prefect import flow, task
from prefect.cache_policies import NONE

from parkcast.logs import get_logger
from parkcast.tasks.backtest import BENCHMARK_HORIZON_DAYS, load_benchmark_cells, load_benchmark_context, split_benchmark
from parkcast.tasks.features import CATEGORICAL_FEATURES, NUMERIC_FEATURES, assign_training_as_of, build_features, mask_metadata, with_history

__all__ = ["DEFAULT_RATES", "SweepData", "prepare_sweep_data", "train_configuration", "dropout_sweep", "write_outputs"]

DEFAULT_RATES = tuple(round(0.1 * i, 1) for i in range(10))


@dataclass
class SweepData:
    """Features and targets shared by every configuration of one sweep."""

    fit_features: pd.DataFrame
    fit_wait: np.ndarray
    validation_features: pd.DataFrame
    validation_wait: np.ndarray
    validation_days: tuple[str, str]


@task(cache_policy=NONE)
def prepare_sweep_data(data_dir: Path, sample_share: float, seed: int) -> SweepData:
    """Build fit and validation features from the benchmark's training window only.

    The split, as-of days and metadata masking are those of
    tasks/train.train_candidate; `sample_share` of the fit cells are kept.
    """
    from parkcast.tasks.train import METADATA_MASK_SHARE, VALIDATION_SHARE, split_by_days

    if not 0.0 < sample_share <= 1.0:
        raise ValueError(f"sample_share={sample_share}: use a share of training cells in (0, 1]")
    train, _ = split_benchmark(load_benchmark_cells(data_dir))
    context = with_history(load_benchmark_context(data_dir), train)
    validation_days = max(1, int(train["park_day"].nunique() * VALIDATION_SHARE))
    fit_cells, validation_cells = split_by_days(train, validation_days)
    if sample_share < 1.0:
        fit_cells = fit_cells.sample(frac=sample_share, random_state=seed).sort_values(["park_day", "ride_code", "hour"])
    fit_cells = assign_training_as_of(fit_cells, BENCHMARK_HORIZON_DAYS, seed)
    validation_cells = assign_training_as_of(validation_cells, BENCHMARK_HORIZON_DAYS, seed + 1)
    return SweepData(
        fit_features=mask_metadata(build_features(fit_cells, context), METADATA_MASK_SHARE, seed),
        fit_wait=fit_cells["wait"].to_numpy(dtype="float32"),
        validation_features=build_features(validation_cells, context),
        validation_wait=validation_cells["wait"].to_numpy(dtype="float32"),
        validation_days=(str(validation_cells["park_day"].min().date()), str(validation_cells["park_day"].max().date())),
    )


@task(cache_policy=NONE)
def train_configuration(data: SweepData, hparams) -> dict:
    """Train one configuration; return its validation scores and loss curves."""
    import keras

    from parkcast.models.mlp import build_model, predict_minutes, to_model_inputs
    from parkcast.tasks.evaluate import score

    keras.backend.clear_session()
    started = time.perf_counter()
    model = build_model(hparams, data.fit_features, CATEGORICAL_FEATURES, NUMERIC_FEATURES)
    fit_inputs = to_model_inputs(data.fit_features, CATEGORICAL_FEATURES, NUMERIC_FEATURES)
    validation_inputs = to_model_inputs(data.validation_features, CATEGORICAL_FEATURES, NUMERIC_FEATURES)
    stop = keras.callbacks.EarlyStopping(patience=hparams.patience, restore_best_weights=True)
    history = model.fit(
        fit_inputs, data.fit_wait, validation_data=(validation_inputs, data.validation_wait),
        epochs=hparams.max_epochs, batch_size=hparams.batch_size, shuffle=True, callbacks=[stop], verbose=0,
    )
    scores = score(data.validation_wait, predict_minutes(model, validation_inputs))
    losses = [float(v) for v in history.history["loss"]]
    val_losses = [float(v) for v in history.history["val_loss"]]
    return {
        "dropout_rate": hparams.dropout_rate,
        "dropout_placement": hparams.dropout_placement,
        "batch_norm": hparams.batch_norm,
        "val_mae": scores.mae,
        "val_rmse": scores.rmse,
        "val_within_10": scores.within_10,
        "epochs": len(losses),
        "best_epoch": int(np.argmin(val_losses)) + 1,
        "seconds": time.perf_counter() - started,
        "loss": losses,
        "val_loss": val_losses,
    }


def _label(row) -> str:
    return f"{row['dropout_placement']}, batch norm {'on' if row['batch_norm'] else 'off'}"


def write_outputs(rows: list[dict], out_dir: Path, note: str) -> dict[str, Path]:
    """Write sweep.csv, sweep.md, sweep_val_mae.png and sweep_loss_curves.png into `out_dir`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    table = pd.DataFrame([{k: v for k, v in row.items() if k not in ("loss", "val_loss")} for row in rows])
    table = table.sort_values(["dropout_placement", "batch_norm", "dropout_rate"], ignore_index=True)
    paths = {"csv": out_dir / "sweep.csv", "markdown": out_dir / "sweep.md",
             "mae_png": out_dir / "sweep_val_mae.png", "curves_png": out_dir / "sweep_loss_curves.png"}
    table.to_csv(paths["csv"], index=False)
    lines = [note, "", "| rate | placement | batch norm | val MAE | val RMSE | within 10 | epochs | best epoch | seconds |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in table.to_dict("records"):
        lines.append(
            f"| {row['dropout_rate']:.1f} | {row['dropout_placement']} | {'on' if row['batch_norm'] else 'off'} | "
            f"{row['val_mae']:.2f} | {row['val_rmse']:.2f} | {row['val_within_10']:.1%} | {row['epochs']} | "
            f"{row['best_epoch']} | {row['seconds']:.0f} |"
        )
    paths["markdown"].write_text("\n".join(lines) + "\n")

    figure, axis = plt.subplots(figsize=(7, 4.5))
    for label, part in table.groupby(table.apply(_label, axis=1)):
        axis.plot(part["dropout_rate"], part["val_mae"], marker="o", label=label)
    axis.set_xlabel("dropout rate")
    axis.set_ylabel("validation MAE (minutes)")
    axis.set_title("Dropout sweep: validation MAE by rate and placement")
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(paths["mae_png"], dpi=110)
    plt.close(figure)

    columns = 5
    rows_count = int(np.ceil(len(rows) / columns))
    figure, axes = plt.subplots(rows_count, columns, figsize=(3.2 * columns, 2.4 * rows_count), squeeze=False)
    for axis, row in zip(axes.flat, rows):
        epochs = range(1, len(row["loss"]) + 1)
        axis.plot(epochs, row["loss"], label="train")
        axis.plot(epochs, row["val_loss"], label="validation")
        axis.set_title(f"rate {row['dropout_rate']:.1f}, {_label(row)}", fontsize=8)
        axis.tick_params(labelsize=7)
    for axis in list(axes.flat)[len(rows):]:
        axis.axis("off")
    axes.flat[0].legend(fontsize=7)
    figure.suptitle("Training vs validation loss (MAE, minutes) per configuration")
    figure.tight_layout()
    figure.savefig(paths["curves_png"], dpi=90)
    plt.close(figure)
    return paths


@flow(name="dropout-sweep", log_prints=False)
def dropout_sweep(
    data_dir: Path,
    out_dir: Path,
    rates: tuple[float, ...] = DEFAULT_RATES,
    placements: tuple[str, ...] = ("first", "every"),
    batch_norms: tuple[bool, ...] = (False, True),
    sample_share: float = 0.25,
    max_epochs: int = 6,
    seed: int = 42,
) -> pd.DataFrame:
    """Train every configuration, write the outputs and return the table sorted best first.

    Bad values (a rate outside [0, 1), an unknown placement) are rejected
    before any training starts.
    """
    from parkcast.models.mlp import HyperParameters

    logger = get_logger()
    configurations = [
        HyperParameters.parse(dropout_rate=rate, dropout_placement=placement, batch_norm=norm, max_epochs=max_epochs, seed=seed)
        for placement in placements for norm in batch_norms for rate in rates
    ]
    data = prepare_sweep_data(data_dir, sample_share, seed)
    rows = []
    for index, hparams in enumerate(configurations, start=1):
        row = train_configuration(data, hparams)
        logger.info(
            "Sweep %d/%d: rate %.1f, %s: validation MAE %.2f after %d epochs",
            index, len(configurations), hparams.dropout_rate, _label(row), row["val_mae"], row["epochs"],
        )
        rows.append(row)
    note = (
        f"Validation slice {data.validation_days[0]}..{data.validation_days[1]} ({len(data.validation_wait)} cells); "
        f"{len(data.fit_wait)} fit cells (sample share {sample_share}); up to {max_epochs} epochs; seed {seed}."
    )
    write_outputs(rows, Path(out_dir), note)
    table = pd.DataFrame([{k: v for k, v in r.items() if k not in ("loss", "val_loss")} for r in rows])
    return table.sort_values("val_mae", ignore_index=True)
