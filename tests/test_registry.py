"""Model registry: safe loading, fallbacks, compare-and-swap promotion and operator commands."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import keras
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from parkcast import schema
from parkcast.db import make_engine, migrate
from parkcast.tasks.evaluate import Scores
from parkcast.tasks.features import FEATURE_SCHEMA_VERSION
from parkcast.tasks.promote import Decision, apply_decision
from parkcast.tasks.registry import (
    NoUsableModelError,
    RegistryError,
    UnsafeModelError,
    file_sha256,
    load_champion,
    load_model_file,
    pin_version,
    rollback,
)

START = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _save_tiny_model(path: Path, bias: float = 0.0) -> str:
    """Save a small Functional model to `path`; return its SHA-256."""
    inputs = keras.Input(shape=(3,), name="numeric")
    outputs = keras.layers.Dense(1, bias_initializer=keras.initializers.Constant(bias), name="out")(inputs)
    keras.Model(inputs, outputs).save(path)
    return file_sha256(path)


def _add_version(engine: sa.Engine, model_dir: Path, version_id: str, status: str, promoted_minutes: int | None = None,
                 bias: float = 0.0, val_mae: float = 10.0) -> Path:
    path = model_dir / f"{version_id}.h5"
    sha256 = _save_tiny_model(path, bias)
    promoted_at = START + timedelta(minutes=promoted_minutes) if promoted_minutes is not None else None
    with engine.begin() as connection:
        connection.execute(sa.insert(schema.model_versions).values(
            id=version_id, created_at=START, status=status, status_reason="test setup", file_path=str(path),
            sha256=sha256, train_start=date(2019, 1, 1), train_end=date(2019, 3, 1),
            feature_schema_version=FEATURE_SCHEMA_VERSION, hyperparameters={}, code_version="test",
            val_mae=val_mae, promoted_at=promoted_at,
        ))
    return path


def _statuses(engine: sa.Engine) -> dict[str, str]:
    table = schema.model_versions
    with engine.connect() as connection:
        return dict(connection.execute(sa.select(table.c.id, table.c.status)).all())


def _events(engine: sa.Engine) -> list[sa.Row]:
    table = schema.registry_events
    with engine.connect() as connection:
        return connection.execute(sa.select(table).order_by(table.c.id)).all()


def _scores(mae: float) -> Scores:
    return Scores(mae=mae, rmse=mae * 1.4, within_10=0.5, cells=100)


# --- Loading executes no code from the file ---------------------------------


def test_lambda_layer_file_rejected(tmp_path):
    path = tmp_path / "planted.h5"
    inputs = keras.Input(shape=(3,), name="numeric")
    keras.Model(inputs, keras.layers.Lambda(lambda t: t * 2, name="payload")(inputs)).save(path)
    with pytest.raises(UnsafeModelError, match="'Lambda'") as caught:
        load_model_file(path, file_sha256(path))
    assert "payload" in str(caught.value)


@keras.saving.register_keras_serializable(package="planted")
class PlantedLayer(keras.layers.Layer):
    def call(self, inputs):
        return inputs


def test_custom_layer_file_rejected(tmp_path):
    path = tmp_path / "custom.h5"
    inputs = keras.Input(shape=(3,), name="numeric")
    keras.Model(inputs, PlantedLayer(name="planted")(inputs)).save(path)
    with pytest.raises(UnsafeModelError, match="PlantedLayer"):
        load_model_file(path, file_sha256(path))


def test_allowed_file_loads(tmp_path):
    path = tmp_path / "tiny.h5"
    sha256 = _save_tiny_model(path, bias=3.0)
    model = load_model_file(path, sha256)
    assert float(model.predict(keras.ops.zeros((1, 3)), verbose=0)[0, 0]) == pytest.approx(3.0)


# --- Fallback to the previous champion ----------------------------------------


def test_load_champion_intact(sqlite_engine, tmp_path):
    _add_version(sqlite_engine, tmp_path, "v-old", "retired", promoted_minutes=1)
    _add_version(sqlite_engine, tmp_path, "v-new", "champion", promoted_minutes=2)
    loaded = load_champion(sqlite_engine)
    assert loaded.version_id == "v-new"
    assert loaded.problems == []


@pytest.mark.parametrize("damage", ["missing", "bit-flip", "garbage-with-matching-checksum", "lambda-planted"])
def test_load_champion_falls_back(sqlite_engine, tmp_path, damage, caplog):
    _add_version(sqlite_engine, tmp_path, "v-never", "retired")  # never champion: not a fallback
    _add_version(sqlite_engine, tmp_path, "v-old", "retired", promoted_minutes=1)
    path = _add_version(sqlite_engine, tmp_path, "v-new", "champion", promoted_minutes=2)
    if damage == "missing":
        path.unlink()
    elif damage == "bit-flip":
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
    else:
        if damage == "lambda-planted":
            inputs = keras.Input(shape=(3,), name="numeric")
            keras.Model(inputs, keras.layers.Lambda(lambda t: t)(inputs)).save(path)
        else:
            path.write_bytes(b"not an HDF5 file at all")
        table = schema.model_versions
        with sqlite_engine.begin() as connection:
            connection.execute(sa.update(table).where(table.c.id == "v-new").values(sha256=file_sha256(path)))

    loaded = load_champion(sqlite_engine)

    assert loaded.version_id == "v-old"
    assert len(loaded.problems) == 1
    assert loaded.problems[0].startswith("v-new: ")
    assert any(record.levelname == "ERROR" and "v-new" in record.getMessage() for record in caplog.records)


def test_load_champion_all_broken(sqlite_engine, tmp_path):
    _add_version(sqlite_engine, tmp_path, "v-old", "retired", promoted_minutes=1).unlink()
    _add_version(sqlite_engine, tmp_path, "v-new", "champion", promoted_minutes=2).unlink()
    with pytest.raises(NoUsableModelError, match="v-new: .*missing.*v-old: .*missing"):
        load_champion(sqlite_engine)


def test_load_champion_older_schema_named(sqlite_engine, tmp_path):
    """A champion of another feature schema is not loaded, and the error names its schema."""
    _add_version(sqlite_engine, tmp_path, "v-old-schema", "champion", promoted_minutes=1)
    table = schema.model_versions
    with sqlite_engine.begin() as connection:
        connection.execute(sa.update(table).values(feature_schema_version=FEATURE_SCHEMA_VERSION - 1))
    with pytest.raises(NoUsableModelError) as raised:
        load_champion(sqlite_engine)
    message = str(raised.value)
    assert (f"the champion v-old-schema was trained on feature schema {FEATURE_SCHEMA_VERSION - 1}, "
            f"but this code computes schema {FEATURE_SCHEMA_VERSION}") in message
    assert "parkcast retrain --force" in message
    assert "none was ever promoted" not in message


def test_summary_reports_rides_without_history():
    from parkcast.summary import format_daily_summary
    from parkcast.tasks.ingest import IngestSummary
    from parkcast.tasks.predict import ForecastResult

    class Summary:
        database = "sqlite://"
        ingest = IngestSummary()
        retrain = None
        champion_id = "v1"
        champion_problems = []
        forecast = ForecastResult(date(2019, 3, 1), 10, 0, False, rides_without_history=("dinosaur", "soarin"))

    text = format_daily_summary(Summary())
    assert "WARNING no observations of dinosaur, soarin: no forecasts for them; ingest their wait-time files" in text


def test_summary_reports_fallback():
    from parkcast.summary import format_daily_summary
    from parkcast.tasks.ingest import IngestSummary
    from parkcast.tasks.predict import ForecastResult

    class Summary:
        database = "sqlite://"
        ingest = IngestSummary()
        retrain = None
        champion_id = "v-old"
        champion_problems = ["v-new: model file /m/v-new.h5 is missing"]
        forecast = ForecastResult(date(2019, 3, 1), 10, 0, False)

    text = format_daily_summary(Summary())
    assert "Champion in use: v-old" in text
    assert "WARNING champion model: v-new: model file /m/v-new.h5 is missing" in text


# --- Compare-and-swap promotion ----------------------------------------------


def test_apply_decision_promotes_and_records(engine, tmp_path):
    _add_version(engine, tmp_path, "v-champ", "champion", promoted_minutes=1)
    _add_version(engine, tmp_path, "v-chall", "candidate")
    decision = apply_decision.fn(engine, "v-chall", "v-champ", Decision(True, "better"),
                                 _scores(8.0), _scores(9.0), _scores(12.0))
    assert decision.promote
    assert _statuses(engine) == {"v-champ": "retired", "v-chall": "champion"}
    [event] = _events(engine)
    assert (event.action, event.previous_champion_id) == ("promote", "v-champ")
    assert (event.challenger_mae, event.champion_mae, event.baseline_mae) == (8.0, 9.0, 12.0)


def test_apply_decision_stale_champion_rejected(engine, tmp_path):
    """A challenger compared with a champion that has since been replaced must not win."""
    _add_version(engine, tmp_path, "v-old", "retired", promoted_minutes=1)
    _add_version(engine, tmp_path, "v-now", "champion", promoted_minutes=2)
    _add_version(engine, tmp_path, "v-chall", "candidate")
    decision = apply_decision.fn(engine, "v-chall", "v-old", Decision(True, "beat v-old"), _scores(8.0), _scores(9.0))
    assert not decision.promote
    assert "champion changed from v-old to v-now" in decision.reason
    assert _statuses(engine) == {"v-old": "retired", "v-now": "champion", "v-chall": "rejected"}
    assert [event.action for event in _events(engine)] == ["reject"]


def test_apply_decision_first_model_lost_race(engine, tmp_path):
    _add_version(engine, tmp_path, "v-first", "champion", promoted_minutes=1)
    _add_version(engine, tmp_path, "v-chall", "candidate")
    decision = apply_decision.fn(engine, "v-chall", None, Decision(True, "beats baseline"))
    assert not decision.promote
    assert _statuses(engine)["v-first"] == "champion"
    assert _statuses(engine)["v-chall"] == "rejected"


CHILD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from parkcast.db import make_engine
    from parkcast.tasks.evaluate import Scores
    from parkcast.tasks.promote import Decision, apply_decision

    url, challenger, champion, start_file, ready_file = sys.argv[1:6]
    engine = make_engine(url)
    Path(ready_file).touch()
    while not Path(start_file).exists():
        time.sleep(0.005)
    decision = apply_decision.fn(engine, challenger, None if champion == "-" else champion,
                                 Decision(True, "beats the champion"), Scores(8.0, 11.0, 0.6, 100))
    print("promoted" if decision.promote else "rejected")
""")


@pytest.mark.parametrize("champion", [None, "v-champ"], ids=["first-model", "replace-champion"])
def test_concurrent_retrains_one_champion(database_url, tmp_path, champion):
    """Two processes promote different challengers at the same instant: exactly one wins."""
    engine = make_engine(database_url)
    migrate(engine)
    if champion:
        _add_version(engine, tmp_path, champion, "champion", promoted_minutes=1)
    for name in ("v-a", "v-b"):
        _add_version(engine, tmp_path, name, "candidate")
    start = tmp_path / "start"
    children = [
        subprocess.Popen([sys.executable, "-c", CHILD, database_url, name, champion or "-", str(start), str(tmp_path / f"{name}.ready")],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for name in ("v-a", "v-b")
    ]
    deadline = time.monotonic() + 120
    while not all((tmp_path / f"{name}.ready").exists() for name in ("v-a", "v-b")):
        assert time.monotonic() < deadline, "child processes did not start"
        time.sleep(0.01)
    start.touch()
    outputs = [child.communicate(timeout=120) for child in children]
    for child, (_, stderr) in zip(children, outputs):
        assert child.returncode == 0, stderr
    results = sorted(stdout.strip().splitlines()[-1] for stdout, _ in outputs)

    statuses = _statuses(engine)
    events = _events(engine)
    engine.dispose()
    assert results == ["promoted", "rejected"]
    assert list(statuses.values()).count("champion") == 1
    assert sorted(statuses[name] for name in ("v-a", "v-b")) == ["champion", "rejected"]
    if champion:
        assert statuses[champion] == "retired"
    assert sorted((event.model_version_id, event.action) for event in events) in (
        [("v-a", "promote"), ("v-b", "reject")], [("v-a", "reject"), ("v-b", "promote")])


# --- Operator commands --------------------------------------------------------


def test_pin_and_rollback(engine, tmp_path):
    _add_version(engine, tmp_path, "v-1", "retired", promoted_minutes=1)
    _add_version(engine, tmp_path, "v-2", "champion", promoted_minutes=2)
    _add_version(engine, tmp_path, "v-3", "rejected")

    assert pin_version(engine, "v-3", "operator trusts v-3") == "v-2"
    assert _statuses(engine) == {"v-1": "retired", "v-2": "retired", "v-3": "champion"}

    assert rollback(engine, "v-3 forecasts too high") == ("v-2", "v-3")
    assert _statuses(engine) == {"v-1": "retired", "v-2": "champion", "v-3": "rejected"}
    assert rollback(engine, "v-2 as well") == ("v-1", "v-2")
    with pytest.raises(RegistryError, match="no earlier champion"):
        rollback(engine, "nothing left")

    events = [(e.model_version_id, e.action, e.reason, e.previous_champion_id) for e in _events(engine)]
    assert events == [
        ("v-3", "pin", "operator trusts v-3", "v-2"),
        ("v-2", "rollback", "v-3 forecasts too high", "v-3"),
        ("v-1", "rollback", "v-2 as well", "v-2"),
    ]


def test_pin_rejects_broken_file(sqlite_engine, tmp_path):
    _add_version(sqlite_engine, tmp_path, "v-champ", "champion", promoted_minutes=1)
    _add_version(sqlite_engine, tmp_path, "v-bad", "rejected").write_bytes(b"tampered")
    with pytest.raises(RegistryError, match="v-bad cannot be pinned.*checksum"):
        pin_version(sqlite_engine, "v-bad", "try it")
    with pytest.raises(RegistryError, match="'v-none' not found"):
        pin_version(sqlite_engine, "v-none", "try it")
    with pytest.raises(RegistryError, match="reason is required"):
        pin_version(sqlite_engine, "v-bad", "  ")
    assert _statuses(sqlite_engine) == {"v-champ": "champion", "v-bad": "rejected"}


def test_rollback_skips_broken_earlier_champion(sqlite_engine, tmp_path):
    _add_version(sqlite_engine, tmp_path, "v-1", "retired", promoted_minutes=1)
    _add_version(sqlite_engine, tmp_path, "v-2", "retired", promoted_minutes=2).unlink()
    _add_version(sqlite_engine, tmp_path, "v-3", "champion", promoted_minutes=3)
    assert rollback(sqlite_engine, "bad forecasts") == ("v-1", "v-3")


def test_models_cli(sqlite_url, tmp_path, monkeypatch):
    from parkcast.cli import app
    from parkcast.settings import get_settings

    engine = make_engine(sqlite_url)
    migrate(engine)
    _add_version(engine, tmp_path, "v-1", "retired", promoted_minutes=1, val_mae=11.5)
    _add_version(engine, tmp_path, "v-2", "champion", promoted_minutes=2, val_mae=10.25)
    monkeypatch.setenv("PARKCAST_DATABASE_URL", sqlite_url)
    get_settings.cache_clear()
    runner = CliRunner()
    try:
        listed = runner.invoke(app, ["models", "list"])
        shown = runner.invoke(app, ["models", "show", "v-2"])
        missing = runner.invoke(app, ["models", "show", "v-9"])
        rolled = runner.invoke(app, ["models", "rollback", "--reason", "v-2 is off"])
        pinned = runner.invoke(app, ["models", "promote", "v-2", "--reason", "fixed upstream"])
        no_reason = runner.invoke(app, ["models", "rollback"])
    finally:
        get_settings.cache_clear()

    assert listed.exit_code == 0, listed.output
    assert "v-2" in listed.output and "champion" in listed.output and "10.25" in listed.output
    assert shown.exit_code == 0, shown.output
    assert "sha256" in shown.output
    assert missing.exit_code == 1
    assert "'v-9' not found" in missing.output
    assert rolled.exit_code == 0, rolled.output
    assert "v-1 is now the champion" in rolled.output
    assert pinned.exit_code == 0, pinned.output
    assert no_reason.exit_code != 0
    assert _statuses(engine) == {"v-1": "retired", "v-2": "champion"}
    assert [(e.action, e.reason) for e in _events(engine)] == [("rollback", "v-2 is off"), ("pin", "fixed upstream")]
    engine.dispose()
