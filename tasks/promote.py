"""Model registry: save versions, score champion and challenger, promote safely."""

from __future__ import annotations

import hashlib
import os
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import sqlalchemy as sa
from prefect import task
from prefect.cache_policies import NONE

from parkcast import __version__, schema
from parkcast.logs import get_logger
from parkcast.tasks.evaluate import Scores
from parkcast.tasks.features import FEATURE_SCHEMA_VERSION
from parkcast.tasks.train import Candidate

__all__ = ["Decision", "file_sha256", "save_version", "current_champion", "decide", "apply_decision"]


@dataclass(frozen=True)
class Decision:
    """Outcome of comparing a challenger with the champion on one evaluation window."""

    promote: bool
    reason: str


def file_sha256(path: Path) -> str:
    """Return the hex SHA-256 of the file at `path`."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _new_version_id() -> str:
    return datetime.now(timezone.utc).strftime("v%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)


@task(cache_policy=NONE, retries=2, retry_delay_seconds=[2, 10])
def save_version(engine: sa.Engine, candidate: Candidate, model_dir: Path, training_run_id: int) -> str:
    """Write the candidate's .h5 file atomically and record it as a candidate version."""
    version_id = _new_version_id()
    model_dir.mkdir(parents=True, exist_ok=True)
    final_path = model_dir / f"{version_id}.h5"
    temporary_path = model_dir / f".{version_id}.partial.h5"
    candidate.model.save(temporary_path)
    os.replace(temporary_path, final_path)
    sha256 = file_sha256(final_path)

    epochs = [
        {"model_version_id": version_id, "epoch": index + 1, "loss": loss,
         "val_loss": (candidate.history.get("val_loss") or [None] * (index + 1))[index]}
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
        ))
        connection.execute(sa.insert(schema.training_epochs), epochs)
    get_logger().info("Saved model version %s to %s", version_id, final_path)
    return version_id


def current_champion(engine: sa.Engine) -> sa.Row | None:
    """Return the model_versions row with status champion, or None."""
    table = schema.model_versions
    with engine.connect() as connection:
        return connection.execute(sa.select(table).where(table.c.status == "champion")).first()


def decide(challenger: Scores, champion: Scores | None, baseline: Scores, margin: float) -> Decision:
    """Promote when the challenger beats the champion by `margin` minutes of MAE.

    With no champion, the challenger must beat the seasonal-naive baseline
    scored on the same window instead.
    """
    if champion is None:
        if challenger.mae < baseline.mae:
            return Decision(True, f"first model: MAE {challenger.mae:.2f} beats seasonal-naive baseline {baseline.mae:.2f}")
        return Decision(False, f"first model: MAE {challenger.mae:.2f} does not beat seasonal-naive baseline {baseline.mae:.2f}")
    if challenger.mae <= champion.mae - margin:
        return Decision(True, f"MAE {challenger.mae:.2f} beats champion {champion.mae:.2f} by at least {margin:.2f}")
    return Decision(False, f"MAE {challenger.mae:.2f} does not beat champion {champion.mae:.2f} by {margin:.2f}")


@task(cache_policy=NONE, retries=2, retry_delay_seconds=[2, 10])
def apply_decision(engine: sa.Engine, challenger_id: str, champion_id: str | None, decision: Decision) -> Decision:
    """Record the decision; on promotion swap the champion in one transaction.

    The swap is a compare-and-swap: it only happens if `champion_id` is still
    the champion, so a concurrent retrain that promoted first wins and this
    challenger is rejected with that reason.
    """
    table = schema.model_versions
    now = datetime.now(timezone.utc)
    with engine.begin() as connection:
        if decision.promote:
            current = sa.select(table.c.id).where(table.c.status == "champion").with_for_update()
            champion_now = connection.execute(current).scalar_one_or_none()
            if champion_now != champion_id:
                decision = Decision(False, f"champion changed to {champion_now} during this retrain; compare again")
        if decision.promote:
            if champion_id is not None:
                connection.execute(sa.update(table).where(table.c.id == champion_id).values(
                    status="retired", status_reason=f"replaced by {challenger_id}"))
            connection.execute(sa.update(table).where(table.c.id == challenger_id).values(
                status="champion", status_reason=decision.reason, promoted_at=now))
        else:
            connection.execute(sa.update(table).where(table.c.id == challenger_id).values(
                status="rejected", status_reason=decision.reason))
        connection.execute(sa.insert(schema.registry_events).values(
            created_at=now, model_version_id=challenger_id,
            action="promote" if decision.promote else "reject", reason=decision.reason))
    get_logger().info("Model %s %s: %s", challenger_id, "promoted" if decision.promote else "rejected", decision.reason)
    return decision
