"""One-line CLI errors for bad settings, bad database URLs and failed ride files."""

from __future__ import annotations

from datetime import date

import pytest
from typer.testing import CliRunner

from parkcast.cli import app
from parkcast.settings import get_settings
from parkcast.tasks.ingest import IngestSummary


@pytest.fixture
def fresh_settings():
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("PARKCAST_HORIZON_DAYS", "0", "PARKCAST_HORIZON_DAYS='0'"),
        ("PARKCAST_TRIALS", "abc", "PARKCAST_TRIALS='abc'"),
        ("PARKCAST_SCHEDULE_TIMEZONE", "Mars/Base", "PARKCAST_SCHEDULE_TIMEZONE='Mars/Base'"),
    ],
)
def test_invalid_setting_is_one_line(fresh_settings, monkeypatch, variable, value, expected):
    monkeypatch.setenv(variable, value)
    result = CliRunner().invoke(app, ["settings"])
    assert result.exit_code == 1
    assert result.output.startswith("error: invalid setting ")
    assert expected in result.output
    assert "Traceback" not in result.output


def test_settings_prints_unset(fresh_settings, monkeypatch):
    monkeypatch.delenv("PARKCAST_LIVE_URL", raising=False)
    result = CliRunner().invoke(app, ["settings"])
    assert result.exit_code == 0
    live = [line for line in result.output.splitlines() if line.startswith("PARKCAST_LIVE_URL")]
    assert live == [f"{'PARKCAST_LIVE_URL':<37} unset"]


def test_unparsable_database_url(fresh_settings, monkeypatch):
    monkeypatch.setenv("PARKCAST_DATABASE_URL", "notaurl")
    result = CliRunner().invoke(app, ["forecast", "--park", "MK"])
    assert result.exit_code == 1
    assert "invalid database URL" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("command", [["models", "list"], ["forecast", "--park", "MK"], ["calendar"]])
def test_read_commands_need_existing_file(fresh_settings, monkeypatch, tmp_path, command):
    missing = tmp_path / "typo.db"
    monkeypatch.setenv("PARKCAST_DATABASE_URL", f"sqlite:///{missing}")
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 1
    assert f"database file not found: {missing}" in result.output
    assert not missing.exists()


def test_failed_ride_file_exits_nonzero(fresh_settings, monkeypatch, tmp_path):
    """The summary is printed, then the run exits 1 because a file failed."""
    from parkcast.flows import daily_forecast as daily_module
    from parkcast.tasks.predict import ForecastResult

    monkeypatch.setenv("PARKCAST_DATABASE_URL", f"sqlite:///{tmp_path / 'p.db'}")
    ingest = IngestSummary(files_read=2, rows_read=5, rows_stored=5,
                           failed_files={"broken.csv": "header ['x'] does not match"})
    summary = daily_module.DailySummary(
        database="sqlite://", ingest=ingest, retrain=None, champion_id="v1", champion_problems=[],
        forecast=ForecastResult(date(2021, 8, 28), rows=10, fallback_days=0, unchanged=False))
    monkeypatch.setattr(daily_module, "daily_forecast", lambda: summary)
    result = CliRunner().invoke(app, ["run"])
    assert result.exit_code == 1
    assert "FAILED broken.csv" in result.output
    assert "1 files failed to ingest" in result.output
