"""Ingest rules on small real-shaped files: incremental reads, validation, metadata quirks."""

import gzip
import logging
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from parkcast import schema
from parkcast.tasks.ingest import IngestSummary, ingest_folder, ingest_wait_file, load_attractions, load_park_days
from tests.conftest import DATA_DIR

HEADER = "date,datetime,SACTMIN,SPOSTMIN\n"


def _observations(engine):
    table = schema.observations
    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(table.c.park_day, table.c.observed_at, table.c.local_hour, table.c.posted_wait,
                      table.c.actual_wait, table.c.is_closed).order_by(table.c.observed_at)
        ).all()
    return [(r.park_day, r.observed_at.replace(tzinfo=None), r.local_hour, r.posted_wait, r.actual_wait,
             r.is_closed) for r in rows]


def _rejected(engine):
    table = schema.rejected_rows
    with engine.connect() as connection:
        rows = connection.execute(sa.select(table.c.line_number, table.c.reason).order_by(table.c.line_number))
        return [tuple(r) for r in rows]


@pytest.fixture
def soarin_id(engine):
    return load_attractions(engine, DATA_DIR / "attractions.csv")["soarin"]


def test_grown_csv_reads_only_new_lines(engine, soarin_id, tmp_path):
    path = tmp_path / "soarin.csv"
    path.write_text(HEADER + "03/01/2019,2019-03-01 09:00:00,,45\n03/01/2019,2019-03-01 09:05:00,,-5\n")
    first = ingest_wait_file(engine, path, soarin_id, 500)
    with path.open("a") as handle:
        handle.write("03/01/2019,2019-03-01 09:10:00,,50\n03/01/2019,2019-03-01 09:15:00,,-7\n")
    second = ingest_wait_file(engine, path, soarin_id, 500)
    third = ingest_wait_file(engine, path, soarin_id, 500)

    assert (first.rows_read, first.rows_stored, first.rows_rejected) == (2, 1, 1)
    assert (second.rows_read, second.rows_stored, second.rows_rejected) == (2, 1, 1)
    assert second.files_resumed == 1
    assert third.files_skipped == 1
    assert third.rows_read == 0
    assert [row[3] for row in _observations(engine)] == [45, 50]
    # Line numbers continue across runs: header is line 1.
    assert _rejected(engine) == [(3, "negative posted wait"), (5, "negative posted wait")]


def test_grown_gzip_export_resumes(sqlite_engine, tmp_path):
    ride_id = load_attractions(sqlite_engine, DATA_DIR / "attractions.csv")["soarin"]
    path = tmp_path / "soarin.csv.gz"
    lines = [f"03/01/2019,2019-03-01 10:{minute:02d}:00,,{minute}\n" for minute in range(10)]
    with gzip.open(path, "wt") as handle:
        handle.write(HEADER + "".join(lines[:6]))
    ingest_wait_file(sqlite_engine, path, ride_id, 500)
    with gzip.open(path, "wt") as handle:  # a new, longer export of the same history
        handle.write(HEADER + "".join(lines))
    summary = ingest_wait_file(sqlite_engine, path, ride_id, 500)
    assert summary.files_resumed == 1
    assert summary.rows_read == 4
    assert summary.rows_stored == 4
    assert [row[3] for row in _observations(sqlite_engine)] == list(range(10))


def test_replaced_export_read_whole_keeps_rows(sqlite_engine, tmp_path):
    ride_id = load_attractions(sqlite_engine, DATA_DIR / "attractions.csv")["soarin"]
    path = tmp_path / "soarin.csv"
    path.write_text(HEADER + "03/01/2019,2019-03-01 09:00:00,,45\n03/01/2019,2019-03-01 09:05:00,,abc\n")
    ingest_wait_file(sqlite_engine, path, ride_id, 500)
    # A different export: its first line differs, so nothing can be resumed.
    path.write_text(HEADER + "03/01/2019,2019-03-01 08:55:00,,40\n03/01/2019,2019-03-01 09:00:00,,45\n"
                    "03/01/2019,2019-03-01 09:05:00,,xyz\n")
    summary = ingest_wait_file(sqlite_engine, path, ride_id, 500)
    assert summary.files_resumed == 0
    assert (summary.rows_read, summary.rows_stored, summary.rows_rejected) == (3, 1, 1)
    assert [row[3] for row in _observations(sqlite_engine)] == [40, 45]
    # The first export's rejection stays, linked to its retired source_files row.
    assert _rejected(sqlite_engine) == [(3, "non-numeric SPOSTMIN"), (4, "non-numeric SPOSTMIN")]
    with sqlite_engine.connect() as connection:
        paths = connection.execute(sa.select(schema.source_files.c.path).order_by(schema.source_files.c.id)).scalars()
        paths = list(paths)
    assert paths[0].startswith(f"{path} (replaced ")
    assert paths[1] == str(path)

    # The replacement is now the base for incremental reads.
    with path.open("a") as handle:
        handle.write("03/01/2019,2019-03-01 09:20:00,,60\n")
    grown = ingest_wait_file(sqlite_engine, path, ride_id, 500)
    assert grown.files_resumed == 1
    assert grown.rows_read == 1
    assert [row[3] for row in _observations(sqlite_engine)] == [40, 45, 60]


def test_overlapping_export_adds_only_new(sqlite_engine, real_slice, tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "attractions.csv").write_bytes((real_slice / "attractions.csv").read_bytes())
    (folder / "soarin.csv").write_text(HEADER + "03/01/2019,2019-03-01 09:00:00,,45\n")
    (folder / "soarin.2019-03-export.csv").write_text(
        HEADER + "03/01/2019,2019-03-01 09:00:00,,45\n03/01/2019,2019-03-01 09:10:00,,55\n")
    summary = ingest_folder.fn(sqlite_engine, folder, 500)
    again = ingest_folder.fn(sqlite_engine, folder, 500)
    assert summary.files_read == 2
    assert summary.rows_read == 3
    assert summary.rows_stored == 2
    assert again.files_skipped == 2
    assert again.rows_stored == 0
    assert [row[3] for row in _observations(sqlite_engine)] == [45, 55]


def test_unterminated_last_line_waits(sqlite_engine, tmp_path):
    ride_id = load_attractions(sqlite_engine, DATA_DIR / "attractions.csv")["soarin"]
    path = tmp_path / "soarin.csv"
    path.write_text(HEADER + "03/01/2019,2019-03-01 09:00:00,,45\n03/01/2019,2019-03-01 09:05:00,,5")
    first = ingest_wait_file(sqlite_engine, path, ride_id, 500)
    with path.open("a") as handle:
        handle.write("5\n")
    second = ingest_wait_file(sqlite_engine, path, ride_id, 500)
    assert first.lines_pending == 1
    assert first.rows_stored == 1
    assert second.files_resumed == 1
    assert second.rows_stored == 1
    assert [row[3] for row in _observations(sqlite_engine)] == [45, 55]


def test_unlisted_ride_uses_default_park(sqlite_engine, real_slice, tmp_path, caplog):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "attractions.csv").write_bytes((real_slice / "attractions.csv").read_bytes())
    (folder / "tron.csv").write_text(HEADER + "03/01/2019,2019-03-01 09:00:00,,45\n")
    without = ingest_folder.fn(sqlite_engine, folder, 500)
    assert "set PARKCAST_DEFAULT_PARK" in without.failed_files["tron.csv"]
    assert _observations(sqlite_engine) == []

    with caplog.at_level(logging.WARNING, logger="parkcast"):
        summary = ingest_folder.fn(sqlite_engine, folder, 500, default_park="MK")
    assert "Ride 'tron' of tron.csv is in no attractions*.csv file; stored it in park MK" in caplog.text
    assert summary.rides_added == ["tron"]
    assert summary.rows_stored == 1
    with sqlite_engine.connect() as connection:
        ride = connection.execute(sa.select(schema.rides).where(schema.rides.c.code == "tron")).one()
    assert (ride.name, ride.park_code, ride.park_name) == ("tron", "MK", "Magic Kingdom")


def test_unlisted_ride_from_extra_attractions_file(sqlite_engine, real_slice, tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "attractions.csv").write_bytes((real_slice / "attractions.csv").read_bytes())
    (folder / "attractions_new.csv").write_text(
        "ride,name,short_name,park,land,opened_on,duration,average_wait_per_hundred\n"
        "tron,TRON Lightcycle / Run,TRON,Magic Kingdom,Tomorrowland,2023-04-04,2.0,3.0\n")
    (folder / "tron.csv").write_text(HEADER + "03/01/2019,2019-03-01 09:00:00,,45\n")
    summary = ingest_folder.fn(sqlite_engine, folder, 500)
    assert summary.failed_files == {}
    assert summary.rides_added == []
    assert summary.rows_stored == 1


def test_validation_rules_exact_rows(engine, soarin_id, tmp_path):
    path = tmp_path / "soarin.csv"
    path.write_text(HEADER + "".join([
        "03/01/2019,2019-03-01 09:00:00,,45\n",  # 2 valid posted wait
        "03/01/2019,2019-03-01 09:05:00,,-999\n",  # 3 closure
        "03/01/2019,2019-03-01 09:07:00,23,\n",  # 4 empty posted: actual only
        "03/01/2019,2019-03-01 09:08:00,,\n",  # 5 no value at all
        "03/01/2019,2019-03-02 00:30:00,,20\n",  # 6 after midnight, same park day
        "03/01/2019,2019-03-01 09:10:00,3000,\n",  # 7 actual wait of 3000 minutes
        "03/01/2019,2019-03-01 09:11:00,,501\n",  # 8 above the posted cap
        "03/01/2019,2019-03-01 09:12:00,,-1\n",  # 9 negative posted wait
        "03/01/2019,not a time,,30\n",  # 10 unparseable datetime
        "2019-03-01,2019-03-01 09:13:00,,30\n",  # 11 unparseable date
        "03/01/2019,2019-03-01 09:14:00,,30,extra\n",  # 12 too many fields
        "03/01/2019,2019-03-01 09:00:00,,45\n",  # 13 duplicate of line 2
        "03/01/2019,2019-03-01 09:15:00,-4,\n",  # 14 negative actual wait
    ]))
    summary = ingest_wait_file(engine, path, soarin_id, 500)
    assert (summary.rows_read, summary.rows_stored, summary.rows_rejected) == (13, 4, 8)
    assert summary.rejected_by_reason == {
        "no wait value": 1, "actual wait above 600 minutes": 1, "posted wait above 500 minutes": 1,
        "negative posted wait": 1, "unparseable datetime": 1, "unparseable date": 1,
        "expected 4 comma-separated fields": 1, "negative actual wait": 1,
    }
    day = date(2019, 3, 1)
    assert _observations(engine) == [
        (day, datetime(2019, 3, 1, 14, 0), 9, 45, None, False),
        (day, datetime(2019, 3, 1, 14, 5), 9, None, None, True),
        (day, datetime(2019, 3, 1, 14, 7), 9, None, 23, False),
        (day, datetime(2019, 3, 2, 5, 30), 0, 20, None, False),
    ]
    assert _rejected(engine) == [
        (5, "no wait value"), (7, "actual wait above 600 minutes"), (8, "posted wait above 500 minutes"),
        (9, "negative posted wait"), (10, "unparseable datetime"), (11, "unparseable date"),
        (12, "expected 4 comma-separated fields"), (14, "negative actual wait"),
    ]
    with engine.connect() as connection:
        raw = connection.execute(sa.select(schema.rejected_rows.c.raw)
                                 .where(schema.rejected_rows.c.line_number == 12)).scalar_one()
        source = connection.execute(sa.select(schema.source_files.c.path)).scalar_one()
    assert raw == "03/01/2019,2019-03-01 09:14:00,,30,extra"
    assert source == str(path)


def test_dst_changes_in_a_file(engine, soarin_id, tmp_path):
    path = tmp_path / "soarin.csv"
    path.write_text(HEADER + "".join([
        "03/09/2019,2019-03-10 01:50:00,,10\n",  # before the spring change (EST)
        "03/09/2019,2019-03-10 02:30:00,,11\n",  # does not exist locally: shifted to 03:00 EDT
        "03/10/2019,2019-03-10 09:00:00,,12\n",  # EDT
        "11/02/2019,2019-11-03 01:20:00,,20\n",  # first 01:20, still EDT
        "11/02/2019,2019-11-03 01:50:00,,21\n",
        "11/02/2019,2019-11-03 01:10:00,,22\n",  # clock went back: EST
        "11/03/2019,2019-11-03 09:00:00,,23\n",  # EST
    ]))
    ingest_wait_file(engine, path, soarin_id, 500)
    assert [(row[1], row[2], row[3]) for row in _observations(engine)] == [
        (datetime(2019, 3, 10, 6, 50), 1, 10),
        (datetime(2019, 3, 10, 7, 0), 2, 11),
        (datetime(2019, 3, 10, 13, 0), 9, 12),
        (datetime(2019, 11, 3, 5, 20), 1, 20),
        (datetime(2019, 11, 3, 5, 50), 1, 21),
        (datetime(2019, 11, 3, 6, 10), 1, 22),
        (datetime(2019, 11, 3, 14, 0), 9, 23),
    ]


def test_unreadable_file_message_names_fix(sqlite_engine, real_slice, tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "attractions.csv").write_bytes((real_slice / "attractions.csv").read_bytes())
    (folder / "soarin.csv").write_text(HEADER + "03/01/2019,2019-03-01 09:00:00,,45\n")
    ingest_folder.fn(sqlite_engine, folder, 500)
    before = _observations(sqlite_engine)
    (folder / "soarin.csv").write_bytes(HEADER.encode() + b"03/01/2019,2019-03-01 09:10:00,,\xff\xfe\n")
    (folder / "slinky_dog.csv").write_text(HEADER + "03/01/2019,2019-03-01 09:00:00,,60\n")
    summary = ingest_folder.fn(sqlite_engine, folder, 500)
    message = summary.failed_files["soarin.csv"]
    assert str(folder / "soarin.csv") in message
    assert "replace it with a valid TouringPlans CSV" in message
    assert summary.rows_stored == 1  # slinky_dog
    assert [row for row in _observations(sqlite_engine) if row[3] == 45] == before


def test_metadata_quirks(sqlite_engine, tmp_path):
    path = tmp_path / "touringplans_metadata.csv"
    path.write_bytes(
        "\ufeffDATE,inSession,MKOPEN,MKCLOSE,EPOPEN,EPCLOSE\n"
        "03/01/2019,67%,8:00,25:00,9:00,21:00\n"
        "03/03/2019,0%,9:00,23:00,,\n".encode("utf-8")
    )
    assert load_park_days(sqlite_engine, path) == 2
    with sqlite_engine.connect() as connection:
        days = connection.execute(sa.select(schema.park_days).order_by(schema.park_days.c.park_day)).all()
        hours = connection.execute(sa.select(schema.park_hours).order_by(
            schema.park_hours.c.park_day, schema.park_hours.c.park_code)).all()
    assert [d.park_day for d in days] == [date(2019, 3, 1), date(2019, 3, 3)]  # 03/02 is missing
    assert days[0].attributes["inSession"] == "67%"
    assert "DATE" in days[0].attributes
    assert [tuple(h) for h in hours] == [
        (date(2019, 3, 1), "EP", 540, 1260), (date(2019, 3, 1), "MK", 480, 1500), (date(2019, 3, 3), "MK", 540, 1380),
    ]


def test_bulk_rows_match_sqlalchemy_key(engine, soarin_id, tmp_path):
    from parkcast.tasks.ingest import insert_ignoring_duplicates

    path = tmp_path / "soarin.csv"
    path.write_text(HEADER + "03/01/2019,2019-03-01 09:00:00,,45\n")
    ingest_wait_file(engine, path, soarin_id, 500)
    same = {"ride_id": soarin_id, "park_day": date(2019, 3, 1), "observed_at": datetime(2019, 3, 1, 14, 0),
            "local_hour": 9, "posted_wait": 99, "actual_wait": None, "is_closed": False, "source_file_id": None}
    with engine.begin() as connection:
        inserted = insert_ignoring_duplicates(connection, schema.observations, [same])
    assert inserted == 0
    assert [row[3] for row in _observations(engine)] == [45]


def test_non_integer_waits_quarantined(engine, soarin_id, tmp_path):
    path = tmp_path / "soarin.csv"
    path.write_text(HEADER + "".join([
        "03/01/2019,2019-03-01 09:00:00,,4.5\n",  # 2 fractional posted wait
        "03/01/2019,2019-03-01 09:05:00,12.25,\n",  # 3 fractional actual wait
        "03/01/2019,2019-03-01 09:10:00,,1e1\n",  # 4 a whole number written with an exponent
        "03/01/2019,2019-03-01 09:15:00,7.0,\n",  # 5 a whole number written as a decimal
    ]))
    summary = ingest_wait_file(engine, path, soarin_id, 500)
    assert (summary.rows_read, summary.rows_stored, summary.rows_rejected) == (4, 2, 2)
    assert summary.rejected_by_reason == {"non-integer SPOSTMIN": 1, "non-integer SACTMIN": 1}
    assert _rejected(engine) == [(2, "non-integer SPOSTMIN"), (3, "non-integer SACTMIN")]
    day = date(2019, 3, 1)
    assert _observations(engine) == [
        (day, datetime(2019, 3, 1, 14, 10), 9, 10, None, False),
        (day, datetime(2019, 3, 1, 14, 15), 9, None, 7, False),
    ]


def test_crlf_export_exact_rows(engine, soarin_id, tmp_path):
    path = tmp_path / "soarin.csv"
    path.write_bytes(
        b"date,datetime,SACTMIN,SPOSTMIN\r\n"
        b"03/01/2019,2019-03-01 09:00:00,,45\r\n"
        b"03/01/2019,2019-03-01 09:05:00,,-999\r\n"
        b"03/01/2019,2019-03-01 09:10:00,,abc\r\n"
        b"03/01/2019,2019-03-01 09:15:00,30,\r\n"
    )
    summary = ingest_wait_file(engine, path, soarin_id, 500)
    assert (summary.rows_read, summary.rows_stored, summary.rows_rejected) == (4, 3, 1)
    day = date(2019, 3, 1)
    assert _observations(engine) == [
        (day, datetime(2019, 3, 1, 14, 0), 9, 45, None, False),
        (day, datetime(2019, 3, 1, 14, 5), 9, None, None, True),
        (day, datetime(2019, 3, 1, 14, 15), 9, None, 30, False),
    ]
    assert _rejected(engine) == [(4, "non-numeric SPOSTMIN")]
    with engine.connect() as connection:
        raw = connection.execute(sa.select(schema.rejected_rows.c.raw)).scalar_one()
    assert raw == "03/01/2019,2019-03-01 09:10:00,,abc"


def test_wrong_header_fails_only_that_file(sqlite_engine, real_slice, tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "attractions.csv").write_bytes((real_slice / "attractions.csv").read_bytes())
    # SACTMIN and SPOSTMIN swapped: reading it would store actual waits as posted waits.
    (folder / "soarin.csv").write_text("date,datetime,SPOSTMIN,SACTMIN\n03/01/2019,2019-03-01 09:00:00,45,\n")
    (folder / "slinky_dog.csv").write_text(HEADER + "03/01/2019,2019-03-01 09:00:00,,60\n")
    summary = ingest_folder.fn(sqlite_engine, folder, 500)
    assert list(summary.failed_files) == ["soarin.csv"]
    message = summary.failed_files["soarin.csv"]
    assert message.startswith(f"{folder / 'soarin.csv'}: header ['date', 'datetime', 'SPOSTMIN', 'SACTMIN']")
    assert message.endswith("export the file in the TouringPlans wait-time layout")
    assert (summary.files_read, summary.rows_read, summary.rows_stored) == (1, 1, 1)
    assert _observations(sqlite_engine) == [(date(2019, 3, 1), datetime(2019, 3, 1, 14, 0), 9, 60, None, False)]
    with sqlite_engine.connect() as connection:
        paths = connection.execute(sa.select(schema.source_files.c.path)).scalars().all()
    assert paths == [str(folder / "slinky_dog.csv")]


def test_truncated_gzip_rolls_back_file(sqlite_engine, real_slice, tmp_path, monkeypatch):
    from parkcast.tasks import ingest

    # Small blocks, so that the truncated file stores several blocks before its read fails.
    monkeypatch.setattr(ingest, "_BLOCK_BYTES", 256)
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "attractions.csv").write_bytes((real_slice / "attractions.csv").read_bytes())
    lines = [f"03/01/2019,2019-03-01 {9 + minute // 60:02d}:{minute % 60:02d}:00,,{minute % 90}\n"
             for minute in range(300)]
    with gzip.open(folder / "soarin.csv.gz", "wt") as handle:
        handle.write(HEADER + "".join(lines[:100]))
    first = ingest_folder.fn(sqlite_engine, folder, 500)
    before = _observations(sqlite_engine)
    with sqlite_engine.connect() as connection:
        record_before = connection.execute(sa.select(schema.source_files)).one()

    # A longer export of the same ride whose download stopped part-way.
    complete = gzip.compress((HEADER + "".join(lines)).encode(), compresslevel=1)
    (folder / "soarin.csv.gz").write_bytes(complete[: len(complete) * 3 // 4])
    (folder / "slinky_dog.csv").write_text(HEADER + "03/01/2019,2019-03-01 09:00:00,,60\n")
    summary = ingest_folder.fn(sqlite_engine, folder, 500)

    assert first.rows_stored == 100
    assert list(summary.failed_files) == ["soarin.csv.gz"]
    message = summary.failed_files["soarin.csv.gz"]
    assert message.startswith(f"{folder / 'soarin.csv.gz'}: cannot be read (EOFError")
    assert message.endswith("replace it with a valid TouringPlans CSV or .csv.gz export")
    assert (summary.files_read, summary.rows_stored) == (1, 1)  # slinky_dog only
    slinky_row = (date(2019, 3, 1), datetime(2019, 3, 1, 14, 0), 9, 60, None, False)
    assert sorted(_observations(sqlite_engine), key=repr) == sorted(before + [slinky_row], key=repr)
    with sqlite_engine.connect() as connection:
        records = connection.execute(sa.select(schema.source_files).order_by(schema.source_files.c.id)).all()
    assert records[0] == record_before

    (folder / "soarin.csv.gz").write_bytes(complete)
    repaired = ingest_folder.fn(sqlite_engine, folder, 500)
    assert repaired.failed_files == {}
    assert repaired.files_resumed == 1
    assert (repaired.rows_read, repaired.rows_stored) == (200, 200)


def test_metadata_and_attractions_are_upserted(engine, tmp_path):
    metadata = tmp_path / "touringplans_metadata.csv"
    metadata.write_text("DATE,inSession,MKOPEN,MKCLOSE\n03/01/2019,67%,8:00,23:00\n")
    load_park_days(engine, metadata)
    metadata.write_text("DATE,inSession,MKOPEN,MKCLOSE\n03/01/2019,70%,8:00,25:00\n03/02/2019,0%,9:00,22:00\n")
    assert load_park_days(engine, metadata) == 2

    attractions = tmp_path / "attractions.csv"
    attractions.write_text("ride,name,short_name,park,land,opened_on,duration,average_wait_per_hundred\n"
                           "tron,TRON,TRON,Magic Kingdom,Tomorrowland,2023-04-04,2.0,3.0\n")
    first_ids = load_attractions(engine, attractions)
    attractions.write_text("ride,name,short_name,park,land,opened_on,duration,average_wait_per_hundred\n"
                           "tron,TRON Lightcycle / Run,TRON,Magic Kingdom,Tomorrowland,2023-04-04,2.5,3.0\n")
    second_ids = load_attractions(engine, attractions)

    with engine.connect() as connection:
        days = connection.execute(sa.select(schema.park_days).order_by(schema.park_days.c.park_day)).all()
        hours = connection.execute(sa.select(schema.park_hours).order_by(schema.park_hours.c.park_day)).all()
        rides = connection.execute(sa.select(schema.rides.c.code, schema.rides.c.name,
                                             schema.rides.c.duration_minutes)).all()
    assert [(d.park_day, d.attributes["inSession"]) for d in days] == [(date(2019, 3, 1), "70%"),
                                                                       (date(2019, 3, 2), "0%")]
    assert [tuple(h) for h in hours] == [(date(2019, 3, 1), "MK", 480, 1500), (date(2019, 3, 2), "MK", 540, 1320)]
    assert [tuple(r) for r in rides] == [("tron", "TRON Lightcycle / Run", 2.5)]
    assert first_ids == second_ids


def test_run_summary_counts_quarantine(sqlite_engine, real_slice, tmp_path):
    from parkcast.summary import format_daily_summary
    from parkcast.tasks.predict import ForecastResult

    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "attractions.csv").write_bytes((real_slice / "attractions.csv").read_bytes())
    (folder / "soarin.csv").write_text(HEADER + "".join([
        "03/01/2019,2019-03-01 09:00:00,,45\n",
        "03/01/2019,2019-03-01 09:05:00,,-5\n",
        "03/01/2019,2019-03-01 09:10:00,,720\n",
        "03/01/2019,2019-03-01 09:15:00,,-3\n",
    ]))
    (folder / "slinky_dog.csv.gz").write_bytes(b"not a gzip file")
    ingest = ingest_folder.fn(sqlite_engine, folder, 500)

    class Summary:
        database = "sqlite://"
        retrain = None
        champion_id = "v1"
        champion_problems = []
        forecast = ForecastResult(date(2019, 3, 1), 10, 0, False)

    Summary.ingest = ingest
    lines = format_daily_summary(Summary()).splitlines()
    assert lines[0] == "Ingest: 1 files read, 0 unchanged; 4 rows read, 1 stored, 3 rejected"
    assert lines[1] == "  rejected for negative posted wait: 2"
    assert lines[2] == "  rejected for posted wait above 500 minutes: 1"
    assert lines[3].startswith(f"  FAILED slinky_dog.csv.gz: {folder / 'slinky_dog.csv.gz'}: cannot be read")


@pytest.mark.parametrize("went_back_before_resume", [True, False])
def test_dst_fold_survives_resume(engine, soarin_id, tmp_path, went_back_before_resume):
    """A grown file resumed inside the autumn repeated hour keeps reading it as the clock was."""
    path = tmp_path / "soarin.csv"
    first = ["11/02/2019,2019-11-03 01:20:00,,20\n", "11/02/2019,2019-11-03 01:50:00,,21\n"]
    if went_back_before_resume:
        first.append("11/02/2019,2019-11-03 01:05:00,,22\n")  # clock went back: EST
    path.write_text(HEADER + "".join(first))
    ingest_wait_file(engine, path, soarin_id, 500)
    with path.open("a") as handle:
        handle.write("11/02/2019,2019-11-03 01:55:00,,23\n")
    second = ingest_wait_file(engine, path, soarin_id, 500)

    assert second.files_resumed == 1
    stored = [(row[1], row[3]) for row in _observations(engine)]
    if went_back_before_resume:
        assert stored == [(datetime(2019, 11, 3, 5, 20), 20), (datetime(2019, 11, 3, 5, 50), 21),
                          (datetime(2019, 11, 3, 6, 5), 22), (datetime(2019, 11, 3, 6, 55), 23)]
    else:
        # 01:55 after 01:50 is still daylight time: the clock has not gone back yet.
        assert stored == [(datetime(2019, 11, 3, 5, 20), 20), (datetime(2019, 11, 3, 5, 50), 21),
                          (datetime(2019, 11, 3, 5, 55), 23)]


def test_dst_fold_split_across_blocks(engine, soarin_id, tmp_path, monkeypatch):
    from parkcast.tasks import ingest

    lines = ["11/02/2019,2019-11-03 01:20:00,,20\n", "11/02/2019,2019-11-03 01:50:00,,21\n",
             "11/02/2019,2019-11-03 01:10:00,,22\n", "11/02/2019,2019-11-03 01:40:00,,23\n"]
    # One line per block: the clock goes back between two blocks.
    monkeypatch.setattr(ingest, "_BLOCK_BYTES", len(lines[0]))
    path = tmp_path / "soarin.csv"
    path.write_text(HEADER + "".join(lines))
    summary = ingest_wait_file(engine, path, soarin_id, 500)
    assert summary.rows_stored == 4
    assert [(row[1], row[3]) for row in _observations(engine)] == [
        (datetime(2019, 11, 3, 5, 20), 20),
        (datetime(2019, 11, 3, 5, 50), 21),
        (datetime(2019, 11, 3, 6, 10), 22),
        (datetime(2019, 11, 3, 6, 40), 23),
    ]


def test_future_dates_quarantined(engine, soarin_id, tmp_path):
    # Park days up to tomorrow in the park's zone are accepted; the day after is not.
    soon = datetime.now(ZoneInfo("America/New_York")).date() + timedelta(days=2)
    path = tmp_path / "soarin.csv"
    path.write_text(HEADER + "".join([
        "03/01/2019,2019-03-01 09:00:00,,45\n",  # 2 a past day
        "01/01/2099,2099-01-01 10:00:00,,45\n",  # 3 far in the future
        f"{soon:%m/%d/%Y},{soon:%Y-%m-%d} 10:00:00,,30\n",  # 4 the day after tomorrow
    ]))
    summary = ingest_wait_file(engine, path, soarin_id, 500)
    assert (summary.rows_read, summary.rows_stored, summary.rows_rejected) == (3, 1, 2)
    assert summary.rejected_by_reason == {"date in the future": 2}
    assert _rejected(engine) == [(3, "date in the future"), (4, "date in the future")]
    assert [row[0] for row in _observations(engine)] == [date(2019, 3, 1)]


def test_invalid_metadata_rows_skipped(sqlite_engine, tmp_path, caplog):
    """A bad row never overwrites a stored day; the good rows of the file load."""
    path = tmp_path / "touringplans_metadata.csv"
    path.write_text(
        "DATE,inSession,MKOPEN,MKCLOSE\n"
        "03/01/2019,67%,8:00,23:00\n"
        "03/02/2019,50%,9:00,22:00\n"
    )
    assert load_park_days(sqlite_engine, path) == 2
    path.write_text(
        "DATE,inSession,MKOPEN,MKCLOSE\n"
        "13/45/2019,10%,8:00,23:00\n"  # 2 unparseable date
        "03/01/2019,99%,banana,99:99\n"  # 3 invalid opening time
        "03/02/2019,50%,22:00,9:00\n"  # 4 closes before it opens
        "03/03/2019,40%,9:00,21:00\n"  # 5 valid
    )
    summary = IngestSummary()
    with caplog.at_level(logging.WARNING):
        assert load_park_days(sqlite_engine, path, summary) == 1
    assert summary.rejected_by_reason == {"park-day metadata row skipped (see the log)": 3}
    assert "touringplans_metadata.csv line 2 skipped: unparseable metadata DATE '13/45/2019'" in caplog.text
    assert "line 3 skipped: invalid MKOPEN 'banana'" in caplog.text
    assert "line 4 skipped: MKCLOSE '9:00' is not after MKOPEN '22:00'" in caplog.text
    with sqlite_engine.connect() as connection:
        days = connection.execute(sa.select(schema.park_days).order_by(schema.park_days.c.park_day)).all()
        hours = connection.execute(sa.select(schema.park_hours).order_by(schema.park_hours.c.park_day)).all()
    assert [(d.park_day, d.attributes["inSession"]) for d in days] == [
        (date(2019, 3, 1), "67%"), (date(2019, 3, 2), "50%"), (date(2019, 3, 3), "40%")]
    assert [tuple(h) for h in hours] == [
        (date(2019, 3, 1), "MK", 480, 1380), (date(2019, 3, 2), "MK", 540, 1320), (date(2019, 3, 3), "MK", 540, 1260)]
