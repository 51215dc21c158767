"""Ingest of real TouringPlans files: counts, rejections, re-runs, DST."""

import gzip

import pandas as pd
import pytest
import sqlalchemy as sa

from parkcast import schema
from parkcast.tasks.ingest import (
    IngestError,
    _localize,
    ingest_folder,
    ingest_wait_file,
    load_attractions,
    parse_clock_minutes,
)


def _count(engine, table) -> int:
    with engine.connect() as connection:
        return connection.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()


def test_ingest_slice_stores_every_valid_row(engine, real_slice):
    summary = ingest_folder.fn(engine, real_slice, 500)
    raw = sum(len(pd.read_csv(path, dtype=str)) for path in real_slice.glob("*.csv.gz") if "metadata" not in path.name)
    assert summary.files_read == 3
    assert summary.failed_files == {}
    assert summary.rows_read == raw
    assert summary.rows_stored + summary.rows_rejected <= raw
    assert _count(engine, schema.observations) == summary.rows_stored
    assert _count(engine, schema.rides) == 3
    assert _count(engine, schema.park_days) == 2079


def test_second_ingest_changes_nothing(engine, real_slice):
    ingest_folder.fn(engine, real_slice, 500)
    before = _count(engine, schema.observations), _count(engine, schema.rejected_rows)
    summary = ingest_folder.fn(engine, real_slice, 500)
    assert summary.files_skipped == 3
    assert summary.rows_stored == 0
    assert (_count(engine, schema.observations), _count(engine, schema.rejected_rows)) == before


def _write_ride_file(path, lines):
    with gzip.open(path, "wt") as handle:
        handle.write("date,datetime,SACTMIN,SPOSTMIN\n" + "\n".join(lines) + "\n")


def test_invalid_rows_are_quarantined_with_reason(sqlite_engine, real_slice, tmp_path):
    ride_ids = load_attractions(sqlite_engine, real_slice / "attractions.csv")
    path = tmp_path / "soarin.csv.gz"
    _write_ride_file(path, [
        "03/01/2019,2019-03-01 09:00:00,,45",  # valid
        "03/01/2019,2019-03-01 09:05:00,,-999",  # closed, stored as closure
        "03/01/2019,2019-03-01 09:10:00,,-5",  # negative posted wait
        "03/01/2019,2019-03-01 09:15:00,,900",  # above the cap
        "13/45/2019,2019-03-01 09:20:00,,30",  # unparseable date
        "03/01/2019,2019-03-01 09:00:00,,45",  # duplicate of line 2
    ])
    summary = ingest_wait_file(sqlite_engine, path, ride_ids["soarin"], 500)
    assert summary.rows_read == 6
    assert summary.rows_stored == 2
    assert summary.rows_rejected == 3
    with sqlite_engine.connect() as connection:
        rejected = connection.execute(sa.select(schema.rejected_rows.c.line_number, schema.rejected_rows.c.reason)
                                      .order_by(schema.rejected_rows.c.line_number)).all()
        closed = connection.execute(sa.select(schema.observations.c.is_closed, schema.observations.c.posted_wait)
                                    .order_by(schema.observations.c.observed_at)).all()
    assert [tuple(row) for row in rejected] == [
        (4, "negative posted wait"), (5, "posted wait above 500 minutes"), (6, "unparseable date")]
    assert [tuple(row) for row in closed] == [(False, 45), (True, None)]


def test_wrong_header_fails_file_with_fix(sqlite_engine, real_slice, tmp_path):
    ride_ids = load_attractions(sqlite_engine, real_slice / "attractions.csv")
    path = tmp_path / "soarin.csv"
    path.write_text("day,time,wait\n03/01/2019,09:00,45\n")
    with pytest.raises(IngestError, match=r"soarin.csv: header .* does not match"):
        ingest_wait_file(sqlite_engine, path, ride_ids["soarin"], 500)


def test_empty_file_fails_with_fix(sqlite_engine, real_slice, tmp_path):
    ride_ids = load_attractions(sqlite_engine, real_slice / "attractions.csv")
    path = tmp_path / "soarin.csv"
    path.write_text("")
    with pytest.raises(IngestError, match=r"soarin.csv: the file is empty; delete it or export it again"):
        ingest_wait_file(sqlite_engine, path, ride_ids["soarin"], 500)


def test_failed_file_leaves_other_files_stored(sqlite_engine, real_slice, tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    for path in real_slice.iterdir():
        (folder / path.name).write_bytes(path.read_bytes())
    (folder / "soarin.csv.gz").write_bytes(b"not a gzip file")
    summary = ingest_folder.fn(sqlite_engine, folder, 500)
    assert list(summary.failed_files) == ["soarin.csv.gz"]
    assert "cannot be read" in summary.failed_files["soarin.csv.gz"]
    assert summary.files_read == 2
    assert _count(sqlite_engine, schema.observations) == summary.rows_stored > 0


@pytest.mark.parametrize(
    ("text", "minutes"),
    [("8:00", 480), ("25:00", 1500), ("9:30", 570), ("", None), ("closed", None)],
    ids=["morning", "past-midnight", "half-hour", "empty", "text"],
)
def test_parse_clock_minutes(text, minutes):
    assert parse_clock_minutes(text) == minutes


def test_localize_handles_both_dst_changes():
    local = pd.Series(pd.to_datetime([
        "2019-03-10 01:50:00", "2019-03-10 02:30:00", "2019-03-10 03:10:00",  # spring: 02:30 does not exist
        "2019-11-03 01:20:00", "2019-11-03 01:50:00", "2019-11-03 01:10:00", "2019-11-03 01:40:00",  # autumn: repeated hour
    ]))
    utc = _localize(local).dt.strftime("%Y-%m-%d %H:%M").tolist()
    assert utc == [
        "2019-03-10 06:50", "2019-03-10 07:00", "2019-03-10 07:10",
        "2019-11-03 05:20", "2019-11-03 05:50", "2019-11-03 06:10", "2019-11-03 06:40",
    ]


def test_localize_resolves_each_autumn_alone():
    local = pd.Series(pd.to_datetime([
        "2018-11-04 01:20:00", "2018-11-04 01:10:00",  # 2018: the clock went back
        "2019-11-03 01:20:00", "2019-11-03 01:50:00", "2019-11-03 01:10:00",  # 2019: first pass, then back
    ]))
    utc = _localize(local).dt.strftime("%Y-%m-%d %H:%M").tolist()
    assert utc == ["2018-11-04 05:20", "2018-11-04 06:10", "2019-11-03 05:20", "2019-11-03 05:50", "2019-11-03 06:10"]


def test_localize_carries_fold_between_blocks():
    folds = {}
    first = _localize(pd.Series(pd.to_datetime(["2019-11-03 01:20:00", "2019-11-03 01:50:00"])), folds)
    second = _localize(pd.Series(pd.to_datetime(["2019-11-03 01:10:00", "2019-11-03 01:55:00"])), folds)
    assert first.dt.strftime("%H:%M").tolist() == ["05:20", "05:50"]
    assert second.dt.strftime("%H:%M").tolist() == ["06:10", "06:55"]
