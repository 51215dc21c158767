"""Forecast sets and the read-side views, on a real slice around the end of the metadata.

The slice contains three rides from 2021-07-01 to 2021-08-28. The park-day
metadata ends on 2021-08-31, so a set written as of 2021-08-28 falls back to
typical hours from 2021-09-01. A small untrained Keras model (real layers,
random weights) writes the forecasts, so no test trains.
"""

from __future__ import annotations

import threading
from datetime import date, datetime, timedelta, timezone
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from parkcast import schema
from parkcast.cli import app
from parkcast.db import make_engine, migrate
from parkcast.models.mlp import HyperParameters, build_model
from parkcast.settings import get_settings
from parkcast.summary import format_daily_summary
from parkcast.tasks.features import CATEGORICAL_FEATURES, NUMERIC_FEATURES, build_features, load_cells, load_context, with_history
from parkcast.tasks.ingest import IngestSummary, ingest_folder
from parkcast.tasks.predict import LoadedModel, _hours_from_metadata, _typical_hours, calendar_only_where_fallback, forecast_keys, write_forecasts
from tests.conftest import SLICE_RIDES, create_postgres_database, drop_postgres_database, write_slice

HORIZON = 7
AS_OF_A, AS_OF_C, AS_OF_B = date(2021, 8, 14), date(2021, 8, 18), date(2021, 8, 28)
FALLBACK_DATES = tuple(date(2021, 9, day) for day in range(1, 5))


def _create_database(dialect: str, tmp_path_factory):
    if dialect == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('publish') / 'parkcast.db'}", None
    url, admin, name = create_postgres_database()
    return url, (admin, name)


def _register_model(engine, version_id: str) -> None:
    today = date(2021, 8, 28)
    with engine.begin() as connection:
        connection.execute(sa.insert(schema.model_versions).values(
            id=version_id, created_at=datetime.now(timezone.utc), status="retired", file_path="/not/stored.h5",
            sha256="0" * 64, train_start=today, train_end=today, feature_schema_version=1, hyperparameters={},
            code_version="test"))


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def published(request, tmp_path_factory):
    """A database with the slice ingested and three forecast sets (as of 08-14, 08-18, 08-28)."""
    url, server = _create_database(request.param, tmp_path_factory)
    folder = write_slice(tmp_path_factory.mktemp("slice2021"), SLICE_RIDES, "07/01/2021", "08/28/2021")
    engine = make_engine(url)
    try:
        migrate(engine)
        ingest_folder.fn(engine, folder, 500)
        cells = load_cells.fn(engine)
        context = with_history(load_context.fn(engine), cells)
        sample = cells.sample(500, random_state=1).assign(as_of=lambda frame: frame["park_day"] - pd.Timedelta(days=3))
        features = build_features(sample, context)
        model = build_model(HyperParameters.parse(hidden_units=(8,), seed=3), features, CATEGORICAL_FEATURES, NUMERIC_FEATURES)
        for version in ["tiny-a", "tiny-b"]:
            _register_model(engine, version)
        first = LoadedModel(model=model, version_id="tiny-a")
        results = {}
        for as_of in [AS_OF_A, AS_OF_C, AS_OF_B]:
            known = cells[cells["park_day"] <= pd.Timestamp(as_of)]
            results[as_of] = write_forecasts.fn(engine, first, context, known, HORIZON, f"run-{as_of}")
        yield SimpleNamespace(engine=engine, url=url, cells=cells, context=context, model=model, results=results)
    finally:
        engine.dispose()
        if server is not None:
            drop_postgres_database(*server)


def _read(engine, query: str) -> pd.DataFrame:
    with engine.connect() as connection:
        frame = pd.read_sql(sa.text(query), connection)
    for column in ["park_day", "as_of"]:
        if column in frame:
            frame[column] = pd.to_datetime(frame[column]).dt.date
    return frame


def _stored_forecasts(engine) -> pd.DataFrame:
    return _read(engine, """
        SELECT f.forecast_set_id, s.as_of, s.model_version_id, r.code AS ride_code, r.park_code,
               f.park_day, f.hour, f.predicted_wait, f.from_metadata
        FROM forecasts f JOIN forecast_sets s ON s.id = f.forecast_set_id JOIN rides r ON r.id = f.ride_id""")


def _observed_cells(engine) -> pd.DataFrame:
    """Mean posted wait per (ride, park day, hour), computed here from the raw observations."""
    raw = _read(engine, """
        SELECT r.code AS ride_code, r.park_code, o.park_day, o.local_hour AS hour, o.posted_wait, o.is_closed
        FROM observations o JOIN rides r ON r.id = o.ride_id""")
    raw = raw[raw["posted_wait"].notna() & ~raw["is_closed"].astype(bool)]
    return raw.groupby(["ride_code", "park_code", "park_day", "hour"], as_index=False)["posted_wait"].mean()


def _expected_latest(stored: pd.DataFrame) -> pd.DataFrame:
    newest = stored.groupby(["ride_code", "park_day"])["as_of"].transform("max")
    return stored[stored["as_of"] == newest]


def test_forecast_sets_record_model_run_and_time(published):
    sets = _read(published.engine, "SELECT * FROM forecast_sets ORDER BY as_of")
    stored = _stored_forecasts(published.engine)
    assert list(sets["as_of"]) == [AS_OF_A, AS_OF_C, AS_OF_B]
    assert list(sets["model_version_id"]) == ["tiny-a"] * 3
    assert list(sets["flow_run_id"]) == [f"run-{day}" for day in [AS_OF_A, AS_OF_C, AS_OF_B]]
    assert sets["created_at"].notna().all()
    for row in sets.itertuples():
        rows = stored[stored["forecast_set_id"] == row.id]
        assert len(rows) == row.row_count
        assert set(rows["park_day"]) == {row.as_of + timedelta(days=offset) for offset in range(1, HORIZON + 1)}
        assert set(rows["ride_code"]) == set(SLICE_RIDES)
    assert not stored.duplicated(["forecast_set_id", "ride_code", "park_day", "hour"]).any()


def test_latest_view_takes_newest_set_per_ride_day(published):
    expected = _expected_latest(_stored_forecasts(published.engine))
    view = _read(published.engine, "SELECT * FROM forecast_latest")
    key = ["ride_code", "park_day", "hour"]
    merged = expected.merge(view, on=key, how="outer", suffixes=("_expected", "_view"), indicator=True)
    assert (merged["_merge"] == "both").all(), merged[merged["_merge"] != "both"].head()
    assert (merged["as_of_expected"] == merged["as_of_view"]).all()
    np.testing.assert_allclose(merged["predicted_wait_view"], merged["predicted_wait_expected"])
    # 08-19 to 08-21 are in the sets as of 08-14 and 08-18, and the newer one wins.
    overlap = view[view["park_day"] == date(2021, 8, 20)]
    assert set(overlap["as_of"]) == {AS_OF_C}
    assert set(view.loc[view["park_day"] == date(2021, 8, 16), "as_of"]) == {AS_OF_A}


def _park_day_order(hour: int) -> int:
    return hour + 24 if hour < 5 else hour


def test_ride_day_summary_matches_hand_computation(published):
    latest = _expected_latest(_stored_forecasts(published.engine))
    view = _read(published.engine, "SELECT * FROM ride_day_summary").set_index(["ride_code", "park_day"])
    assert len(view) == latest.groupby(["ride_code", "park_day"]).ngroups
    for (ride, day), rows in latest.groupby(["ride_code", "park_day"]):
        waits = rows["predicted_wait"].to_numpy()
        order = rows["hour"].map(_park_day_order).to_numpy()
        best = rows.iloc[np.lexsort((order, waits))[0]]
        peak = rows.iloc[np.lexsort((order, -waits))[0]]
        row = view.loc[(ride, day)]
        assert row["hours"] == len(rows)
        assert row["mean_wait"] == pytest.approx(waits.mean())
        assert row["peak_wait"] == pytest.approx(waits.max())
        assert row["best_wait"] == pytest.approx(waits.min())
        assert row["best_hour"] == best["hour"]
        assert row["peak_hour"] == peak["hour"]
        assert row["fallback_hours"] == int((~rows["from_metadata"].astype(bool)).sum())


def test_crowd_index_matches_hand_computation(published):
    latest = _expected_latest(_stored_forecasts(published.engine))
    cells = _observed_cells(published.engine)
    history = cells.groupby(["park_code", "park_day"])["posted_wait"].mean()
    view = _read(published.engine, "SELECT * FROM park_day_crowd_index").set_index(["park_code", "park_day"])
    forecast_means = latest.groupby(["park_code", "park_day"])["predicted_wait"].mean()
    assert len(view) == len(forecast_means)
    indexes = []
    for (park, day), mean in forecast_means.items():
        observed = history.loc[park].to_numpy()
        below = int((observed < mean).sum())
        expected = min(10, 1 + (10 * below) // len(observed))
        row = view.loc[(park, day)]
        assert row["mean_wait"] == pytest.approx(mean)
        assert row["history_days"] == len(observed)
        assert row["history_days_below"] == below
        assert row["crowd_index"] == expected
        indexes.append(expected)
    assert all(1 <= index <= 10 for index in indexes)


def test_accuracy_views_match_observations(published):
    stored = _stored_forecasts(published.engine)
    actual = _observed_cells(published.engine).rename(columns={"posted_wait": "actual_wait"})
    expected = stored.merge(actual, on=["ride_code", "park_code", "park_day", "hour"])
    expected["horizon_day"] = [(day - as_of).days for day, as_of in zip(expected["park_day"], expected["as_of"])]
    view = _read(published.engine, "SELECT * FROM forecast_accuracy")
    key = ["forecast_set_id", "ride_code", "park_day", "hour"]
    merged = expected.merge(view, on=key, how="outer", suffixes=("_expected", "_view"), indicator=True)
    assert (merged["_merge"] == "both").all(), merged[merged["_merge"] != "both"].head()
    np.testing.assert_allclose(merged["actual_wait_view"], merged["actual_wait_expected"])
    assert (merged["horizon_day_view"] == merged["horizon_day_expected"]).all()
    # Sets as of 08-14 and 08-18 cover observed days, but the set as of 08-28 does not.
    assert set(view["as_of"]) == {AS_OF_A, AS_OF_C}
    assert set(view["horizon_day"]) == set(range(1, HORIZON + 1))

    expected["abs_error"] = (expected["predicted_wait"] - expected["actual_wait"]).abs()
    by_ride = expected.groupby(["ride_code", "horizon_day"]).agg(
        cells=("abs_error", "size"), mae=("abs_error", "mean"), mean_actual=("actual_wait", "mean"))
    view_by_ride = _read(published.engine, "SELECT * FROM forecast_accuracy_by_ride").set_index(["ride_code", "horizon_day"])
    assert len(view_by_ride) == len(by_ride)
    for key_values, row in by_ride.iterrows():
        assert view_by_ride.loc[key_values, "cells"] == row["cells"]
        assert view_by_ride.loc[key_values, "mae"] == pytest.approx(row["mae"])
        assert view_by_ride.loc[key_values, "mean_actual"] == pytest.approx(row["mean_actual"])


def test_fallback_days_are_marked(published):
    result = published.results[AS_OF_B]
    assert result.fallback_dates == FALLBACK_DATES
    assert result.fallback_days == len(FALLBACK_DATES)
    stored = _stored_forecasts(published.engine)
    rows = stored[stored["as_of"] == AS_OF_B]
    assert set(rows.loc[~rows["from_metadata"].astype(bool), "park_day"]) == set(FALLBACK_DATES)
    assert set(rows.loc[rows["from_metadata"].astype(bool), "park_day"]) == {date(2021, 8, day) for day in (29, 30, 31)}
    hours = _read(published.engine, "SELECT * FROM park_hours WHERE park_day >= '2021-08-29'")
    assert set(hours["park_day"]) == {date(2021, 8, day) for day in (29, 30, 31)}
    for row in hours.itertuples():
        ride_rows = rows[(rows["park_code"] == row.park_code) & (rows["park_day"] == row.park_day)]
        for ride, ride_hours in ride_rows.groupby("ride_code"):
            assert sorted(ride_hours["hour"]) == sorted(_hours_from_metadata(row.opens_minute, row.closes_minute))
    summary = SimpleNamespace(
        ingest=IngestSummary(files_read=3, rows_read=1, rows_stored=1),
        retrain=None, champion_id="tiny-a", champion_problems=[], forecast=result, database="sqlite://")
    assert "no park-day metadata for 2021-09-01 to 2021-09-04" in format_daily_summary(summary)


def test_park_without_hours_falls_back(published):
    """A metadata row without one park's hours: that park's rows use typical hours and calendar features."""
    engine, day = published.engine, date(2021, 8, 30)
    known = published.cells
    hours = schema.park_hours
    with engine.begin() as connection:
        removed = connection.execute(sa.select(hours).where(hours.c.park_day == day, hours.c.park_code == "EP")).one()
        connection.execute(sa.delete(hours).where(hours.c.park_day == day, hours.c.park_code == "EP"))
    try:
        keys = forecast_keys(engine, published.context, known, AS_OF_B, HORIZON)
    finally:
        with engine.begin() as connection:
            connection.execute(sa.insert(hours).values(**removed._mapping))
    on_day = keys[keys["park_day"] == day]
    epcot = on_day[on_day["ride_code"] == "soarin"]
    others = on_day[on_day["ride_code"] != "soarin"]
    assert not epcot["from_metadata"].any()
    assert others["from_metadata"].all()
    assert sorted(epcot["hour"]) == _typical_hours(known)["soarin"]

    features = calendar_only_where_fallback(build_features(keys, published.context), keys)
    assert (features.loc[epcot.index, "has_metadata"] == 0.0).all()
    assert features.loc[epcot.index, "park_open_hour"].isna().all()
    assert (features.loc[epcot.index, "ticket_season"] == "unknown").all()
    assert (features.loc[others.index, "has_metadata"] == 1.0).all()
    assert features.loc[others.index, "park_open_hour"].notna().all()


def test_ride_without_observations_gets_no_keys(published):
    """A known ride with no observed cell gets no forecast keys (its model input would have no base level)."""
    known = published.cells[published.cells["ride_code"] != "soarin"]
    keys = forecast_keys(published.engine, published.context, known, AS_OF_B, HORIZON)
    assert "soarin" in set(published.context.rides["code"])
    assert "soarin" not in set(keys["ride_code"])
    assert set(keys["ride_code"]) == set(known["ride_code"])


def test_hours_past_midnight_and_over_24():
    assert _hours_from_metadata(9 * 60, 25 * 60) == [*range(9, 24), 0]
    assert _hours_from_metadata(9 * 60, 24 * 60 + 30) == [*range(9, 24), 0]
    # A 24-hour party, 6:00 to 30:00: each clock hour once.
    assert sorted(_hours_from_metadata(6 * 60, 30 * 60)) == list(range(24))


def _snapshot(engine) -> dict:
    with engine.connect() as connection:
        return {table.name: sorted(map(tuple, connection.execute(sa.select(table)).all()), key=repr)
                for table in [schema.forecast_sets, schema.forecasts]}


def test_rerun_is_idempotent_and_replaces_one_set(published):
    engine, cells = published.engine, published.cells
    known = cells[cells["park_day"] <= pd.Timestamp(AS_OF_C)]
    before = _snapshot(engine)
    again = write_forecasts.fn(engine, LoadedModel(published.model, "tiny-a"), published.context, known, HORIZON, "run-again")
    assert again.unchanged
    assert _snapshot(engine) == before

    other_sets = _read(engine, f"SELECT * FROM forecast_sets WHERE as_of <> '{AS_OF_C}'")
    replaced = write_forecasts.fn(engine, LoadedModel(published.model, "tiny-b"), published.context, known, HORIZON, "run-b")
    assert not replaced.unchanged
    sets = _read(engine, "SELECT * FROM forecast_sets ORDER BY as_of")
    assert len(sets) == 3
    assert sets.loc[sets["as_of"] == AS_OF_C, "model_version_id"].item() == "tiny-b"
    pd.testing.assert_frame_equal(
        sets[sets["as_of"] != AS_OF_C].reset_index(drop=True), other_sets.reset_index(drop=True), check_dtype=False)
    # Put the first model's set back so the views' other tests see the same model everywhere.
    write_forecasts.fn(engine, LoadedModel(published.model, "tiny-a"), published.context, known, HORIZON, f"run-{AS_OF_C}")


def _set_of(connection, as_of: date) -> list:
    return connection.execute(sa.text(
        "SELECT s.id, s.model_version_id, s.row_count, count(f.hour) FROM forecast_sets s "
        "LEFT JOIN forecasts f ON f.forecast_set_id = s.id WHERE s.as_of = :as_of "
        "GROUP BY s.id, s.model_version_id, s.row_count"), {"as_of": as_of}).all()


def _latest_models(connection, days: tuple[date, date]) -> list:
    return connection.execute(sa.text(
        "SELECT model_version_id, count(*) FROM forecast_latest WHERE park_day BETWEEN :first AND :last "
        "GROUP BY model_version_id"), {"first": days[0], "last": days[1]}).all()


def test_reader_never_sees_mixed_sets(published):
    """Pause the writer inside its transaction, after the delete and after the insert, and read."""
    engine, cells = published.engine, published.cells
    known = cells[cells["park_day"] <= pd.Timestamp(AS_OF_C)]
    days = (date(2021, 8, 19), date(2021, 8, 25))
    writer = make_engine(published.url)
    paused, resume = threading.Event(), threading.Event()
    seen_during: list = []
    pauses: list[str] = []

    @sa.event.listens_for(writer, "after_cursor_execute")
    def pause_inside_transaction(connection, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith(("DELETE FROM FORECASTS", "INSERT INTO FORECASTS ")):
            pauses.append(statement.split("(")[0].strip())
            paused.set()
            assert resume.wait(30), "reader did not finish in 30 s"
            resume.clear()

    with engine.connect() as connection:
        before = _set_of(connection, AS_OF_C)
    assert len(before) == 1
    assert before[0].model_version_id == "tiny-a"
    errors: list[BaseException] = []

    def write() -> None:
        try:
            write_forecasts.fn(writer, LoadedModel(published.model, "tiny-b"), published.context, known, HORIZON, "run-b")
        except BaseException as error:  # noqa: BLE001 - re-raised in the test thread below.
            errors.append(error)
            paused.set()

    thread = threading.Thread(target=write)
    thread.start()
    try:
        for _ in range(2):
            assert paused.wait(60), "writer never reached its transaction"
            paused.clear()
            with engine.connect() as connection:
                seen_during.append((_set_of(connection, AS_OF_C), _latest_models(connection, days)))
            resume.set()
    finally:
        resume.set()
        thread.join(60)
    writer.dispose()
    assert not errors, errors
    assert len(pauses) == 2, pauses
    for sets, models in seen_during:
        assert sets == before
        assert [tuple(row) for row in models] == [("tiny-a", before[0].row_count)]
    with engine.connect() as connection:
        after = _set_of(connection, AS_OF_C)
        models_after = _latest_models(connection, days)
    assert len(after) == 1
    assert after[0].model_version_id == "tiny-b"
    assert after[0].row_count == after[0][3] == before[0].row_count
    assert [tuple(row) for row in models_after] == [("tiny-b", before[0].row_count)]
    write_forecasts.fn(engine, LoadedModel(published.model, "tiny-a"), published.context, known, HORIZON, f"run-{AS_OF_C}")


@pytest.fixture
def cli_database(published, monkeypatch):
    monkeypatch.setenv("PARKCAST_DATABASE_URL", published.url)
    get_settings.cache_clear()
    yield published
    get_settings.cache_clear()


def test_cli_forecast_for_park_and_ride(cli_database, tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["forecast", "--park", "ep", "--date", "2021-08-30"])
    assert result.exit_code == 0, result.output
    assert "Forecast waits in minutes for park EP on 2021-08-30" in result.output
    assert "soarin: mean" in result.output
    assert "Crowd index of EP:" in result.output
    summary = _read(cli_database.engine, "SELECT * FROM ride_day_summary WHERE ride_code = 'soarin' AND park_day = '2021-08-30'")
    assert f"best hour {int(summary['best_hour'].item()):02d}:00" in result.output

    plot = tmp_path / "waits.png"
    result = runner.invoke(app, ["forecast", "--ride", "slinky_dog", "--date", "2021-09-02", "--plot", str(plot)])
    assert result.exit_code == 0, result.output
    assert "typical hours used" in result.output
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--ride", "space_mountain"], "unknown ride 'space_mountain'; valid rides are pirates_of_caribbean, slinky_dog, soarin"),
        (["--park", "XX"], "unknown park 'XX'; valid parks are EP, HS, MK"),
        (["--park", "MK", "--date", "2030-01-01"], "no forecasts for park MK on 2030-01-01; forecast days are 2021-08-15 to 2021-08-25, 2021-08-29 to 2021-09-04"),
        (["--park", "MK", "--date", "01/02/2021"], "invalid date '01/02/2021': expected YYYY-MM-DD"),
        (["--park", "MK", "--ride", "soarin"], "give exactly one of --park CODE or --ride CODE"),
    ],
    ids=["unknown-ride", "unknown-park", "day-without-forecasts", "bad-date", "park-and-ride"],
)
def test_cli_forecast_rejects_bad_input(cli_database, arguments, message):
    result = CliRunner().invoke(app, ["forecast", *arguments])
    assert result.exit_code == 2
    assert message in result.output.replace("\n", " ")
    assert "parkcast" in result.output


def test_cli_calendar_lists_next_days(cli_database):
    result = CliRunner().invoke(app, ["calendar"])
    assert result.exit_code == 0, result.output
    crowd = _read(cli_database.engine, "SELECT * FROM park_day_crowd_index WHERE park_day > '2021-08-28'")
    lines = {line.split()[0]: line.split()[2:] for line in result.output.splitlines() if line.startswith("2021-")}
    assert sorted(lines) == [str(date(2021, 8, 28) + timedelta(days=offset)) for offset in range(1, HORIZON + 1)]
    header = next(line for line in result.output.splitlines() if line.startswith("day "))
    parks = header.split()[2:]
    for row in crowd.itertuples():
        cell = lines[str(row.park_day)][parks.index(row.park_code)]
        suffix = "*" if row.park_day in FALLBACK_DATES else ""
        assert cell == f"{int(row.crowd_index)}{suffix}"


def test_concurrent_writers_leave_one_set(published):
    """Hold one writer inside its transaction while a second writes the same new as-of day; the later set wins."""
    engine, cells = published.engine, published.cells
    # A day without a stored set: no existing row lock orders the two writers.
    as_of = date(2021, 8, 21)
    known = cells[cells["park_day"] <= pd.Timestamp(as_of)]
    first_writer, second_writer = make_engine(published.url), make_engine(published.url)
    paused, resume = threading.Event(), threading.Event()

    @sa.event.listens_for(first_writer, "after_cursor_execute")
    def pause_after_delete(connection, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("DELETE FROM FORECAST_SETS"):
            paused.set()
            assert resume.wait(30), "second writer did not start in 30 s"

    errors: list[BaseException] = []

    def write(writer, version: str, run_id: str) -> None:
        try:
            write_forecasts.fn(writer, LoadedModel(published.model, version), published.context, known, HORIZON, run_id)
        except BaseException as error:  # noqa: BLE001 - re-raised in the test thread below.
            errors.append(error)
            paused.set()

    first = threading.Thread(target=write, args=(first_writer, "tiny-b", "run-first"))
    second = threading.Thread(target=write, args=(second_writer, "tiny-a", "run-second"))
    first.start()
    try:
        assert paused.wait(60), "first writer never reached its transaction"
        second.start()
        second.join(1.0)
        # The second writer waits for the first one's transaction (advisory lock on
        # PostgreSQL, database write lock on SQLite) instead of failing or finishing.
        assert second.is_alive()
    finally:
        resume.set()
        first.join(60)
        second.join(60)
    first_writer.dispose()
    second_writer.dispose()
    assert not errors, errors
    with engine.connect() as connection:
        after = _set_of(connection, as_of)
        written_by = connection.execute(sa.text(
            "SELECT model_version_id, flow_run_id FROM forecast_sets WHERE as_of = :as_of"), {"as_of": as_of}).all()
    assert len(after) == 1
    assert after[0].row_count == after[0][3]
    assert [tuple(row) for row in written_by] == [("tiny-a", "run-second")]
    # Remove the extra set so the module's three sets stay as the other tests expect.
    with engine.begin() as connection:
        set_ids = sa.select(schema.forecast_sets.c.id).where(schema.forecast_sets.c.as_of == as_of)
        connection.execute(sa.delete(schema.forecasts).where(schema.forecasts.c.forecast_set_id.in_(set_ids)))
        connection.execute(sa.delete(schema.forecast_sets).where(schema.forecast_sets.c.as_of == as_of))
