"""End to end: the real daily_forecast flow on a slice of the real data."""

from datetime import date, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from parkcast import schema
from parkcast.db import make_engine
from parkcast.flows.daily_forecast import daily_forecast
from parkcast.summary import format_daily_summary
from parkcast.tasks.promote import file_sha256
from tests.conftest import SLICE_RIDES, small_settings

pytestmark = pytest.mark.slow

TABLES = [schema.observations, schema.rejected_rows, schema.model_versions, schema.training_runs,
          schema.forecast_sets, schema.forecasts, schema.registry_events]


def _snapshot(engine) -> dict[str, list]:
    with engine.connect() as connection:
        return {table.name: sorted(map(tuple, connection.execute(sa.select(table)).all()), key=repr) for table in TABLES
                if table is not schema.observations} | {
            "observations": connection.execute(sa.select(sa.func.count()).select_from(schema.observations)).scalar_one()}


def _expected_rows(engine, days) -> int:
    with engine.connect() as connection:
        hours = connection.execute(
            sa.select(schema.park_hours).join(schema.rides, schema.rides.c.park_code == schema.park_hours.c.park_code)
            .where(schema.park_hours.c.park_day.in_(days))).all()
    return sum(-(-row.closes_minute // 60) - row.opens_minute // 60 for row in hours)


def test_daily_flow_end_to_end_and_rerun(prefect_harness, database_url, real_slice, tmp_path):
    settings = small_settings(database_url, real_slice, tmp_path / "models")
    summary = daily_forecast(settings=settings)

    assert summary.ingest.files_read == len(SLICE_RIDES)
    assert summary.retrain is not None
    assert summary.retrain.promoted, summary.retrain.reason
    assert summary.forecast.as_of == date(2019, 3, 31)
    assert "Forecasts:" in format_daily_summary(summary)

    engine = make_engine(database_url)
    with engine.connect() as connection:
        champion = connection.execute(sa.select(schema.model_versions).where(schema.model_versions.c.status == "champion")).one()
        rows = connection.execute(
            sa.select(schema.rides.c.code, schema.forecasts.c.park_day, schema.forecasts.c.hour,
                      schema.forecasts.c.predicted_wait, schema.forecasts.c.from_metadata)
            .join(schema.rides, schema.rides.c.id == schema.forecasts.c.ride_id)).all()
    assert Path(champion.file_path).is_file()
    assert file_sha256(Path(champion.file_path)) == champion.sha256
    assert champion.id == summary.champion_id
    assert summary.retrain.challenger.mae < summary.retrain.baseline.mae

    days = {row.park_day for row in rows}
    assert days == {date(2019, 3, 31) + timedelta(days=offset) for offset in range(1, 8)}
    assert {row.code for row in rows} == set(SLICE_RIDES)
    assert len(rows) == len({(row.code, row.park_day, row.hour) for row in rows}) == summary.forecast.rows
    # April 2019 has metadata: one row per ride for each clock hour its park is open.
    assert all(row.from_metadata for row in rows)
    assert len(rows) == _expected_rows(engine, days)
    assert all(0.0 <= row.predicted_wait <= 300.0 for row in rows)

    before = _snapshot(engine)
    second = daily_forecast(settings=settings)
    assert second.retrain is None
    assert second.forecast.unchanged
    assert second.ingest.files_skipped == len(SLICE_RIDES)
    assert _snapshot(engine) == before
    engine.dispose()


def test_missing_champion_file_triggers_retrain(prefect_harness, sqlite_url, real_slice, tmp_path):
    """With no loadable champion and nothing new to ingest, the run trains a replacement and forecasts with it."""
    settings = small_settings(sqlite_url, real_slice, tmp_path / "models")
    first = daily_forecast(settings=settings)
    engine = make_engine(sqlite_url)
    with engine.connect() as connection:
        old = connection.execute(sa.select(schema.model_versions).where(schema.model_versions.c.id == first.champion_id)).one()
    Path(old.file_path).unlink()

    second = daily_forecast(settings=settings)

    assert second.ingest.rows_stored == 0
    assert second.retrain is not None
    assert second.retrain.promoted, second.retrain.reason
    assert second.champion_id != first.champion_id
    assert any(first.champion_id in problem for problem in second.champion_problems)
    text = format_daily_summary(second)
    assert "WARNING champion model: retrained because" in text
    assert f"(champion {first.champion_id} could not be loaded to score," in text
    with engine.connect() as connection:
        champion = connection.execute(
            sa.select(schema.model_versions.c.id).where(schema.model_versions.c.status == "champion")).scalar_one()
        set_model = connection.execute(sa.select(schema.forecast_sets.c.model_version_id)
                                       .where(schema.forecast_sets.c.as_of == second.forecast.as_of)).scalar_one()
    engine.dispose()
    assert champion == second.champion_id
    assert set_model == second.champion_id
