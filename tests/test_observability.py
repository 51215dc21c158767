"""Training progress artifact, CLI progress bars, and retries of database and file tasks."""

from __future__ import annotations

import errno
import sqlite3

import pytest
import sqlalchemy as sa
from prefect import flow
from typer.testing import CliRunner

from parkcast.cli import app
from parkcast.models.mlp import HyperParameters
from parkcast.retries import RETRY_DELAY_SECONDS, is_transient
from parkcast.tasks import features as features_module
from parkcast.tasks import train as train_module
from parkcast.tasks.features import load_cells, load_context, with_history
from parkcast.tasks.ingest import IngestError, ingest_folder


def _sqlite_error(message: str) -> sa.exc.OperationalError:
    return sa.exc.OperationalError("SELECT 1", {}, sqlite3.OperationalError(message))


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (_sqlite_error("database is locked"), True),
        (_sqlite_error("disk I/O error"), True),
        (_sqlite_error("no such table: rides"), False),
        (sa.exc.IntegrityError("INSERT", {}, sqlite3.IntegrityError("UNIQUE constraint failed")), False),
        (sa.exc.TimeoutError("QueuePool limit reached"), True),
        (ConnectionResetError(errno.ECONNRESET, "reset by peer"), True),
        (OSError(errno.ETIMEDOUT, "timed out"), True),
        (OSError(errno.ENOSPC, "no space left on device"), False),
        (FileNotFoundError(errno.ENOENT, "missing"), False),
        (IngestError("soarin.csv: invalid header"), False),
        (ValueError("only 3 park days of observations"), False),
    ],
    ids=["sqlite-locked", "sqlite-io", "missing-table", "integrity", "pool-timeout", "connection-reset",
         "os-timeout", "disk-full", "file-missing", "ingest-validation", "value-error"],
)
def test_transient_error_classification(error, transient):
    assert is_transient(error) is transient


def test_backoff_grows_exponentially():
    ratios = {later / earlier for earlier, later in zip(RETRY_DELAY_SECONDS, RETRY_DELAY_SECONDS[1:])}
    assert len(RETRY_DELAY_SECONDS) >= 2
    assert ratios == {4}


def _failing_read_sql(first_errors: list[BaseException], calls: list[int]):
    real_read_sql = features_module.pd.read_sql

    def read_sql(*args, **kwargs):
        calls.append(1)
        if first_errors:
            raise first_errors.pop(0)
        return real_read_sql(*args, **kwargs)

    return read_sql


def test_locked_database_read_is_retried(prefect_harness, sqlite_engine, monkeypatch):
    calls: list[int] = []
    monkeypatch.setattr(features_module.pd, "read_sql",
                        _failing_read_sql([_sqlite_error("database is locked")] * 2, calls))
    quick = load_context.with_options(retry_delay_seconds=0)

    @flow
    def read_context():
        return quick(sqlite_engine)

    state = read_context(return_state=True)
    # Two failures, then the third attempt reads the (empty) rides table.
    assert state.is_completed()
    assert state.result().rides.empty
    assert len(calls) == 3
    assert _task_run_counts(state) == [3]


def test_missing_table_is_not_retried(prefect_harness, sqlite_engine, monkeypatch):
    calls: list[int] = []
    monkeypatch.setattr(features_module.pd, "read_sql",
                        _failing_read_sql([_sqlite_error("no such table: rides")], calls))
    quick = load_context.with_options(retry_delay_seconds=0)

    @flow
    def read_context():
        return quick(sqlite_engine)

    state = read_context(return_state=True)
    assert state.is_failed()
    with pytest.raises(sa.exc.OperationalError, match="no such table"):
        state.result()
    assert len(calls) == 1
    assert _task_run_counts(state) == [1]


def _task_run_counts(flow_state) -> list[int]:
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        task_runs = client.read_task_runs(flow_run_filter=FlowRunFilter(
            id=FlowRunFilterId(any_=[flow_state.state_details.flow_run_id])))
    return [task_run.run_count for task_run in task_runs]


def test_invalid_data_folder_is_not_retried(prefect_harness, sqlite_engine, tmp_path):
    quick = ingest_folder.with_options(retry_delay_seconds=0)
    (tmp_path / "empty").mkdir()

    @flow
    def ingest():
        return quick(sqlite_engine, tmp_path / "empty", 500)

    state = ingest(return_state=True)
    assert state.is_failed()
    with pytest.raises(IngestError, match="attractions.csv not found"):
        state.result()
    assert _task_run_counts(state) == [1]


@pytest.mark.slow
def test_training_progress_artifact_reaches_100(prefect_harness, sqlite_engine, real_slice, monkeypatch):
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey
    from prefect.runtime import flow_run

    ingest_folder.fn(sqlite_engine, real_slice, 500)
    cells = load_cells.fn(sqlite_engine)
    context = with_history(load_context.fn(sqlite_engine), cells)
    reported: list[tuple[float, str]] = []
    real_update = train_module.update_progress_artifact

    def recording_update(artifact_id, progress, description=None):
        reported.append((progress, description))
        return real_update(artifact_id, progress, description=description)

    monkeypatch.setattr(train_module, "update_progress_artifact", recording_update)
    hparams = HyperParameters.parse(seed=7, max_epochs=3)

    @flow
    def train_two_trials():
        train_module.train_best_candidate(cells, context, hparams, 2, 7)
        return flow_run.id

    run_id = train_two_trials()
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(
            key=ArtifactFilterKey(any_=[train_module.PROGRESS_ARTIFACT_KEY]),
            flow_run_id=ArtifactFilterFlowRunId(any_=[run_id])))

    assert len(artifacts) == 1
    assert artifacts[0].type == "progress"
    assert artifacts[0].data == 100.0
    progress = [value for value, _ in reported]
    epoch_updates = [value for value, text in reported if "epoch" in text]
    assert progress == sorted(progress)
    # Each trial plans 3 epochs, so one epoch is 100 / 6 percent of the whole.
    assert epoch_updates[0] == pytest.approx(100 / 6)
    assert 50.0 in progress
    assert progress[-1] == 100.0
    assert 2 <= len(epoch_updates) <= 6


@pytest.mark.slow
def test_cli_output_unchanged_with_progress(prefect_harness, sqlite_url, real_slice, tmp_path, monkeypatch):
    from parkcast.settings import get_settings

    for name, value in {
        "DATABASE_URL": sqlite_url, "DATA_DIR": str(real_slice), "MODEL_DIR": str(tmp_path / "models"),
        "EVALUATION_DAYS": "14", "HORIZON_DAYS": "7", "MAX_EPOCHS": "3", "SEED": "7",
    }.items():
        monkeypatch.setenv(f"PARKCAST_{name}", value)
    get_settings.cache_clear()
    runner = CliRunner()
    try:
        daily = runner.invoke(app, ["--progress", "run"])
        replayed = runner.invoke(app, ["--progress", "replay", "--start", "2019-03-18", "--end", "2019-03-24",
                                       "--replay-url", f"sqlite:///{tmp_path / 'replay.db'}"])
    finally:
        get_settings.cache_clear()

    assert daily.exit_code == 0, daily.output
    assert "forecast" in daily.stdout.lower()
    assert "Ingesting ride files" in daily.stderr
    assert replayed.exit_code == 0, replayed.output
    assert "Replayed 7 days" in replayed.stdout
    assert "MAE by horizon day" in replayed.stdout
    assert "Replaying days" in replayed.stderr
    assert "7/7" in replayed.stderr
    # A test runner is no terminal: the bars print plain text, no cursor movement or colour codes.
    for result in (daily, replayed):
        assert "\x1b[" not in result.stdout
        assert "\x1b[" not in result.stderr
        assert "Replaying days" not in result.stdout


def test_retrain_stores_frames_as_placeholders(sqlite_engine):
    import pandas as pd

    from parkcast.flows.retrain import retrain
    from parkcast.settings import Settings
    from parkcast.tasks.features import Context

    context = Context(rides=pd.DataFrame({"code": ["soarin"]}), park_days=pd.DataFrame())
    cells = pd.DataFrame({"ride_code": ["soarin"] * 3, "wait": [10.0, 20.0, 30.0]})
    stored = retrain.serialize_parameters(
        {"engine": sqlite_engine, "cells": cells, "context": context, "settings": Settings(seed=3)})

    assert stored["engine"] == "<Engine>"
    assert stored["cells"] == "<DataFrame>"
    assert stored["context"] == "<Context>"
    assert stored["settings"]["seed"] == 3
