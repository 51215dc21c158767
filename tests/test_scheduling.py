"""Schedules across daylight-saving changes, overlapping runs, failed runs."""

import asyncio
import threading
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa
from prefect.client.schemas.objects import ConcurrencyLimitStrategy
from prefect.server.schemas.schedules import CronSchedule
from typer.testing import CliRunner

from parkcast.cli import app
from parkcast.flows.deployments import build_deployments
from parkcast.flows.limits import RunInProgressError, exclusive_run
from parkcast.settings import Settings


def _next_runs(schedule, start: datetime, count: int) -> list[str]:
    server_schedule = CronSchedule(cron=schedule.cron, timezone=schedule.timezone)
    dates = asyncio.run(server_schedule.get_dates(n=count, start=start))
    return [d.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M") for d in dates]


def test_daily_schedule_keeps_local_time_across_dst():
    daily, _ = build_deployments(Settings())
    schedule = daily.schedules[0].schedule
    assert schedule.timezone == "America/New_York"
    # 2027-03-14: clocks go forward, 04:00 EST (UTC-5) becomes 04:00 EDT (UTC-4).
    spring = _next_runs(schedule, datetime(2027, 3, 13, 0, 0, tzinfo=timezone.utc), 3)
    assert spring == ["2027-03-13 09:00", "2027-03-14 08:00", "2027-03-15 08:00"]
    # 2027-11-07: clocks go back, 04:00 EDT becomes 04:00 EST.
    autumn = _next_runs(schedule, datetime(2027, 11, 6, 0, 0, tzinfo=timezone.utc), 3)
    assert autumn == ["2027-11-06 08:00", "2027-11-07 09:00", "2027-11-08 09:00"]


def test_weekly_retrain_runs_on_sundays():
    _, retrain = build_deployments(Settings())
    runs = _next_runs(retrain.schedules[0].schedule, datetime(2027, 3, 1, tzinfo=timezone.utc), 3)
    assert runs == ["2027-03-07 08:00", "2027-03-14 07:00", "2027-03-21 07:00"]


def test_deployments_allow_one_run_at_a_time():
    for deployment in build_deployments(Settings()):
        assert deployment.concurrency_limit == 1
        assert deployment.concurrency_options.collision_strategy == ConcurrencyLimitStrategy.CANCEL_NEW


def test_unknown_timezone_is_rejected():
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Olympus'"):
        Settings(schedule_timezone="Mars/Olympus")


def test_second_run_is_skipped_while_first_holds_limit(prefect_harness):
    holding = threading.Event()
    release = threading.Event()

    def first_run():
        with exclusive_run("overlap_probe", wait_seconds=5):
            holding.set()
            release.wait(30)

    thread = threading.Thread(target=first_run)
    thread.start()
    try:
        assert holding.wait(30)
        with pytest.raises(RunInProgressError, match="another overlap_probe run is still in progress"):
            with exclusive_run("overlap_probe", wait_seconds=1):
                pass
    finally:
        release.set()
        thread.join(30)
    # Once the first run released its slot, the next one proceeds.
    with exclusive_run("overlap_probe", wait_seconds=5):
        pass


def test_cli_reports_unreachable_database(prefect_harness, monkeypatch):
    from parkcast.settings import get_settings

    monkeypatch.setenv("PARKCAST_DATABASE_URL", "postgresql+psycopg://app:s3cret@127.0.0.1:1/parkcast")
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["run"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 1
    assert "cannot connect to the database" in result.output
    assert "s3cret" not in result.output


def _state(engine) -> tuple:
    from parkcast import schema

    with engine.connect() as connection:
        champion = connection.execute(
            sa.select(schema.model_versions.c.id).where(schema.model_versions.c.status == "champion")).scalar_one()
        forecasts = connection.execute(sa.select(schema.forecasts).order_by(*schema.forecasts.primary_key.columns)).all()
        sets = connection.execute(sa.select(schema.forecast_sets)).all()
    return champion, [tuple(row) for row in forecasts], [tuple(row) for row in sets]


@pytest.mark.slow
def test_failed_run_leaves_champion_and_forecasts(prefect_harness, sqlite_url, real_slice, tmp_path, monkeypatch):
    from parkcast import schema
    from parkcast.db import make_engine
    from parkcast.flows.daily_forecast import daily_forecast
    from tests.conftest import small_settings

    settings = small_settings(sqlite_url, real_slice, tmp_path / "models")
    daily_forecast(settings=settings)
    engine = make_engine(sqlite_url)
    before = _state(engine)

    real_insert = sa.insert

    def insert_failing_on_forecasts(table, *args, **kwargs):
        if table is schema.forecasts:
            raise OSError("disk full")
        return real_insert(table, *args, **kwargs)

    # A longer horizon makes the run replace the stored set; the write fails midway.
    monkeypatch.setattr(sa, "insert", insert_failing_on_forecasts)
    with pytest.raises(OSError, match="disk full"):
        daily_forecast(settings=settings.model_copy(update={"horizon_days": 8}))
    assert _state(engine) == before
    engine.dispose()


def test_prefect_yaml_matches_served_deployments():
    import importlib

    import yaml

    from parkcast.settings import REPO_ROOT

    config = yaml.safe_load((REPO_ROOT / "prefect.yaml").read_text())
    served = {deployment.name: deployment for deployment in build_deployments(Settings())}
    assert {entry["name"] for entry in config["deployments"]} == set(served)
    for entry in config["deployments"]:
        deployment = served[entry["name"]]
        schedule = deployment.schedules[0].schedule
        assert entry["schedules"][0]["cron"] == schedule.cron
        assert entry["schedules"][0]["timezone"] == schedule.timezone
        assert entry["concurrency_limit"]["limit"] == deployment.concurrency_limit
        assert entry.get("parameters", {}) == deployment.parameters
        path, function = entry["entrypoint"].split(":")
        module = importlib.import_module("parkcast." + path.removesuffix(".py").replace("/", "."))
        assert getattr(module, function).name == deployment.flow_name
