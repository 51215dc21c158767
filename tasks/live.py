"""Ingest live wait-time snapshots in the queue-times.com JSON shape.

A snapshot is one park (an object with "lands", each with "rides", plus an
optional top-level "rides" list for rides outside any land) or an object
with "parks", a list of such parks. Each ride has an id, a name, is_open,
wait_time in minutes and last_updated, an ISO 8601 time in UTC.
"""

from __future__ import annotations

import hashlib
import json
import math
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from parkcast import schema
from parkcast.logs import get_logger
from parkcast.tasks.ingest import (
    LOCAL_ZONE,
    MAX_HOURS_AFTER_MIDNIGHT,
    PARK_CODES,
    IngestError,
    IngestSummary,
    add_unlisted_ride,
    insert_ignoring_duplicates,
    store_observations,
)

__all__ = ["LiveRide", "fetch_snapshot", "parse_snapshot", "ingest_snapshot", "poll_live"]

FETCH_TIMEOUT_SECONDS = 30


@dataclass
class LiveRide:
    """One ride of a snapshot, with the park it was listed under."""

    position: int  # 1-based order in the snapshot; stored as the line of a rejection
    park_code: str | None
    ride_id: object
    name: str
    is_open: object
    wait_time: object
    last_updated: object


def fetch_snapshot(source: str) -> bytes:
    """Read a snapshot from an http(s) URL or a file path."""
    try:
        if source.startswith(("http://", "https://")):
            with urllib.request.urlopen(source, timeout=FETCH_TIMEOUT_SECONDS) as response:  # noqa: S310
                return response.read()
        return Path(source).read_bytes()
    except urllib.error.HTTPError as error:
        error.close()  # the error contains the open response, which would leak a socket
        raise IngestError(
            f"live source {source}: cannot be read (HTTP {error.code} {error.reason}); "
            "check the URL in PARKCAST_LIVE_URL"
        ) from None
    except (urllib.error.URLError, OSError, ValueError) as error:
        raise IngestError(
            f"live source {source}: cannot be read ({error}); check the URL or path in PARKCAST_LIVE_URL"
        ) from None


def parse_snapshot(payload: bytes, source: str, default_park: str | None) -> list[LiveRide]:
    """Flatten a snapshot into its rides; raise IngestError if it is not the queue-times.com shape."""
    try:
        document = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise IngestError(f"live source {source}: invalid JSON ({error}); point it at a queue-times.com "
                          "queue_times.json feed") from None
    if not isinstance(document, dict) or not ("parks" in document or "lands" in document or "rides" in document):
        raise IngestError(f"live source {source}: expected an object with 'parks' or 'lands'; point it at a "
                          "queue-times.com queue_times.json feed")
    parks = document["parks"] if "parks" in document else [document]
    rides: list[LiveRide] = []
    for park in parks if isinstance(parks, list) else []:
        if not isinstance(park, dict):
            continue
        park_code = PARK_CODES.get(park.get("name"), default_park)
        lands = park.get("lands") if isinstance(park.get("lands"), list) else []
        groups = [land.get("rides") for land in lands if isinstance(land, dict)] + [park.get("rides")]
        for group in groups:
            for ride in group if isinstance(group, list) else []:
                if not isinstance(ride, dict):
                    ride = {}
                rides.append(LiveRide(len(rides) + 1, park_code, ride.get("id"), str(ride.get("name") or ""),
                                      ride.get("is_open"), ride.get("wait_time"), ride.get("last_updated")))
    return rides


def _reject_reason(ride: LiveRide, max_posted_wait: int) -> str:
    if ride.ride_id is None or not ride.name:
        return "live ride without id or name"
    if ride.park_code is None:
        return "live ride of an unknown park; set PARKCAST_LIVE_PARK"
    if not isinstance(ride.is_open, bool):
        return "live is_open is not true or false"
    if not isinstance(ride.last_updated, str) or pd.isna(pd.to_datetime(ride.last_updated, utc=True, errors="coerce")):
        return "unparseable live last_updated"
    if ride.wait_time is not None:
        if isinstance(ride.wait_time, bool) or not isinstance(ride.wait_time, (int, float)):
            return "non-numeric live wait_time"
        if math.isnan(ride.wait_time):  # Python's json module accepts NaN
            return "non-numeric live wait_time"
        if ride.wait_time < 0:
            return "negative posted wait"
        if ride.wait_time > max_posted_wait:
            return f"posted wait above {max_posted_wait} minutes"
    return ""


def _ride_ids(connection: sa.Connection) -> dict[tuple[str, str], int]:
    """Map (park code, lower-case name or short name) to ride id."""
    rides = schema.rides
    ids = {}
    for row in connection.execute(sa.select(rides.c.id, rides.c.park_code, rides.c.name, rides.c.short_name, rides.c.code)):
        for label in (row.name, row.short_name, row.code):
            if label:
                ids[(row.park_code, label.strip().lower())] = row.id
    return ids


def ingest_snapshot(engine: sa.Engine, payload: bytes, source: str, max_posted_wait: int,
                    default_park: str | None = None) -> IngestSummary:
    """Store one snapshot's observations; an identical snapshot stored before is skipped.

    A ride is matched to a stored ride of its park by name, short name or
    code. An unmatched ride is added with the code `queue_times_<id>` and a
    warning. A closed ride is a closure, a missing wait_time is no
    observation, and an impossible value goes to rejected_rows.
    """
    summary = IngestSummary()
    rides = parse_snapshot(payload, source, default_park)
    sha256 = hashlib.sha256(payload).hexdigest()
    label = f"{source} @ {sha256[:16]}"
    logger = get_logger()
    table = schema.source_files
    with engine.begin() as connection:
        if connection.execute(sa.select(table.c.id).where(table.c.path == label)).first() is not None:
            summary.files_skipped = 1
            return summary
        file_id = connection.execute(sa.insert(table).values(
            path=label, size_bytes=len(payload), sha256=sha256, rows_read=0, rows_stored=0, rows_rejected=0,
            ingested_at=datetime.now(timezone.utc)).returning(table.c.id)).scalar_one()
        known = _ride_ids(connection)

    rows, rejected = [], []
    for ride in rides:
        summary.rows_read += 1
        reason = _reject_reason(ride, max_posted_wait)
        if reason:
            rejected.append({"source_file_id": file_id, "line_number": ride.position, "reason": reason,
                             "raw": json.dumps(ride.__dict__, default=str)})
            summary.rejected_by_reason[reason] = summary.rejected_by_reason.get(reason, 0) + 1
            continue
        if ride.is_open and ride.wait_time is None:
            continue  # no observation
        key = (ride.park_code, ride.name.strip().lower())
        if key not in known:
            code = f"queue_times_{ride.ride_id}"
            known[key] = add_unlisted_ride(engine, code, ride.park_code, name=ride.name)
            summary.rides_added.append(code)
            logger.warning("Live ride %r (queue-times id %s) matches no stored ride of park %s; added it as %r",
                           ride.name, ride.ride_id, ride.park_code, code)
        utc = pd.to_datetime(ride.last_updated, utc=True)
        local = utc.tz_convert(LOCAL_ZONE)
        park_day = (local - pd.Timedelta(hours=MAX_HOURS_AFTER_MIDNIGHT)).date()
        rows.append({
            "ride_id": known[key], "park_day": park_day, "observed_at": utc.tz_convert(None).to_pydatetime(),
            "local_hour": local.hour, "posted_wait": None if not ride.is_open else int(round(ride.wait_time)),
            "actual_wait": None, "is_closed": not ride.is_open, "source_file_id": file_id,
        })
    summary.rows_rejected = len(rejected)
    with engine.begin() as connection:
        frame = pd.DataFrame(rows, columns=["ride_id", "park_day", "observed_at", "local_hour", "posted_wait",
                                            "actual_wait", "is_closed", "source_file_id"], dtype=object)
        frame = frame.drop_duplicates(["ride_id", "observed_at"])
        summary.rows_stored = store_observations(connection, frame)
        insert_ignoring_duplicates(connection, schema.rejected_rows, rejected)
        connection.execute(sa.update(table).where(table.c.id == file_id).values(
            rows_read=summary.rows_read, rows_stored=summary.rows_stored, rows_rejected=summary.rows_rejected))
    summary.files_read = 1
    logger.info("Ingested live snapshot %s: %d rides, %d stored, %d rejected", source,
                summary.rows_read, summary.rows_stored, summary.rows_rejected)
    return summary


def poll_live(engine: sa.Engine, source: str, max_posted_wait: int, default_park: str | None = None) -> IngestSummary:
    """Fetch a snapshot from `source` and ingest it."""
    return ingest_snapshot(engine, fetch_snapshot(source), source, max_posted_wait, default_park)
