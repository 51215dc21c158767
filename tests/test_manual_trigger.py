"""A manual `prefect deployment run` of the retrain deployment, served by `parkcast serve`."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from uuid import UUID

import pytest
import sqlalchemy as sa

from parkcast import schema
from parkcast.db import make_engine, migrate
from parkcast.flows.deployments import RETRAIN_DEPLOYMENT
from parkcast.settings import REPO_ROOT
from parkcast.tasks.ingest import ingest_folder
from parkcast.tasks.train import PROGRESS_ARTIFACT_KEY

pytestmark = pytest.mark.slow

DEPLOYMENT_NAME = f"retrain_on_stored_data/{RETRAIN_DEPLOYMENT}"
# Bounds that only keep a broken run from hanging the suite; no timing is asserted.
SERVE_START_SECONDS = 300
RUN_FINISH_SECONDS = 900


def _serve_log_tail(path: Path) -> str:
    return path.read_text(errors="replace")[-4000:]


def _wait_for_deployment(client, server: subprocess.Popen, log_path: Path):
    deadline = time.monotonic() + SERVE_START_SECONDS
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"parkcast serve exited with status {server.returncode}:\n{_serve_log_tail(log_path)}")
        try:
            return client.read_deployment_by_name(DEPLOYMENT_NAME)
        except Exception:  # noqa: BLE001 - ObjectNotFound until serve has registered it
            time.sleep(2)
    pytest.fail(f"deployment {DEPLOYMENT_NAME} not registered after {SERVE_START_SECONDS} s:\n{_serve_log_tail(log_path)}")


def _wait_for_final_state(client, flow_run_id: UUID):
    deadline = time.monotonic() + RUN_FINISH_SECONDS
    while time.monotonic() < deadline:
        run = client.read_flow_run(flow_run_id)
        if run.state is not None and run.state.is_final():
            return run
        time.sleep(3)
    pytest.fail(f"flow run {flow_run_id} did not finish within {RUN_FINISH_SECONDS} s")


def _stop(server: subprocess.Popen) -> None:
    if server.poll() is None:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(30)


def test_deployment_run_retrains_via_serve(prefect_harness, sqlite_url, real_slice, tmp_path):
    from prefect import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        ArtifactFilterKey,
        FlowRunFilter,
        FlowRunFilterParentFlowRunId,
    )
    from prefect.settings import PREFECT_API_URL

    engine = make_engine(sqlite_url)
    migrate(engine)
    ingest_folder.fn(engine, real_slice, 500)

    environment = {
        **os.environ,
        "PREFECT_API_URL": PREFECT_API_URL.value(),
        "PREFECT_RUNNER_POLL_FREQUENCY": "2",
        "PARKCAST_DATABASE_URL": sqlite_url,
        "PARKCAST_DATA_DIR": str(real_slice),
        "PARKCAST_MODEL_DIR": str(tmp_path / "models"),
        "PARKCAST_EVALUATION_DAYS": "14",
        "PARKCAST_HORIZON_DAYS": "7",
        "PARKCAST_MAX_EPOCHS": "3",
        "PARKCAST_PROGRESS": "0",
    }
    bin_dir = Path(sys.executable).parent
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        server = subprocess.Popen([str(bin_dir / "parkcast"), "serve"], cwd=REPO_ROOT, env=environment,
                                  stdout=log, stderr=subprocess.STDOUT)
    try:
        with get_client(sync_client=True) as client:
            deployment = _wait_for_deployment(client, server, log_path)
            trigger = subprocess.run(
                [str(bin_dir / "prefect"), "deployment", "run", DEPLOYMENT_NAME, "--param", "trials=1"],
                cwd=REPO_ROOT, env=environment, capture_output=True, text=True, timeout=300,
            )
            assert trigger.returncode == 0, trigger.stdout + trigger.stderr
            match = re.search(r"UUID:\s*([0-9a-f-]{36})", trigger.stdout)
            assert match, trigger.stdout
            flow_run = _wait_for_final_state(client, UUID(match.group(1)))
            subflows = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[flow_run.id])))
            progress = client.read_artifacts(artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=[PROGRESS_ARTIFACT_KEY]),
                flow_run_id=ArtifactFilterFlowRunId(any_=[run.id for run in subflows])))
    finally:
        _stop(server)

    assert flow_run.deployment_id == deployment.id
    assert flow_run.parameters == {"force": True, "trials": 1}
    assert flow_run.state.is_completed(), f"{flow_run.state.message}\n{_serve_log_tail(log_path)}"
    assert len(subflows) == 1

    runs = schema.training_runs
    with engine.connect() as connection:
        finished = connection.execute(sa.select(runs.c.status, runs.c.flow_run_id, runs.c.decision)).all()
        versions = connection.execute(sa.select(schema.model_versions.c.trials)).scalars().all()
    engine.dispose()
    assert [row.status for row in finished] == ["completed"]
    assert finished[0].flow_run_id == str(subflows[0].id)
    assert finished[0].decision in {"promoted", "rejected"}
    assert versions == [1]
    assert [artifact.data for artifact in progress] == [100.0]
