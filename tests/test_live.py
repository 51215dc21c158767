"""Live queue-times.com snapshots, served by a local HTTP server inside the tests."""

import functools
import http.server
import threading
from datetime import date, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from parkcast import schema
from parkcast.cli import app
from parkcast.settings import get_settings
from parkcast.tasks.ingest import IngestError, load_attractions
from parkcast.tasks.live import poll_live
from tests.conftest import DATA_DIR

RECORDED = Path(__file__).parent / "data"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - signature of the base class
        pass


@pytest.fixture(scope="module")
def feed_url():
    """Base URL of a local server that serves tests/data on 127.0.0.1."""
    handler = functools.partial(_QuietHandler, directory=str(RECORDED))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _stored(engine):
    rides, obs = schema.rides, schema.observations
    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(rides.c.code, obs.c.park_day, obs.c.observed_at, obs.c.local_hour, obs.c.posted_wait,
                      obs.c.is_closed).join(rides, rides.c.id == obs.c.ride_id).order_by(rides.c.code)
        ).all()
    return [(r.code, r.park_day, r.observed_at.replace(tzinfo=None), r.local_hour, r.posted_wait, r.is_closed)
            for r in rows]


def test_live_feed_over_http(engine, feed_url):
    load_attractions(engine, DATA_DIR / "attractions.csv")
    summary = poll_live(engine, f"{feed_url}/queue_times_epcot.json", 500, default_park="EP")
    again = poll_live(engine, f"{feed_url}/queue_times_epcot.json", 500, default_park="EP")

    assert (summary.rows_read, summary.rows_stored, summary.rows_rejected) == (6, 4, 1)
    assert summary.rejected_by_reason == {"negative posted wait": 1}
    assert summary.rides_added == ["queue_times_160", "queue_times_164"]
    assert again.files_skipped == 1
    assert again.rows_stored == 0
    day = date(2019, 3, 1)
    assert _stored(engine) == [
        ("queue_times_160", day, datetime(2019, 3, 1, 15, 2, 11), 10, None, True),
        ("queue_times_164", day, datetime(2019, 3, 2, 5, 30), 0, 45, False),  # 00:30 local, after midnight
        ("soarin", day, datetime(2019, 3, 1, 15, 2, 11), 10, 70, False),
        ("spaceship_earth", day, datetime(2019, 3, 1, 15, 2, 11), 10, 25, False),
    ]
    with engine.connect() as connection:
        line = connection.execute(sa.select(schema.rejected_rows.c.line_number)).scalar_one()
    assert line == 5


def test_live_park_by_name_in_parks_list(sqlite_engine, tmp_path):
    load_attractions(sqlite_engine, DATA_DIR / "attractions.csv")
    path = tmp_path / "parks.json"
    path.write_text('{"parks": [{"name": "Epcot", "lands": [{"name": "World Nature", "rides": ['
                    '{"id": 161, "name": "Soarin\'", "is_open": true, "wait_time": 30,'
                    ' "last_updated": "2019-07-01T16:00:00Z"}]}]}]}')
    summary = poll_live(sqlite_engine, str(path), 500)
    assert summary.rows_stored == 1
    assert _stored(sqlite_engine) == [("soarin", date(2019, 7, 1), datetime(2019, 7, 1, 16, 0), 12, 30, False)]


def test_live_unknown_park_is_quarantined(sqlite_engine, tmp_path):
    path = tmp_path / "park.json"
    path.write_text('{"lands": [], "rides": [{"id": 1, "name": "X", "is_open": true, "wait_time": 5,'
                    ' "last_updated": "2019-07-01T16:00:00Z"}]}')
    summary = poll_live(sqlite_engine, str(path), 500)
    assert summary.rejected_by_reason == {"live ride of an unknown park; set PARKCAST_LIVE_PARK": 1}
    assert _stored(sqlite_engine) == []


@pytest.mark.parametrize(
    ("name", "body", "message"),
    [("missing.json", None, "cannot be read"), ("bad.json", "{not json", "invalid JSON"),
     ("list.json", "[1, 2]", "expected an object with 'parks' or 'lands'")],
    ids=["not-found", "invalid-json", "wrong-shape"],
)
def test_live_bad_source_names_fix(sqlite_engine, feed_url, tmp_path, name, body, message):
    if body is not None:
        (tmp_path / name).write_text(body)
        source = str(tmp_path / name)
    else:
        source = f"{feed_url}/{name}"
    with pytest.raises(IngestError, match=message) as error:
        poll_live(sqlite_engine, source, 500)
    assert source in str(error.value)


def test_poll_live_command(sqlite_url, feed_url, monkeypatch):
    monkeypatch.setenv("PARKCAST_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("PARKCAST_LIVE_PARK", "EP")
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["poll-live", f"{feed_url}/queue_times_epcot.json",
                                          "--every", "0.01", "--count", "2"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert "Live poll 1/2: 6 rides read, 4 stored, 1 rejected, 0 unchanged snapshots" in result.output
    assert "Live poll 2/2: 0 rides read, 0 stored, 0 rejected, 1 unchanged snapshots" in result.output


def test_live_odd_values_are_quarantined(sqlite_engine, tmp_path):
    load_attractions(sqlite_engine, DATA_DIR / "attractions.csv")
    rides = [
        '{"id": 1, "name": "Soarin\'", "is_open": true, "wait_time": NaN, "last_updated": "2019-07-01T16:00:00Z"}',
        '{"id": 2, "name": "Soarin\'", "is_open": "yes", "wait_time": 5, "last_updated": "2019-07-01T16:00:00Z"}',
        '{"id": 3, "name": "Soarin\'", "is_open": true, "wait_time": 999, "last_updated": "2019-07-01T16:00:00Z"}',
        '{"id": 4, "name": "Soarin\'", "is_open": true, "wait_time": 5, "last_updated": "yesterday"}',
        '{"id": 5, "name": "", "is_open": true, "wait_time": 5, "last_updated": "2019-07-01T16:00:00Z"}',
        '7',
    ]
    path = tmp_path / "park.json"
    path.write_text('{"name": "Epcot", "lands": [{"rides": [' + ", ".join(rides) + "]}]}")
    summary = poll_live(sqlite_engine, str(path), 500)
    assert summary.rows_stored == 0
    assert summary.rejected_by_reason == {
        "non-numeric live wait_time": 1, "live is_open is not true or false": 1,
        "posted wait above 500 minutes": 1, "unparseable live last_updated": 1, "live ride without id or name": 2,
    }
