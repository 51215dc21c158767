"""Model registry: save versions, score champion and challenger, promote safely."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa
from prefect import task
from prefect.cache_policies import NONE

from parkcast import __version__, schema
from parkcast.logs import get_logger
from parkcast.retries import RETRIES, RETRY_DELAY_SECONDS, retry_if_transient
from parkcast.tasks.evaluate import Scores
from parkcast.tasks.features import FEATURE_SCHEMA_VERSION
from parkcast.tasks.registry import file_sha256, write_transaction

if TYPE_CHECKING:  # Importing train loads TensorFlow, which registry-only callers do not need.
    from parkcast.tasks.train import Candidate

__all__ = [
    "Decision", "file_sha256", "save_version", "save_learning_curve", "record_evaluation",
    "current_champion", "decide", "apply_decision",
]


@dataclass(frozen=True)
class Decision:
    """Outcome of comparing a challenger with the champion on one evaluation window."""

    promote: bool
    reason: str


def _new_version_id() -> str:
    return datetime.now(timezone.utc).strftime("v%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)


def save_learning_curve(history: dict[str, list[float]], path: Path, title: str) -> Path:
    """Plot training and validation loss per epoch to a PNG, written atomically."""
    import matplotlib

    matplotlib.use("Agg")  # No display on a batch server.
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=(6, 4))
    try:
        epochs = range(1, len(history["loss"]) + 1)
        axes.plot(epochs, history["loss"], label="training loss")
        if history.get("val_loss"):
            axes.plot(epochs, history["val_loss"], label="validation loss")
        axes.set_xlabel("epoch")
        axes.set_ylabel("loss (minutes)")
        axes.set_title(title)
        axes.legend()
        temporary_path = path.with_name(f".{path.name}.partial")
        figure.savefig(temporary_path, format="png", dpi=80)
        os.replace(temporary_path, path)
    finally:
        pyplot.close(figure)
    return path


@task(cache_policy=NONE, retries=RETRIES, retry_delay_seconds=RETRY_DELAY_SECONDS,
      retry_condition_fn=retry_if_transient)
def save_version(engine: sa.Engine, candidate: Candidate, model_dir: Path, training_run_id: int, trials: int = 1,
                 trial_combine: str = "best") -> str:
    """Write the candidate's .h5 file and learning curve atomically; record it as a candidate version.

    The file is named by the new version id and never rewritten, so a row's
    SHA-256 stays valid for the life of the version.
    """
    version_id = _new_version_id()
    model_dir.mkdir(parents=True, exist_ok=True)
    final_path = model_dir / f"{version_id}.h5"
    temporary_path = model_dir / f".{version_id}.partial.h5"
    candidate.model.save(temporary_path)
    os.replace(temporary_path, final_path)
    sha256 = file_sha256(final_path)
    curve_path = save_learning_curve(
        candidate.history, model_dir / f"{version_id}.curve.png",
        f"{version_id} (seed {candidate.hparams.seed})",
    )

    validation_losses = candidate.history.get("val_loss") or []
    epochs = [
        {"model_version_id": version_id, "epoch": index + 1, "loss": loss,
         "val_loss": validation_losses[index] if index < len(validation_losses) else None}
        for index, loss in enumerate(candidate.history["loss"])
    ]
    with engine.begin() as connection:
        connection.execute(sa.insert(schema.model_versions).values(
            id=version_id, created_at=datetime.now(timezone.utc), status="candidate",
            status_reason="trained; not yet compared", file_path=str(final_path), sha256=sha256,
            train_start=candidate.train_start.date(), train_end=candidate.train_end.date(),
            feature_schema_version=FEATURE_SCHEMA_VERSION,
            hyperparameters=candidate.hparams.model_dump(mode="json"), code_version=__version__,
            val_mae=candidate.validation.mae, val_rmse=candidate.validation.rmse,
            val_within_10=candidate.validation.within_10, training_run_id=training_run_id,
            trials=trials, trial_combine=trial_combine, curve_path=str(curve_path),
        ))
        connection.execute(sa.insert(schema.training_epochs), epochs)
    get_logger().info("Saved model version %s to %s", version_id, final_path)
    return version_id


def record_evaluation(engine: sa.Engine, version_id: str, scores: Scores, eval_start: date, eval_end: date) -> None:
    """Store a version's scores on the evaluation window of the current decision."""
    table = schema.model_versions
    with engine.begin() as connection:
        connection.execute(sa.update(table).where(table.c.id == version_id).values(
            eval_start=eval_start, eval_end=eval_end, eval_mae=scores.mae, eval_rmse=scores.rmse,
            eval_within_10=scores.within_10, eval_scored_at=datetime.now(timezone.utc)))


def current_champion(engine: sa.Engine) -> sa.Row | None:
    """Return the model_versions row with status champion, or None."""
    table = schema.model_versions
    with engine.connect() as connection:
        return connection.execute(sa.select(table).where(table.c.status == "champion")).first()


def decide(challenger: Scores, champion: Scores | None, baseline: Scores, margin: float,
           unscored_champion_id: str | None = None) -> Decision:
    """Promote when the challenger beats the champion by `margin` minutes of MAE.

    With no champion scores, the challenger must beat the seasonal-naive
    baseline scored on the same window instead. `unscored_champion_id` names a
    champion that exists but could not be scored, for the reason text. Both
    champion and challenger scores must come from the same evaluation window,
    never from a stored number.
    """
    if champion is None:
        case = "first model" if unscored_champion_id is None else f"champion {unscored_champion_id} could not be scored"
        if challenger.mae < baseline.mae:
            return Decision(True, f"{case}: MAE {challenger.mae:.2f} beats seasonal-naive baseline {baseline.mae:.2f}")
        return Decision(False, f"{case}: MAE {challenger.mae:.2f} does not beat seasonal-naive baseline {baseline.mae:.2f}")
    if challenger.mae <= champion.mae - margin:
        return Decision(True, f"MAE {challenger.mae:.2f} beats champion {champion.mae:.2f} by at least {margin:.2f}")
    return Decision(False, f"MAE {challenger.mae:.2f} does not beat champion {champion.mae:.2f} by {margin:.2f}")


def _swap_champion(connection: sa.Connection, challenger_id: str, champion_id: str | None, reason: str, now: datetime) -> bool:
    """Compare-and-swap: make the challenger champion only if `champion_id` still is; True on success.

    Each UPDATE carries its condition, and the caller checks the row count, so
    the swap is correct on PostgreSQL (a second writer blocks on the row lock,
    then re-checks the condition) and on SQLite (the write lock serializes).
    The partial unique index on status = 'champion' catches any race left.
    """
    table = schema.model_versions
    if champion_id is None:
        no_champion = ~sa.exists(sa.select(table.c.id).where(table.c.status == "champion").scalar_subquery())
        result = connection.execute(sa.update(table).where(table.c.id == challenger_id, no_champion).values(
            status="champion", status_reason=reason, promoted_at=now))
        return result.rowcount == 1
    retired = connection.execute(sa.update(table).where(table.c.id == champion_id, table.c.status == "champion").values(
        status="retired", status_reason=f"replaced by {challenger_id}"))
    if retired.rowcount != 1:
        return False
    result = connection.execute(sa.update(table).where(table.c.id == challenger_id).values(
        status="champion", status_reason=reason, promoted_at=now))
    return result.rowcount == 1


class _ChampionChanged(Exception):
    pass


def _record_decision(connection: sa.Connection, challenger_id: str, champion_id: str | None, decision: Decision,
                     now: datetime, scores: dict[str, float | None]) -> None:
    if not decision.promote:
        table = schema.model_versions
        connection.execute(sa.update(table).where(table.c.id == challenger_id).values(
            status="rejected", status_reason=decision.reason))
    connection.execute(sa.insert(schema.registry_events).values(
        created_at=now, model_version_id=challenger_id, action="promote" if decision.promote else "reject",
        reason=decision.reason, previous_champion_id=champion_id, **scores))


@task(cache_policy=NONE, retries=RETRIES, retry_delay_seconds=RETRY_DELAY_SECONDS,
      retry_condition_fn=retry_if_transient)
def apply_decision(engine: sa.Engine, challenger_id: str, champion_id: str | None, decision: Decision,
                   challenger: Scores | None = None, champion: Scores | None = None,
                   baseline: Scores | None = None) -> Decision:
    """Record the decision with the scores behind it; on promotion swap the champion atomically.

    The swap is a compare-and-swap inside one write transaction: it happens
    only if `champion_id` is still the champion. When a concurrent retrain
    promoted first, this challenger is rejected with that reason, and both
    decisions stay in registry_events.
    """
    scores = {
        "challenger_mae": challenger.mae if challenger else None,
        "champion_mae": champion.mae if champion else None,
        "baseline_mae": baseline.mae if baseline else None,
    }
    now = datetime.now(timezone.utc)
    try:
        with write_transaction(engine) as connection:
            if decision.promote and not _swap_champion(connection, challenger_id, champion_id, decision.reason, now):
                raise _ChampionChanged
            _record_decision(connection, challenger_id, champion_id, decision, now, scores)
    except (_ChampionChanged, sa.exc.IntegrityError):
        with write_transaction(engine) as connection:
            champion_now = connection.execute(sa.select(schema.model_versions.c.id).where(
                schema.model_versions.c.status == "champion")).scalar_one_or_none()
            decision = Decision(False, f"{decision.reason}, but the champion changed from {champion_id} to "
                                       f"{champion_now} during this retrain, so it was not promoted; the next retrain compares again")
            _record_decision(connection, challenger_id, champion_id, decision, now, scores)
    get_logger().info("Model %s %s: %s", challenger_id, "promoted" if decision.promote else "rejected", decision.reason)
    return decision
