"""Ingest TouringPlans attractions, park-day metadata and wait-time files."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa
from prefect import task
from prefect.cache_policies import NONE

from parkcast import schema
from parkcast.logs import get_logger

__all__ = [
    "IngestError",
    "IngestSummary",
    "PARK_CODES",
    "WAIT_COLUMNS",
    "ingest_folder",
    "load_attractions",
    "load_park_days",
    "ingest_wait_file",
    "parse_clock_minutes",
    "insert_ignoring_duplicates",
]

LOCAL_ZONE = "America/New_York"
WAIT_COLUMNS = ["date", "datetime", "SACTMIN", "SPOSTMIN"]
CLOSED = -999
# Timed actual waits above this many minutes are data-entry errors.
MAX_ACTUAL_WAIT = 600
# An observation may fall after midnight but still belong to the park day.
MAX_HOURS_AFTER_MIDNIGHT = 6
PARK_CODES = {
    "Magic Kingdom": "MK",
    "Epcot": "EP",
    "Disney's Hollywood Studios": "HS",
    "Disney's Animal Kingdom": "AK",
}
_CHUNK_ROWS = 200_000


class IngestError(ValueError):
    """A source file cannot be ingested; the message names the file and the fix."""


@dataclass
class IngestSummary:
    """Counts of one ingest run, per file and in total."""

    files_read: int = 0
    files_skipped: int = 0
    rows_read: int = 0
    rows_stored: int = 0
    rows_rejected: int = 0
    failed_files: dict[str, str] = field(default_factory=dict)
    rejected_by_reason: dict[str, int] = field(default_factory=dict)


def insert_ignoring_duplicates(connection: sa.Connection, table: sa.Table, rows: list[dict]) -> int:
    """Insert `rows`, skipping any that collide with a unique key; return rows inserted."""
    if not rows:
        return 0
    dialect = connection.dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:
        raise IngestError(f"unsupported database dialect {dialect!r}: use SQLite or PostgreSQL")
    # RETURNING counts the inserted rows on both dialects; rowcount is -1 for
    # a PostgreSQL executemany.
    statement = insert(table).on_conflict_do_nothing().returning(*table.primary_key.columns)
    return len(connection.execute(statement, rows).all())


def _upsert(connection: sa.Connection, table: sa.Table, rows: list[dict], keys: list[str]) -> None:
    if not rows:
        return
    if connection.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    statement = insert(table)
    updates = {c: statement.excluded[c] for c in rows[0] if c not in keys}
    connection.execute(statement.on_conflict_do_update(index_elements=keys, set_=updates), rows)


def parse_clock_minutes(value: object) -> int | None:
    """Parse a metadata clock time such as '8:00' or '25:30' into minutes after midnight."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip()
    hours, sep, minutes = text.partition(":")
    if not sep or not hours.isdigit() or not minutes.isdigit():
        return None
    total = int(hours) * 60 + int(minutes)
    return total if 0 <= total <= 30 * 60 else None


def load_attractions(engine: sa.Engine, path: Path) -> dict[str, int]:
    """Upsert the rides of an attractions.csv file; return ride code to ride id."""
    frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    required = {"ride", "name", "park"}
    if missing := required - set(frame.columns):
        raise IngestError(f"{path}: missing columns {sorted(missing)}; expected the TouringPlans attractions.csv header")
    unknown_parks = sorted(set(frame["park"]) - set(PARK_CODES))
    if unknown_parks:
        raise IngestError(f"{path}: unknown park names {unknown_parks}; known parks are {sorted(PARK_CODES)}")

    rows = [
        {
            "code": r["ride"].strip(),
            "name": r["name"].strip(),
            "short_name": r.get("short_name") or None,
            "park_code": PARK_CODES[r["park"]],
            "park_name": r["park"],
            "land": r.get("land") or None,
            "opened_on": pd.to_datetime(r["opened_on"]).date() if r.get("opened_on") else None,
            "duration_minutes": float(r["duration"]) if r.get("duration") else None,
            "average_wait_per_hundred": float(r["average_wait_per_hundred"]) if r.get("average_wait_per_hundred") else None,
        }
        for r in frame.to_dict("records")
    ]
    with engine.begin() as connection:
        _upsert(connection, schema.rides, rows, ["code"])
        ids = connection.execute(sa.select(schema.rides.c.code, schema.rides.c.id)).all()
    get_logger().info("Loaded %d attractions from %s", len(rows), path.name)
    return dict(ids)


def load_park_days(engine: sa.Engine, path: Path) -> int:
    """Upsert park-day metadata rows and each park's opening hours; return days loaded."""
    frame = pd.read_csv(path, dtype=str, encoding="utf-8-sig")
    if "DATE" not in frame.columns:
        raise IngestError(f"{path}: no DATE column; expected the TouringPlans metadata header")
    days = pd.to_datetime(frame["DATE"], format="%m/%d/%Y", errors="coerce")
    frame = frame[days.notna()].assign(_day=days[days.notna()].dt.date)
    frame = frame.drop_duplicates("_day", keep="last")

    day_rows, hour_rows = [], []
    for record in frame.to_dict("records"):
        day = record.pop("_day")
        attributes = {k: v for k, v in record.items() if isinstance(v, str)}
        day_rows.append({"park_day": day, "attributes": attributes})
        for park in PARK_CODES.values():
            opens = parse_clock_minutes(record.get(f"{park}OPEN"))
            closes = parse_clock_minutes(record.get(f"{park}CLOSE"))
            if opens is not None and closes is not None and closes > opens:
                hour_rows.append({"park_day": day, "park_code": park, "opens_minute": opens, "closes_minute": closes})

    with engine.begin() as connection:
        for start in range(0, len(day_rows), 500):
            _upsert(connection, schema.park_days, day_rows[start : start + 500], ["park_day"])
        for start in range(0, len(hour_rows), 2000):
            _upsert(connection, schema.park_hours, hour_rows[start : start + 2000], ["park_day", "park_code"])
    get_logger().info("Loaded %d park days from %s", len(day_rows), path.name)
    return len(day_rows)


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _localize(local: pd.Series) -> pd.Series:
    """Convert naive America/New_York times to UTC, resolving both DST transitions.

    A time inside the repeated hour of the autumn change is read as daylight
    time until the clock is seen to go back within the file, then as standard
    time. A time inside the skipped spring hour is shifted forward.
    """
    probe = local.dt.tz_localize(LOCAL_ZONE, ambiguous="NaT", nonexistent="shift_forward")
    ambiguous = probe.isna() & local.notna()
    is_daylight = np.ones(len(local), dtype=bool)
    if ambiguous.any():
        in_hour = local[ambiguous]
        went_back = in_hour < in_hour.cummax().shift(1, fill_value=in_hour.iloc[0])
        is_daylight[np.flatnonzero(ambiguous.to_numpy())] = ~went_back.cummax().to_numpy()
    localized = local.dt.tz_localize(LOCAL_ZONE, ambiguous=is_daylight, nonexistent="shift_forward")
    return localized.dt.tz_convert("UTC")


def validate_wait_rows(chunk: pd.DataFrame, max_posted_wait: int) -> tuple[pd.DataFrame, pd.Series]:
    """Parse one chunk of a wait-time file; return parsed rows and a rejection reason per row.

    The reason is an empty string for a valid row.
    """
    reason = pd.Series("", index=chunk.index, dtype=object)

    def reject(mask: pd.Series, text: str) -> None:
        reason[mask & (reason == "")] = text

    park_day = pd.to_datetime(chunk["date"], format="%m/%d/%Y", errors="coerce")
    local = pd.to_datetime(chunk["datetime"], format="%Y-%m-%d %H:%M:%S", errors="coerce")
    posted = pd.to_numeric(chunk["SPOSTMIN"].where(chunk["SPOSTMIN"] != ""), errors="coerce")
    actual = pd.to_numeric(chunk["SACTMIN"].where(chunk["SACTMIN"] != ""), errors="coerce")

    reject(park_day.isna(), "unparseable date")
    reject(local.isna(), "unparseable datetime")
    hours_from_day_start = (local - park_day) / pd.Timedelta(hours=1)
    reject((hours_from_day_start < 0) | (hours_from_day_start >= 24 + MAX_HOURS_AFTER_MIDNIGHT), "datetime outside its park day")
    reject((chunk["SPOSTMIN"] != "") & posted.isna(), "non-numeric SPOSTMIN")
    reject((chunk["SACTMIN"] != "") & actual.isna(), "non-numeric SACTMIN")
    reject((posted < 0) & (posted != CLOSED), "negative posted wait")
    reject(posted > max_posted_wait, f"posted wait above {max_posted_wait} minutes")
    reject(actual < 0, "negative actual wait")
    reject(actual > MAX_ACTUAL_WAIT, f"actual wait above {MAX_ACTUAL_WAIT} minutes")
    reject(posted.isna() & actual.isna() & (reason == ""), "no wait value")

    parsed = pd.DataFrame(
        {"park_day": park_day.dt.date, "local": local, "posted": posted, "actual": actual}, index=chunk.index
    )
    return parsed, reason


def _read_header(path: Path) -> list[str]:
    try:
        header = pd.read_csv(path, nrows=0, encoding="utf-8-sig").columns.tolist()
    except (OSError, EOFError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise IngestError(f"{path}: cannot be read ({error}); replace it with a valid TouringPlans CSV or .csv.gz export") from None
    if header != WAIT_COLUMNS:
        raise IngestError(f"{path}: header {header} does not match {WAIT_COLUMNS}; export the file in the TouringPlans wait-time layout")
    return header


def _observation_rows(parsed: pd.DataFrame, ride_id: int, source_file_id: int) -> list[dict]:
    merged = parsed.groupby("local", sort=False).agg(
        park_day=("park_day", "first"), posted=("posted", "first"), actual=("actual", "first")
    )
    merged = merged.reset_index()
    observed_at = _localize(merged["local"])
    is_closed = merged["posted"] == CLOSED
    posted = merged["posted"].where(~is_closed)
    frame = pd.DataFrame(
        {
            "ride_id": ride_id,
            "park_day": merged["park_day"],
            "observed_at": observed_at.dt.tz_convert(None).astype(object),
            "local_hour": merged["local"].dt.hour.astype(int),
            "posted_wait": posted.astype("Int64").astype(object).where(posted.notna(), None),
            "actual_wait": merged["actual"].astype("Int64").astype(object).where(merged["actual"].notna(), None),
            "is_closed": is_closed.to_numpy(),
            "source_file_id": source_file_id,
        }
    )
    return frame.to_dict("records")


def _register_source_file(connection: sa.Connection, path: Path, size: int, sha256: str) -> tuple[int, bool]:
    """Return the source_files id for `path` and whether this exact content was ingested before."""
    table = schema.source_files
    row = connection.execute(sa.select(table.c.id, table.c.sha256).where(table.c.path == str(path))).first()
    if row is not None:
        return row.id, row.sha256 == sha256
    values = {"path": str(path), "size_bytes": size, "sha256": "", "rows_read": 0, "rows_stored": 0,
              "rows_rejected": 0, "ingested_at": datetime.now(timezone.utc)}
    new_id = connection.execute(sa.insert(table).values(**values).returning(table.c.id)).scalar_one()
    return new_id, False


def ingest_wait_file(engine: sa.Engine, path: Path, ride_id: int, max_posted_wait: int) -> IngestSummary:
    """Ingest one ride's wait-time file in a single transaction.

    A file whose content was ingested before is skipped. Rows already stored
    are never changed; invalid rows go to rejected_rows with their line number.
    """
    summary = IngestSummary()
    _read_header(path)
    sha256 = _file_sha256(path)
    with engine.begin() as connection:
        file_id, seen = _register_source_file(connection, path, path.stat().st_size, sha256)
        if seen:
            summary.files_skipped = 1
            return summary
        chunks = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig", chunksize=_CHUNK_ROWS)
        for chunk in chunks:
            parsed, reason = validate_wait_rows(chunk, max_posted_wait)
            bad = reason != ""
            summary.rows_read += len(chunk)
            summary.rows_stored += insert_ignoring_duplicates(
                connection, schema.observations, _observation_rows(parsed[~bad], ride_id, file_id)
            )
            rejected = [
                {"source_file_id": file_id, "line_number": int(index) + 2, "reason": reason[index],
                 "raw": json.dumps(chunk.loc[index].to_dict())}
                for index in chunk.index[bad]
            ]
            summary.rows_rejected += len(rejected)
            insert_ignoring_duplicates(connection, schema.rejected_rows, rejected)
            for text, count in reason[bad].value_counts().items():
                summary.rejected_by_reason[text] = summary.rejected_by_reason.get(text, 0) + int(count)
        connection.execute(
            sa.update(schema.source_files).where(schema.source_files.c.id == file_id).values(
                size_bytes=path.stat().st_size, sha256=sha256, rows_read=summary.rows_read,
                rows_stored=summary.rows_stored, rows_rejected=summary.rows_rejected,
                ingested_at=datetime.now(timezone.utc))
        )
    summary.files_read = 1
    get_logger().info("Ingested %s: %d rows read, %d stored, %d rejected", path.name,
                      summary.rows_read, summary.rows_stored, summary.rows_rejected)
    return summary


def _merge(total: IngestSummary, part: IngestSummary) -> None:
    total.files_read += part.files_read
    total.files_skipped += part.files_skipped
    total.rows_read += part.rows_read
    total.rows_stored += part.rows_stored
    total.rows_rejected += part.rows_rejected
    for reason, count in part.rejected_by_reason.items():
        total.rejected_by_reason[reason] = total.rejected_by_reason.get(reason, 0) + count


def _wait_files(data_dir: Path) -> list[Path]:
    names = ("attractions.csv", "touringplans_metadata.csv", "meta-datadictionary.csv")
    files = [p for p in sorted(data_dir.iterdir()) if p.name.endswith((".csv", ".csv.gz"))]
    return [p for p in files if not p.name.startswith(names)]


def ride_code_of(path: Path) -> str:
    """Return the ride code of a wait-time file name such as 'soarin.csv.gz'."""
    return path.name.removesuffix(".gz").removesuffix(".csv")


@task(cache_policy=NONE, retries=2, retry_delay_seconds=[2, 10])
def ingest_folder(engine: sa.Engine, data_dir: Path, max_posted_wait: int) -> IngestSummary:
    """Ingest attractions, park-day metadata and every ride file of `data_dir`.

    A ride file that fails is reported in the summary and leaves every other
    file and all stored data intact.
    """
    if not data_dir.is_dir():
        raise IngestError(f"data folder {data_dir} not found: set PARKCAST_DATA_DIR to a folder of TouringPlans files")
    ride_ids = load_attractions(engine, data_dir / "attractions.csv")
    metadata_files = sorted(data_dir.glob("touringplans_metadata.csv*"))
    for path in metadata_files:
        load_park_days(engine, path)

    summary = IngestSummary()
    logger = get_logger()
    for path in _wait_files(data_dir):
        code = ride_code_of(path)
        if code not in ride_ids:
            # TODO: ingest rides missing from attractions.csv with a park from a setting.
            summary.failed_files[path.name] = f"ride {code!r} is not in attractions.csv"
            logger.warning("Skipped %s: ride %r is not in attractions.csv; add a row for it there", path.name, code)
            continue
        try:
            _merge(summary, ingest_wait_file(engine, path, ride_ids[code], max_posted_wait))
        except IngestError as error:
            summary.failed_files[path.name] = str(error)
            logger.error("Failed to ingest %s: %s", path.name, error)
    return summary
