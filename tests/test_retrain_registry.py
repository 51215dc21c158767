"""The real retrain flow: fresh re-scoring of the champion, learning curves, the artifact, concurrent runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from prefect.settings import PREFECT_API_URL

from parkcast import schema
from parkcast.db import make_engine, migrate
from parkcast.flows.retrain import RETRAIN_CONCURRENCY_LIMIT, retrain
from parkcast.settings import REPO_ROOT
from parkcast.tasks.features import FEATURE_SCHEMA_VERSION, load_cells, load_context, with_history
from parkcast.tasks.ingest import ingest_folder
from parkcast.tasks.registry import file_sha256, load_model_file
from tests.conftest import small_settings

pytestmark = pytest.mark.slow


def _row(engine, table, *where):
    with engine.connect() as connection:
        return connection.execute(sa.select(table).where(*where)).all()


def _ingest(engine, settings):
    """Ingest the settings' data folder and return its cells and feature context."""
    ingest_folder.fn(engine, settings.data_dir, settings.max_posted_wait)
    cells = load_cells.fn(engine)
    return cells, with_history(load_context.fn(engine), cells)


def _save_worse_copy(source: Path, target: Path) -> str:
    """Copy a model with its correction shifted by 80 minutes, so it forecasts far too high."""
    model = load_model_file(source, file_sha256(source))
    layer = model.get_layer("correction_minutes")
    kernel, bias = layer.get_weights()
    layer.set_weights([kernel, bias + 80.0])
    model.save(target)
    return file_sha256(target)


def test_stale_champion_score_cannot_win(prefect_harness, sqlite_engine, sqlite_url, real_slice, tmp_path):
    engine = sqlite_engine
    settings = small_settings(sqlite_url, real_slice, tmp_path / "models", max_epochs=3)
    cells, context = _ingest(engine, settings)

    first = retrain(engine, cells, context, settings)

    versions = schema.model_versions
    [first_row] = _row(engine, versions, versions.c.id == first.challenger_id)
    assert first.promoted == (first.challenger.mae < first.baseline.mae)
    assert "seasonal-naive baseline" in first.reason
    assert first_row.eval_mae == pytest.approx(first.challenger.mae)
    assert first_row.trials == 1
    assert Path(first_row.curve_path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert Path(first_row.curve_path).parent == Path(first_row.file_path).parent
    epochs = _row(engine, schema.training_epochs, schema.training_epochs.c.model_version_id == first.challenger_id)
    assert len(epochs) >= 1
    assert all(epoch.val_loss is not None for epoch in epochs)

    # A deliberately bad champion whose stored scores claim near-perfect accuracy.
    stale_path = tmp_path / "models" / "v-stale.h5"
    sha256 = _save_worse_copy(Path(first_row.file_path), stale_path)
    with engine.begin() as connection:
        connection.execute(sa.update(versions).where(versions.c.status == "champion").values(status="retired"))
        connection.execute(sa.insert(versions).values(
            id="v-stale", created_at=first_row.created_at, status="champion", status_reason="test setup",
            file_path=str(stale_path), sha256=sha256, train_start=first_row.train_start,
            train_end=first_row.train_end, feature_schema_version=first_row.feature_schema_version,
            hyperparameters=first_row.hyperparameters, code_version="test", val_mae=0.01, eval_mae=0.01,
            promoted_at=first_row.created_at))

    second = retrain(engine, cells, context, settings.model_copy(update={"seed": 8}))

    assert second.champion_id == "v-stale"
    assert second.champion.mae > 40.0
    assert second.promoted, second.reason
    [stale_row] = _row(engine, versions, versions.c.id == "v-stale")
    assert stale_row.status == "retired"
    assert stale_row.eval_mae == pytest.approx(second.champion.mae)
    [event] = _row(engine, schema.registry_events, schema.registry_events.c.model_version_id == second.challenger_id)
    assert event.champion_mae == pytest.approx(second.champion.mae)
    assert event.challenger_mae == pytest.approx(second.challenger.mae)
    assert event.previous_champion_id == "v-stale"

    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["retrain-comparison"])))
        limit = client.read_global_concurrency_limit_by_name(RETRAIN_CONCURRENCY_LIMIT)
    assert any(second.challenger_id in artifact.data and "v-stale" in artifact.data for artifact in artifacts)
    assert limit.limit == 1


RETRAIN_CHILD = """
import sys, time
from pathlib import Path
from parkcast.db import make_engine
from parkcast.flows.retrain import retrain
from parkcast.tasks.features import FEATURE_SCHEMA_VERSION, load_cells, load_context, with_history
from tests.conftest import small_settings

url, data_dir, model_dir, seed, start_file = sys.argv[1:6]
engine = make_engine(url)
cells = load_cells.fn(engine)
context = with_history(load_context.fn(engine), cells)
settings = small_settings(url, Path(data_dir), Path(model_dir), seed=int(seed), run_wait_seconds=900)
while not Path(start_file).exists():
    time.sleep(0.05)
result = retrain(engine, cells, context, settings)
engine.dispose()
print(result.challenger_id, "promoted" if result.promoted else "rejected")
"""


def test_two_process_retrains_one_champion(prefect_harness, database_url, real_slice, tmp_path):
    """Two real retrain flows started together in two processes leave one champion and both decisions."""
    engine = make_engine(database_url)
    migrate(engine)
    ingest_folder.fn(engine, real_slice, 500)
    start = tmp_path / "start"
    environment = dict(os.environ, PREFECT_API_URL=PREFECT_API_URL.value())
    children = [
        subprocess.Popen([sys.executable, "-c", RETRAIN_CHILD, database_url, str(real_slice), str(tmp_path / "models"),
                          str(seed), str(start)], cwd=REPO_ROOT, env=environment,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for seed in (7, 8)
    ]
    start.touch()
    outputs = [child.communicate(timeout=1800) for child in children]
    for child, (_, stderr) in zip(children, outputs):
        assert child.returncode == 0, stderr[-3000:]
    results = [stdout.strip().splitlines()[-1].split() for stdout, _ in outputs]

    versions, events = schema.model_versions, schema.registry_events
    with engine.connect() as connection:
        statuses = dict(connection.execute(sa.select(versions.c.id, versions.c.status)).all())
        decisions = connection.execute(sa.select(events.c.model_version_id, events.c.action)).all()
        runs = connection.execute(sa.select(schema.training_runs.c.status)).scalars().all()
    engine.dispose()

    challengers = sorted(challenger_id for challenger_id, _ in results)
    assert sorted(statuses) == challengers
    assert list(statuses.values()).count("champion") == 1
    assert sorted(model_version_id for model_version_id, _ in decisions) == challengers
    assert all(action in ("promote", "reject") for _, action in decisions)
    assert runs == ["completed", "completed"]
    promoted = {challenger_id for challenger_id, outcome in results if outcome == "promoted"}
    assert promoted == {model_version_id for model_version_id, action in decisions if action == "promote"}
    [champion] = [version_id for version_id, status in statuses.items() if status == "champion"]
    assert champion in promoted


def test_averaged_challenger_is_saved_and_scored(prefect_harness, sqlite_engine, sqlite_url, real_slice, tmp_path):
    """PARKCAST_TRIAL_COMBINE=average: the version's file contains the mean of the trials, and the row records it."""
    engine = sqlite_engine
    settings = small_settings(sqlite_url, real_slice, tmp_path / "models", max_epochs=2, trials=2, trial_combine="average")
    cells, context = _ingest(engine, settings)
    result = retrain(engine, cells, context, settings)

    versions = schema.model_versions
    [row] = _row(engine, versions, versions.c.id == result.challenger_id)
    assert (row.trials, row.trial_combine) == (2, "average")
    assert row.eval_mae == pytest.approx(result.challenger.mae)
    model = load_model_file(Path(row.file_path), row.sha256)
    assert model.get_layer("mean_minutes").__class__.__name__ == "Average"
    assert {layer.name for layer in model.layers} >= {"member_0_correction_minutes", "member_1_correction_minutes"}


def test_older_schema_champion_is_not_scored(prefect_harness, sqlite_engine, sqlite_url, real_slice, tmp_path):
    """A champion of another feature schema is not re-scored, so the challenger only has to beat the baseline."""
    engine = sqlite_engine
    settings = small_settings(sqlite_url, real_slice, tmp_path / "models", max_epochs=2)
    cells, context = _ingest(engine, settings)
    first = retrain(engine, cells, context, settings)
    versions = schema.model_versions
    with engine.begin() as connection:
        connection.execute(sa.update(versions).where(versions.c.id == first.challenger_id)
                           .values(status="champion", feature_schema_version=FEATURE_SCHEMA_VERSION - 1))

    second = retrain(engine, cells, context, settings.model_copy(update={"seed": 8}))

    assert second.champion_id == first.challenger_id
    assert second.champion is None
    assert second.promoted == (second.challenger.mae < second.baseline.mae)
    assert second.reason.startswith(f"champion {first.challenger_id} could not be scored: MAE ")
    [run] = _row(engine, schema.training_runs, schema.training_runs.c.challenger_id == second.challenger_id)
    assert run.status == "completed"

    # A champion row of this schema whose file takes other inputs fails in predict: also not scored.
    import keras

    numeric = keras.Input(shape=(3,), name="numeric")
    mismatched = tmp_path / "models" / "v-mismatched.h5"
    keras.Model(numeric, keras.layers.Dense(1)(numeric)).save(mismatched)
    with engine.begin() as connection:
        connection.execute(sa.update(versions).where(versions.c.status == "champion").values(status="retired"))
        connection.execute(sa.update(versions).where(versions.c.id == first.challenger_id).values(
            status="champion", feature_schema_version=FEATURE_SCHEMA_VERSION, file_path=str(mismatched),
            sha256=file_sha256(mismatched)))

    third = retrain(engine, cells, context, settings.model_copy(update={"seed": 9}))

    assert third.champion_id == first.challenger_id
    assert third.champion is None


def test_failed_retrain_marks_run_and_challenger(prefect_harness, sqlite_engine, sqlite_url, real_slice, tmp_path,
                                                monkeypatch):
    """An error after the challenger is saved leaves the run failed and the challenger rejected, not half-done."""
    from parkcast.flows import retrain as retrain_module

    engine = sqlite_engine
    # average with one trial: trained and recorded as best.
    settings = small_settings(sqlite_url, real_slice, tmp_path / "models", max_epochs=1, trial_combine="average")
    cells, context = _ingest(engine, settings)

    def failing_score(*args, **kwargs):
        raise RuntimeError("scoring broke")

    monkeypatch.setattr(retrain_module, "_score_model", failing_score)
    with pytest.raises(RuntimeError, match="scoring broke"):
        retrain(engine, cells, context, settings)

    [run] = _row(engine, schema.training_runs)
    assert run.status == "failed"
    assert run.finished_at is not None
    assert run.decision_reason == "retrain failed: RuntimeError: scoring broke"
    [version] = _row(engine, schema.model_versions, schema.model_versions.c.id == run.challenger_id)
    assert version.status == "rejected"
    assert version.status_reason == "retrain failed: RuntimeError: scoring broke"
    assert version.trial_combine == "best"
