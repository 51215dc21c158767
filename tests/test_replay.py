"""Replay of a few weeks of real data, and the no-look-ahead property it relies on."""

from datetime import date

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from parkcast import schema
from parkcast.db import make_engine, migrate
from parkcast.flows.replay import format_replay_report, plot_replay_report, replay
from parkcast.tasks.features import build_features, load_cells, load_context, with_history
from parkcast.tasks.ingest import ingest_folder
from parkcast.tasks.predict import refresh_park_day_history
from tests.conftest import small_settings


@pytest.fixture
def ingested(sqlite_url, real_slice):
    engine = make_engine(sqlite_url)
    migrate(engine)
    ingest_folder.fn(engine, real_slice, 500)
    yield engine
    engine.dispose()


def test_history_features_ignore_later_days(ingested):
    cells = load_cells.fn(ingested)
    context = load_context.fn(ingested)
    as_of = pd.Timestamp("2019-02-15")
    keys = cells[(cells["park_day"] > as_of) & (cells["park_day"] <= as_of + pd.Timedelta(days=10))].assign(as_of=as_of)
    from_all = build_features(keys, with_history(context, cells))
    from_past = build_features(keys, with_history(context, cells[cells["park_day"] <= as_of]))
    pd.testing.assert_frame_equal(from_all, from_past)


def _history_rows(engine) -> list[tuple]:
    history = schema.park_day_history
    with engine.connect() as connection:
        rows = connection.execute(sa.select(history.c.park_code, history.c.park_day, history.c.mean_wait, history.c.cells)
                                  .order_by(history.c.park_day, history.c.park_code)).all()
    return [tuple(row) for row in rows]


def test_history_refresh_since_matches_full(ingested):
    since = date(2019, 3, 1)
    with ingested.begin() as connection:
        refresh_park_day_history(connection)
    full = _history_rows(ingested)
    history = schema.park_day_history
    with ingested.begin() as connection:
        connection.execute(sa.delete(history).where(history.c.park_day >= since))
        # Mark the earlier rows: a refresh from `since` on must leave them alone.
        connection.execute(sa.update(history).values(mean_wait=-1.0))
        refresh_park_day_history(connection, since)
    partial = _history_rows(ingested)

    later = [row for row in full if row[1] >= since]
    assert len(later) > 20
    assert [row[:2] + (row[3],) for row in partial if row[1] >= since] == [row[:2] + (row[3],) for row in later]
    assert [row[2] for row in partial if row[1] >= since] == pytest.approx([row[2] for row in later])
    assert {row[2] for row in partial if row[1] < since} == {-1.0}
    assert len(partial) == len(full)


@pytest.mark.slow
def test_short_replay_scores_served_forecasts(prefect_harness, ingested, sqlite_url, real_slice, tmp_path):
    settings = small_settings(sqlite_url, real_slice, tmp_path / "models", max_epochs=3)
    replay_url = f"sqlite:///{tmp_path / 'replay.db'}"
    report = replay(date(2019, 3, 11), date(2019, 3, 24), 7, replay_url, settings)

    assert report.days == 14
    assert len(report.promotions) == 2
    assert set(report.promotions["decision"]) <= {"promoted", "rejected"}

    target = make_engine(replay_url)
    with target.connect() as connection:
        replayed = connection.execute(sa.select(sa.func.count()).select_from(schema.observations)).scalar_one()
        sets = connection.execute(sa.select(schema.forecast_sets.c.as_of)).scalars().all()
        served = pd.read_sql(
            sa.select(schema.rides.c.code.label("ride_code"), schema.forecasts.c.park_day, schema.forecasts.c.hour,
                      schema.forecasts.c.predicted_wait)
            .join(schema.rides, schema.rides.c.id == schema.forecasts.c.ride_id), connection)
    with ingested.connect() as connection:
        source = connection.execute(sa.select(sa.func.count()).select_from(schema.observations)
                                    .where(schema.observations.c.park_day <= date(2019, 3, 24))).scalar_one()
    target.dispose()
    assert replayed == source
    assert len(sets) == 14 - len(report.skipped_days)

    # The overall MAE, recomputed with a plain loop over served cells that have actuals.
    actual = {(r.ride_code, r.park_day.date(), r.hour): r.wait for r in load_cells.fn(ingested).itertuples()}
    errors = [abs(r.predicted_wait - actual[(r.ride_code, pd.Timestamp(r.park_day).date(), r.hour)])
              for r in served.itertuples() if (r.ride_code, pd.Timestamp(r.park_day).date(), r.hour) in actual]
    assert report.overall_mae == pytest.approx(np.mean(errors))
    assert report.by_horizon["cells"].sum() == len(errors)
    assert list(report.by_horizon["horizon_day"]) == list(range(1, 8))
    assert set(report.by_ride["ride_code"]) == {"soarin", "pirates_of_caribbean", "slinky_dog"}

    text = format_replay_report(report)
    assert "MAE by horizon day" in text
    plot = tmp_path / "replay.png"
    plot_replay_report(report, plot)
    assert plot.stat().st_size > 10_000


def test_replay_rejects_reversed_dates(prefect_harness, sqlite_url, real_slice, tmp_path):
    settings = small_settings(sqlite_url, real_slice, tmp_path / "models")
    with pytest.raises(ValueError, match="before --start"):
        replay(date(2019, 3, 24), date(2019, 3, 1), 7, None, settings)
