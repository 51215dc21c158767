"""Ingest TouringPlans attractions, park-day metadata and wait-time files."""

from __future__ import annotations

import gzip
import hashlib
import io
import math
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pandas as pd
import sqlalchemy as sa
from prefect import task
from prefect.cache_policies import NONE

from parkcast import schema
from parkcast.logs import get_logger
from parkcast.progress import progress_bar
from parkcast.retries import RETRIES, RETRY_DELAY_SECONDS, retry_if_transient

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
    # Files read from where the previous run stopped, because they only grew.
    files_resumed: int = 0
    # Files whose last line had no newline yet; that line waits for the next run.
    lines_pending: int = 0
    # Ride files whose ride was missing from the attractions table.
    rides_added: list[str] = field(default_factory=list)


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


# About 55,000 TouringPlans rows: the unit of parsing, validation and one bulk insert.
_BLOCK_BYTES = 2 << 20
_OBSERVATION_COLUMNS = ["ride_id", "park_day", "observed_at", "local_hour", "posted_wait", "actual_wait",
                        "is_closed", "source_file_id"]


def _open_decompressed(path: Path) -> BinaryIO:
    """Open `path` as a byte stream, decompressing a .gz file on the fly."""
    return gzip.open(path, "rb") if path.name.endswith(".gz") else path.open("rb")


def _read_error(path: Path, error: Exception) -> IngestError:
    return IngestError(
        f"{path}: cannot be read ({error.__class__.__name__}: {error}); "
        "replace it with a valid TouringPlans CSV or .csv.gz export"
    )


def _check_header(path: Path, line: bytes) -> None:
    try:
        header = line.decode("utf-8-sig").strip().split(",")
    except UnicodeDecodeError as error:
        raise _read_error(path, error) from None
    if header != WAIT_COLUMNS:
        raise IngestError(
            f"{path}: header {header} does not match {WAIT_COLUMNS}; export the file in the TouringPlans wait-time layout"
        )


def _split_lines(block: bytes, path: Path) -> list[list[str]]:
    """Split complete CSV lines into fields by commas."""
    # TODO: quoted fields (RFC 4180) are not supported; TouringPlans exports contain none.
    try:
        text = block.decode("utf-8")
    except UnicodeDecodeError as error:
        raise _read_error(path, error) from None
    return [line.rstrip("\r").split(",") for line in text.split("\n")[:-1]]


def _frame_of(fields: list[list[str]], first_line: int) -> tuple[pd.DataFrame, pd.Series]:
    """Build a wait-time frame indexed by file line number; rows without 4 fields get a rejection."""
    width = len(WAIT_COLUMNS)
    good = [row if len(row) == width else [""] * width for row in fields]
    frame = pd.DataFrame(good, columns=WAIT_COLUMNS, index=range(first_line, first_line + len(fields)), dtype=object)
    wrong_width = pd.Series([len(row) != width for row in fields], index=frame.index, dtype=bool)
    return frame, wrong_width


def _observation_frame(parsed: pd.DataFrame, ride_id: int, source_file_id: int) -> pd.DataFrame:
    # The first of several rows with the same ride and local time wins; the
    # database's unique key drops any copy that is already stored.
    merged = parsed.drop_duplicates("local", keep="first")
    observed_at = _localize(merged["local"])
    is_closed = merged["posted"] == CLOSED
    posted = merged["posted"].where(~is_closed)
    return pd.DataFrame(
        {
            "ride_id": ride_id,
            "park_day": merged["park_day"],
            "observed_at": observed_at.dt.tz_convert(None),
            "local_hour": merged["local"].dt.hour.astype(int),
            "posted_wait": posted.astype("Int64").astype(object).where(posted.notna(), None),
            "actual_wait": merged["actual"].astype("Int64").astype(object).where(merged["actual"].notna(), None),
            "is_closed": is_closed.to_numpy(),
            "source_file_id": source_file_id,
        }
    )


def _optional_ints(values: pd.Series) -> list[int | None]:
    return [None if value is None or pd.isna(value) else int(value) for value in values]


def _copy_observations(connection: sa.Connection, frame: pd.DataFrame, observed_at: pd.Series) -> int:
    """Store observations on PostgreSQL with COPY into a staging table; return rows inserted."""
    text = pd.DataFrame({
        "ride_id": frame["ride_id"].to_numpy(),
        "park_day": [day.isoformat() for day in frame["park_day"]],
        "observed_at": (observed_at.dt.strftime("%Y-%m-%d %H:%M:%S.%f") + "+00").to_numpy(),
        "local_hour": frame["local_hour"].to_numpy(),
        "posted_wait": pd.array(_optional_ints(frame["posted_wait"]), dtype="Int64"),
        "actual_wait": pd.array(_optional_ints(frame["actual_wait"]), dtype="Int64"),
        "is_closed": ["t" if closed else "f" for closed in frame["is_closed"]],
        "source_file_id": frame["source_file_id"].to_numpy(),
    })
    buffer = io.StringIO()
    text.to_csv(buffer, sep="\t", header=False, index=False, na_rep="\\N")
    cursor = connection.connection.driver_connection.cursor()
    columns = ", ".join(_OBSERVATION_COLUMNS)
    cursor.execute(
        "CREATE TEMPORARY TABLE IF NOT EXISTS observations_stage "
        "(LIKE observations INCLUDING DEFAULTS) ON COMMIT DROP"
    )
    cursor.execute("TRUNCATE observations_stage")
    with cursor.copy(f"COPY observations_stage ({columns}) FROM STDIN") as copy:
        copy.write(buffer.getvalue())
    cursor.execute(
        f"INSERT INTO observations ({columns}) SELECT {columns} FROM observations_stage "
        "ON CONFLICT DO NOTHING"
    )
    return cursor.rowcount


def store_observations(connection: sa.Connection, frame: pd.DataFrame) -> int:
    """Bulk-insert observation rows, skipping any already stored; return rows inserted.

    PostgreSQL uses COPY into a staging table; SQLite uses one executemany of
    INSERT OR IGNORE inside the caller's transaction.
    """
    if frame.empty:
        return 0
    dialect = connection.dialect.name
    observed_at = pd.to_datetime(frame["observed_at"])  # naive UTC
    if dialect == "postgresql":
        return _copy_observations(connection, frame, observed_at)
    if dialect == "sqlite":
        # Bind the values as SQLAlchemy's SQLite types store them, so that the
        # unique key matches rows that SQLAlchemy inserted.
        rows = zip(
            frame["ride_id"].tolist(),
            [day.isoformat() for day in frame["park_day"]],
            observed_at.dt.strftime("%Y-%m-%d %H:%M:%S.%f").tolist(),
            [int(hour) for hour in frame["local_hour"]],
            _optional_ints(frame["posted_wait"]),
            _optional_ints(frame["actual_wait"]),
            [int(bool(closed)) for closed in frame["is_closed"]],
            frame["source_file_id"].tolist(),
        )
        columns = ", ".join(_OBSERVATION_COLUMNS)
        statement = f"INSERT OR IGNORE INTO observations ({columns}) VALUES ({', '.join('?' * 8)})"
        return connection.exec_driver_sql(statement, list(rows)).rowcount
    raise IngestError(f"unsupported database dialect {dialect!r}: use SQLite or PostgreSQL")


def _source_file_row(connection: sa.Connection, path: Path):
    table = schema.source_files
    return connection.execute(sa.select(table).where(table.c.path == str(path))).first()


def _new_source_file(connection: sa.Connection, path: Path) -> int:
    table = schema.source_files
    values = {"path": str(path), "size_bytes": 0, "sha256": "", "rows_read": 0, "rows_stored": 0,
              "rows_rejected": 0, "ingested_at": datetime.now(timezone.utc)}
    return connection.execute(sa.insert(table).values(**values).returning(table.c.id)).scalar_one()


def _retire_source_file(connection: sa.Connection, row) -> None:
    """Keep a replaced file's record, and the rejections that point at it, under a new path."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    connection.execute(
        sa.update(schema.source_files).where(schema.source_files.c.id == row.id)
        .values(path=f"{row.path} (replaced {stamp})")
    )


def _prefix_matches(handle: BinaryIO, length: int, expected_sha256: str, hasher) -> bool:
    """Hash the first `length` bytes of `handle` into `hasher`; return whether they match."""
    remaining = length
    while remaining > 0:
        block = handle.read(min(_BLOCK_BYTES, remaining))
        if not block:
            return False
        hasher.update(block)
        remaining -= len(block)
    return hasher.hexdigest() == expected_sha256


@dataclass
class _ReadPosition:
    """Where an incremental read starts in a source file's decompressed bytes."""

    file_id: int
    byte_offset: int = 0
    line_number: int = 1  # the header is line 1
    resumed: bool = False


def _start_position(connection: sa.Connection, path: Path, handle: BinaryIO) -> tuple[_ReadPosition, object]:
    """Register `path` and find where to resume: after the bytes read last time, if they are unchanged.

    Returns the position and a SHA-256 object fed with the bytes before it;
    `handle` is left at that position.
    """
    row = _source_file_row(connection, path)
    if row is None:
        return _ReadPosition(_new_source_file(connection, path)), hashlib.sha256()
    hasher = hashlib.sha256()
    if row.bytes_consumed and _prefix_matches(handle, row.bytes_consumed, row.prefix_sha256, hasher):
        return _ReadPosition(row.id, row.bytes_consumed, row.lines_consumed, resumed=True), hasher
    # A different export replaced the file: read it whole. Rows already
    # stored stay, and the unique key drops the ones this export repeats.
    get_logger().warning("%s changed since it was last ingested; reading it again from the start", path.name)
    handle.seek(0)
    _retire_source_file(connection, row)
    return _ReadPosition(_new_source_file(connection, path)), hashlib.sha256()


def _ingest_lines(connection, path, fields, first_line, ride_id, file_id, max_posted_wait, summary) -> None:
    frame, wrong_width = _frame_of(fields, first_line)
    parsed, reason = validate_wait_rows(frame, max_posted_wait)
    reason[wrong_width] = f"expected {len(WAIT_COLUMNS)} comma-separated fields"
    bad = reason != ""
    summary.rows_read += len(frame)
    summary.rows_stored += store_observations(connection, _observation_frame(parsed[~bad], ride_id, file_id))
    rejected = [
        {"source_file_id": file_id, "line_number": int(line), "reason": reason[line],
         "raw": ",".join(fields[int(line) - first_line])}
        for line in frame.index[bad]
    ]
    summary.rows_rejected += len(rejected)
    insert_ignoring_duplicates(connection, schema.rejected_rows, rejected)
    for text, count in reason[bad].value_counts().items():
        summary.rejected_by_reason[text] = summary.rejected_by_reason.get(text, 0) + int(count)


def ingest_wait_file(engine: sa.Engine, path: Path, ride_id: int, max_posted_wait: int) -> IngestSummary:
    """Ingest what is new in one ride's wait-time file, in a single transaction.

    An unchanged file is skipped. A file that grew is read from where the
    last run stopped; a file replaced by a different export is read whole.
    The file is streamed in blocks of complete lines, so memory does not grow
    with its length. Rows already stored are never changed; invalid rows go
    to rejected_rows with their line number. A last line without a newline
    is left for the next run, because the file may still be being written.
    """
    summary = IngestSummary()
    try:
        with _open_decompressed(path) as handle:
            _check_header(path, handle.readline())
        sha256 = _file_sha256(path)
    except (OSError, EOFError, zlib.error) as error:
        raise _read_error(path, error) from None

    with engine.begin() as connection:
        row = _source_file_row(connection, path)
        if row is not None and row.sha256 == sha256:
            summary.files_skipped = 1
            return summary
        try:
            with _open_decompressed(path) as handle:
                position, hasher = _start_position(connection, path, handle)
                consumed, line_number = position.byte_offset, position.line_number
                pending = b""
                if position.byte_offset == 0:
                    header = handle.readline()
                    hasher.update(header)
                    consumed, line_number = len(header), 2
                while block := handle.read(_BLOCK_BYTES):
                    block = pending + block
                    cut = block.rfind(b"\n") + 1
                    complete, pending = block[:cut], block[cut:]
                    if not complete:
                        continue
                    fields = _split_lines(complete, path)
                    _ingest_lines(connection, path, fields, line_number, ride_id, position.file_id,
                                  max_posted_wait, summary)
                    hasher.update(complete)
                    consumed += len(complete)
                    line_number += len(fields)
        except (OSError, EOFError, zlib.error) as error:
            raise _read_error(path, error) from None
        if pending.strip():
            summary.lines_pending += 1
            get_logger().warning("%s: the last line has no newline yet; it is read once the line is complete",
                                 path.name)
        table = schema.source_files
        totals = connection.execute(sa.select(table.c.rows_read, table.c.rows_stored, table.c.rows_rejected)
                                    .where(table.c.id == position.file_id)).one()
        connection.execute(
            sa.update(table).where(table.c.id == position.file_id).values(
                size_bytes=path.stat().st_size, sha256=sha256 if not pending.strip() else "",
                rows_read=totals.rows_read + summary.rows_read,
                rows_stored=totals.rows_stored + summary.rows_stored,
                rows_rejected=totals.rows_rejected + summary.rows_rejected,
                bytes_consumed=consumed, lines_consumed=line_number, prefix_sha256=hasher.hexdigest(),
                ingested_at=datetime.now(timezone.utc))
        )
    summary.files_read = 1
    summary.files_resumed = int(position.resumed)
    get_logger().info("Ingested %s%s: %d rows read, %d stored, %d rejected", path.name,
                      f" from line {position.line_number}" if position.resumed else "",
                      summary.rows_read, summary.rows_stored, summary.rows_rejected)
    return summary


def _merge(total: IngestSummary, part: IngestSummary) -> None:
    total.files_read += part.files_read
    total.files_skipped += part.files_skipped
    total.files_resumed += part.files_resumed
    total.lines_pending += part.lines_pending
    total.rows_read += part.rows_read
    total.rows_stored += part.rows_stored
    total.rows_rejected += part.rows_rejected
    for reason, count in part.rejected_by_reason.items():
        total.rejected_by_reason[reason] = total.rejected_by_reason.get(reason, 0) + count


def _is_attractions_file(path: Path) -> bool:
    return path.name.startswith("attractions") and path.name.endswith(".csv")


def _wait_files(data_dir: Path) -> list[Path]:
    names = ("touringplans_metadata.csv", "meta-datadictionary.csv")
    files = [p for p in sorted(data_dir.iterdir()) if p.is_file() and p.name.endswith((".csv", ".csv.gz"))]
    return [p for p in files if not p.name.startswith(names) and not _is_attractions_file(p)]


def ride_code_of(path: Path) -> str:
    """Return the ride code of a wait-time file name.

    The code is the name up to its first dot, so 'soarin.csv.gz' and an
    overlapping export named 'soarin.2021-12.csv' both belong to ride 'soarin'.
    """
    return path.name.split(".", 1)[0]


def add_unlisted_ride(engine: sa.Engine, code: str, park_code: str, name: str | None = None) -> int:
    """Insert a ride that no attractions file lists, named `name` or else its code; return its id."""
    if park_code not in PARK_CODES.values():
        raise IngestError(
            f"park code {park_code!r} is not one of {sorted(PARK_CODES.values())}; fix PARKCAST_DEFAULT_PARK"
        )
    park_name = {v: k for k, v in PARK_CODES.items()}[park_code]
    row = {"code": code, "name": name or code, "short_name": None, "park_code": park_code, "park_name": park_name,
           "land": None, "opened_on": None, "duration_minutes": None, "average_wait_per_hundred": None}
    with engine.begin() as connection:
        _upsert(connection, schema.rides, [row], ["code"])
        return connection.execute(sa.select(schema.rides.c.id).where(schema.rides.c.code == code)).scalar_one()


@task(cache_policy=NONE, retries=RETRIES, retry_delay_seconds=RETRY_DELAY_SECONDS,
      retry_condition_fn=retry_if_transient)
def ingest_folder(
    engine: sa.Engine, data_dir: Path, max_posted_wait: int, default_park: str | None = None
) -> IngestSummary:
    """Ingest attractions, park-day metadata and what is new in every ride file of `data_dir`.

    Every `attractions*.csv` file is upserted. A ride file whose ride none of
    them lists is still ingested, with a warning, under the park code
    `default_park`. Without that setting the file fails with a message that
    says how to fix it. A ride file that fails is reported in the summary and
    leaves every other file and all stored data intact.
    """
    if not data_dir.is_dir():
        raise IngestError(f"data folder {data_dir} not found: set PARKCAST_DATA_DIR to a folder of TouringPlans files")
    if not (data_dir / "attractions.csv").is_file():
        raise IngestError(f"{data_dir / 'attractions.csv'} not found: add the TouringPlans attractions.csv to the folder")
    ride_ids: dict[str, int] = {}
    for path in sorted(p for p in data_dir.iterdir() if _is_attractions_file(p)):
        ride_ids.update(load_attractions(engine, path))
    metadata_files = sorted(data_dir.glob("touringplans_metadata.csv*"))
    for path in metadata_files:
        load_park_days(engine, path)

    summary = IngestSummary()
    logger = get_logger()
    wait_files = _wait_files(data_dir)
    with progress_bar("Ingesting ride files", len(wait_files)) as bar:
        for path in wait_files:
            code = ride_code_of(path)
            try:
                if code not in ride_ids:
                    if not default_park:
                        raise IngestError(
                            f"{path}: ride {code!r} is in no attractions*.csv file; add a row for it there "
                            "or set PARKCAST_DEFAULT_PARK to its park code (MK, EP, HS or AK)"
                        )
                    ride_ids[code] = add_unlisted_ride(engine, code, default_park)
                    summary.rides_added.append(code)
                    logger.warning("Ride %r of %s is in no attractions*.csv file; stored it in park %s from "
                                   "PARKCAST_DEFAULT_PARK", code, path.name, default_park)
                _merge(summary, ingest_wait_file(engine, path, ride_ids[code], max_posted_wait))
            except IngestError as error:
                summary.failed_files[path.name] = str(error)
                logger.error("Failed to ingest %s: %s", path.name, error)
            bar.advance()
    return summary
