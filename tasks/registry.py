"""Verify, load and switch model versions: checksums, a layer allow-list, operator actions."""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import h5py
import sqlalchemy as sa

from parkcast import schema
from parkcast.logs import get_logger
from parkcast.tasks.features import FEATURE_SCHEMA_VERSION

__all__ = [
    "ALLOWED_LAYER_CLASSES",
    "UnsafeModelError",
    "NoUsableModelError",
    "RegistryError",
    "LoadedModel",
    "file_sha256",
    "check_model_config",
    "verify_model_file",
    "load_model_file",
    "load_champion",
    "write_transaction",
    "list_versions",
    "get_version",
    "pin_version",
    "rollback",
]

# Layer classes a model file may contain. Each is a built-in Keras layer whose
# configuration is plain data, so loading it runs no code from the file. A new
# layer type in models/mlp.py must be added here, or its files are rejected.
ALLOWED_LAYER_CLASSES = frozenset({
    "Functional", "Sequential", "InputLayer",
    "Dense", "Dropout", "AlphaDropout", "GaussianDropout", "GaussianNoise", "SpatialDropout1D",
    "BatchNormalization", "LayerNormalization", "UnitNormalization",
    "Activation", "ReLU", "LeakyReLU", "ELU", "PReLU", "Softmax",
    "Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate", "Dot",
    "Normalization", "StringLookup", "IntegerLookup", "CategoryEncoding", "Hashing", "Discretization",
    "Rescaling", "Embedding", "Flatten", "Reshape", "RepeatVector", "Permute", "Identity",
})
# Errors that a missing, truncated, corrupt or rejected model file raises while
# it is verified or loaded.
LOAD_ERRORS = (OSError, ValueError, TypeError, KeyError)


class UnsafeModelError(ValueError):
    """A model file contains a layer or object that could run code when loaded."""


class NoUsableModelError(RuntimeError):
    """No champion or earlier champion has an intact .h5 file."""


class RegistryError(ValueError):
    """An operator action on the registry is invalid; the message gives the reason and the fix."""


@dataclass
class LoadedModel:
    """A model loaded from a verified file, and the problems met on the way."""

    model: Any  # keras.Model; keras is imported only when a model is loaded.
    version_id: str
    problems: list[str] = field(default_factory=list)


def file_sha256(path: Path) -> str:
    """Return the hex SHA-256 of the file at `path`."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _check_object(node: Any, path: Path, where: str) -> None:
    """Walk a serialized Keras config and raise UnsafeModelError on code-bearing objects."""
    if isinstance(node, list):
        for index, item in enumerate(node):
            _check_object(item, path, f"{where}[{index}]")
        return
    if not isinstance(node, dict):
        return
    if "class_name" in node:
        module = node.get("module")
        registered = node.get("registered_name")
        class_name = node["class_name"]
        # Built-in Keras objects carry module "keras..." (or none in older
        # files); custom objects and Python functions name their own module.
        if class_name in {"__lambda__", "function"} or (module is not None and not str(module).startswith("keras")) or (
            registered is not None and registered != class_name
        ):
            raise UnsafeModelError(
                f"model file {path} contains the custom object {class_name!r} (module {module!r}) at {where}; "
                "parkcast loads only built-in Keras objects, so retrain the model without it"
            )
    for key, value in node.items():
        if key == "layers" and isinstance(value, list):
            for layer in value:
                class_name = layer.get("class_name") if isinstance(layer, dict) else None
                if class_name not in ALLOWED_LAYER_CLASSES:
                    raise UnsafeModelError(
                        f"model file {path} contains the layer class {class_name!r} "
                        f"(layer {layer.get('config', {}).get('name')!r}), which is not in the allowed list "
                        f"({', '.join(sorted(ALLOWED_LAYER_CLASSES))}); a Lambda or custom layer could run code "
                        "when loaded, so the file is rejected"
                    )
        _check_object(value, path, f"{where}.{key}")


def check_model_config(path: Path) -> None:
    """Read the model configuration of an .h5 file with h5py and reject unsafe content.

    Only the JSON attribute "model_config" is read, so no Keras object is built
    before the check passes.
    """
    with h5py.File(path, "r") as handle:
        raw = handle.attrs.get("model_config")
    if raw is None:
        raise UnsafeModelError(f"model file {path} has no model_config attribute; it is not a Keras .h5 model")
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8")
    config = json.loads(raw)
    top = config.get("class_name")
    if top not in ALLOWED_LAYER_CLASSES:
        raise UnsafeModelError(f"model file {path} contains a {top!r} model; only Functional and Sequential models can be loaded")
    _check_object(config, path, "model_config")


def verify_model_file(path: Path, expected_sha256: str) -> None:
    """Check that the file exists, matches its recorded SHA-256 and holds only allowed layers."""
    if not path.is_file():
        raise FileNotFoundError(f"model file {path} is missing")
    actual = file_sha256(path)
    if actual != expected_sha256:
        raise ValueError(
            f"model file {path} fails its checksum (SHA-256 {actual[:12]}..., recorded {expected_sha256[:12]}...)"
        )
    check_model_config(path)


def load_model_file(path: Path, expected_sha256: str):
    """Load an .h5 model after verifying its checksum and layer classes."""
    import keras

    verify_model_file(path, expected_sha256)
    # NOTE: the file is read again by Keras after the checks; model files are
    # immutable by contract, so a change in between means tampering, which the
    # checksum of the next load reports.
    # safe_mode also rejects Python lambdas; compile=False skips the training-only loss.
    return keras.models.load_model(path, compile=False, safe_mode=True)


def load_champion(engine: sa.Engine) -> LoadedModel:
    """Load the champion, falling back to earlier champions when its file is broken.

    Earlier champions are tried newest first. Every broken file is logged as an
    error and listed in `problems`, which the run summary prints.
    """
    table = schema.model_versions
    query = (
        sa.select(table)
        .where(table.c.status.in_(["champion", "retired"]), table.c.feature_schema_version == FEATURE_SCHEMA_VERSION)
        .order_by((table.c.status == "champion").desc(), table.c.promoted_at.desc())
    )
    with engine.connect() as connection:
        versions = connection.execute(query).all()
    problems: list[str] = []
    logger = get_logger()
    for version in versions:
        if version.promoted_at is None and version.status != "champion":
            continue  # Retired without ever being champion: never used for forecasts.
        try:
            model = load_model_file(Path(version.file_path), version.sha256)
        except LOAD_ERRORS as error:
            problems.append(f"{version.id}: {error}")
            logger.error("Cannot use model %s (%s): %s", version.id, version.status, error)
            continue
        if problems:
            logger.error("Forecasting with earlier champion %s because newer files are broken", version.id)
        return LoadedModel(model=model, version_id=version.id, problems=problems)
    if not problems:
        problems = [_why_no_champion(engine)]
    raise NoUsableModelError(
        "no usable champion model: " + "; ".join(problems)
        + ". Train a new one with `parkcast retrain --force`, or choose an earlier version with "
        "`parkcast models list` and `parkcast models promote VERSION --reason TEXT`."
    )


def _why_no_champion(engine: sa.Engine) -> str:
    """Explain why no champion of this code's feature schema exists."""
    table = schema.model_versions
    with engine.connect() as connection:
        champion = connection.execute(sa.select(table).where(table.c.status == "champion")).first()
    if champion is None:
        return "none was ever promoted"
    return (f"the champion {champion.id} was trained on feature schema {champion.feature_schema_version}, "
            f"but this code computes schema {FEATURE_SCHEMA_VERSION}")


@contextlib.contextmanager
def write_transaction(engine: sa.Engine) -> Iterator[sa.Connection]:
    """Open a transaction that holds the database write lock from its first statement.

    On SQLite, `SELECT ... FOR UPDATE` does nothing, so the transaction starts
    with BEGIN IMMEDIATE: a concurrent writer waits (busy_timeout) instead of
    reading a champion that is about to change. On PostgreSQL it is a plain
    transaction, and callers use conditional UPDATEs whose row locks serialize
    writers.
    """
    if engine.dialect.name != "sqlite":
        with engine.begin() as connection:
            yield connection
        return
    with engine.connect() as connection:
        connection.exec_driver_sql("BEGIN IMMEDIATE")
        try:
            yield connection
        except BaseException:
            connection.rollback()
            raise
        connection.commit()


def list_versions(engine: sa.Engine) -> list[sa.Row]:
    """Return every model version, newest first."""
    table = schema.model_versions
    with engine.connect() as connection:
        return connection.execute(sa.select(table).order_by(table.c.created_at.desc())).all()


def get_version(engine: sa.Engine, version_id: str) -> sa.Row:
    """Return one model version; RegistryError names the id when there is none."""
    table = schema.model_versions
    with engine.connect() as connection:
        row = connection.execute(sa.select(table).where(table.c.id == version_id)).first()
    if row is None:
        raise RegistryError(f"model version {version_id!r} not found; `parkcast models list` shows the versions")
    return row


def _record_event(connection: sa.Connection, version_id: str, action: str, reason: str,
                  previous_champion_id: str | None, now: datetime, **scores: float | None) -> None:
    connection.execute(sa.insert(schema.registry_events).values(
        created_at=now, model_version_id=version_id, action=action, reason=reason,
        previous_champion_id=previous_champion_id, **scores,
    ))


def _switch_champion(engine: sa.Engine, target_id: str, action: str, reason: str, demoted_status: str) -> str | None:
    """Make `target_id` the champion in one write transaction; return the champion it replaced."""
    table = schema.model_versions
    now = datetime.now(timezone.utc)
    with write_transaction(engine) as connection:
        champion_id = connection.execute(sa.select(table.c.id).where(table.c.status == "champion")).scalar_one_or_none()
        if champion_id is not None:
            connection.execute(sa.update(table).where(table.c.id == champion_id, table.c.status == "champion").values(
                status=demoted_status, status_reason=f"{action} to {target_id} by operator: {reason}"))
        changed = connection.execute(sa.update(table).where(table.c.id == target_id, table.c.status != "champion").values(
            status="champion", status_reason=f"{action} by operator: {reason}", promoted_at=now))
        if changed.rowcount != 1:
            raise RegistryError(f"model version {target_id} changed during the {action}; run the command again")
        _record_event(connection, target_id, action, reason, champion_id, now)
    get_logger().info("Operator %s: %s is champion (was %s): %s", action, target_id, champion_id, reason)
    return champion_id


def _require_reason(reason: str) -> str:
    if not reason or not reason.strip():
        raise RegistryError("a reason is required, for example --reason 'new champion forecasts negative waits'")
    return reason.strip()


def pin_version(engine: sa.Engine, version_id: str, reason: str) -> str | None:
    """Make a chosen version the champion after verifying its file; return the replaced champion."""
    reason = _require_reason(reason)
    version = get_version(engine, version_id)
    if version.status == "champion":
        raise RegistryError(f"model version {version_id} is already the champion")
    if version.feature_schema_version != FEATURE_SCHEMA_VERSION:
        raise RegistryError(
            f"model version {version_id} uses feature schema {version.feature_schema_version}, but this code builds "
            f"schema {FEATURE_SCHEMA_VERSION}; pin a version trained by this code"
        )
    try:
        load_model_file(Path(version.file_path), version.sha256)
    except LOAD_ERRORS as error:
        raise RegistryError(f"model version {version_id} cannot be pinned because its file is unusable: {error}") from None
    return _switch_champion(engine, version_id, "pin", reason, demoted_status="retired")


def rollback(engine: sa.Engine, reason: str) -> tuple[str, str | None]:
    """Replace the champion with the newest earlier champion whose file verifies.

    The replaced champion is marked rejected, so neither forecasting fallbacks
    nor a later rollback return to it. Returns (new champion, replaced champion).
    """
    reason = _require_reason(reason)
    table = schema.model_versions
    query = (
        sa.select(table)
        .where(table.c.status == "retired", table.c.promoted_at.is_not(None),
               table.c.feature_schema_version == FEATURE_SCHEMA_VERSION)
        .order_by(table.c.promoted_at.desc())
    )
    with engine.connect() as connection:
        earlier = connection.execute(query).all()
    skipped = []
    for version in earlier:
        try:
            load_model_file(Path(version.file_path), version.sha256)
        except LOAD_ERRORS as error:
            skipped.append(f"{version.id}: {error}")
            get_logger().error("Rollback skips earlier champion %s: %s", version.id, error)
            continue
        replaced = _switch_champion(engine, version.id, "rollback", reason, demoted_status="rejected")
        return version.id, replaced
    raise RegistryError(
        "no earlier champion to roll back to" + (f" with an intact file ({'; '.join(skipped)})" if skipped else "")
        + "; pin a version with `parkcast models promote VERSION --reason ...` instead"
    )
