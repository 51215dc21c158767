"""Ingest TouringPlans attractions, park-day metadata and wait-time files."""

from __future__ import annotations

import csv
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
# A park day later than tomorrow in the park's zone cannot have been observed yet.
MAX_DAYS_AHEAD = 1
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


def _metadata_row_problem(record: dict) -> str:
    """Return why a metadata row cannot be stored, or an empty string when it can."""
    for park in PARK_CODES.values():
        given = {name: record.get(f"{park}{name}") for name in ("OPEN", "CLOSE")}
        present = {name: value for name, value in given.items() if isinstance(value, str) and value.strip()}
        minutes = {name: parse_clock_minutes(value) for name, value in present.items()}
        for name, value in present.items():
            if minutes[name] is None:
                return f"invalid {park}{name} {value!r}: expected H:MM up to 30:00"
        if len(minutes) == 2 and minutes["CLOSE"] <= minutes["OPEN"]:
            return f"{park}CLOSE {present['CLOSE']!r} is not after {park}OPEN {present['OPEN']!r}"
    return ""


def load_park_days(engine: sa.Engine, path: Path, summary: IngestSummary | None = None) -> int:
    """Upsert park-day metadata rows and each park's opening hours; return days loaded.

    A row with an unparseable DATE or invalid park hours is skipped, so that it
    never overwrites a stored day. Each one is logged with its line and counted
    in `summary.rejected_by_reason`.
    """
    frame = pd.read_csv(path, dtype=str, encoding="utf-8-sig")
    if "DATE" not in frame.columns:
        raise IngestError(f"{path}: no DATE column; expected the TouringPlans metadata header")
    days = pd.to_datetime(frame["DATE"], format="%m/%d/%Y", errors="coerce")
    problems = pd.Series("", index=frame.index, dtype=object)
    problems[days.isna()] = [f"unparseable metadata DATE {value!r}" for value in frame.loc[days.isna(), "DATE"]]
    for index, record in frame[days.notna()].iterrows():
        problems[index] = _metadata_row_problem(record.to_dict())
    logger = get_logger()
    for index, problem in problems[problems != ""].items():
        # Line 1 is the header.
        logger.warning("%s line %d skipped: %s", path.name, index + 2, problem)
        if summary is not None:
            reason = "park-day metadata row skipped (see the log)"
            summary.rejected_by_reason[reason] = summary.rejected_by_reason.get(reason, 0) + 1
    good = problems == ""
    frame = frame[good].assign(_day=days[good].dt.date)
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
    logger.info("Loaded %d park days from %s", len(day_rows), path.name)
    return len(day_rows)


def _file_sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _localize(local: pd.Series, folds: dict | None = None) -> pd.Series:
    """Convert naive America/New_York times to UTC, resolving both DST transitions.

    A time inside the repeated hour of an autumn change is read as daylight
    time until the clock is seen to go back within the file, then as standard
    time. A time inside the skipped spring hour is shifted forward. `folds`
    carries, per repeated hour, the latest time seen and whether the clock
    went back, from one block of a file to the next.
    """
    probe = local.dt.tz_localize(LOCAL_ZONE, ambiguous="NaT", nonexistent="shift_forward")
    ambiguous = probe.isna() & local.notna()
    is_daylight = np.ones(len(local), dtype=bool)
    folds = {} if folds is None else folds
    if ambiguous.any():
        positions = np.flatnonzero(ambiguous.to_numpy())
        in_hour = local.iloc[positions]
        # Each year's repeated hour is resolved on its own, in file order.
        for day in pd.unique(in_hour.dt.date):
            of_day = (in_hour.dt.date == day).to_numpy()
            times = in_hour.to_numpy()[of_day]
            latest, went_back_before = folds.get(day, (times[0], False))
            latest_before = np.maximum.accumulate(np.concatenate([[latest], times]))[:-1]
            went_back = np.logical_or.accumulate((times < latest_before) | went_back_before)
            is_daylight[positions[of_day]] = ~went_back
            folds[day] = (max(latest_before[-1], times[-1]), bool(went_back[-1]))
    localized = local.dt.tz_localize(LOCAL_ZONE, ambiguous=is_daylight, nonexistent="shift_forward")
    return localized.dt.tz_convert("UTC")


def validate_wait_rows(chunk: pd.DataFrame, max_posted_wait: int) -> tuple[pd.DataFrame, pd.Series]:
    """Parse one chunk of a wait-time file; return parsed rows and a rejection reason per row.

    The reason is an empty string for a valid row. When a row breaks several
    rules, the first rule in the list below names it.
    """
    park_day = pd.to_datetime(chunk["date"], format="%m/%d/%Y", errors="coerce")
    # Timestamps are nearly all distinct, so the unique-value cache would only cost time.
    local = pd.to_datetime(chunk["datetime"], format="%Y-%m-%d %H:%M:%S", errors="coerce", cache=False)
    posted_given = (chunk["SPOSTMIN"] != "").to_numpy()
    actual_given = (chunk["SACTMIN"] != "").to_numpy()
    posted = pd.to_numeric(chunk["SPOSTMIN"].where(posted_given), errors="coerce")
    actual = pd.to_numeric(chunk["SACTMIN"].where(actual_given), errors="coerce")
    hours_from_day_start = (local - park_day) / pd.Timedelta(hours=1)
    latest_day = pd.Timestamp.now(tz=LOCAL_ZONE).tz_localize(None).normalize() + pd.Timedelta(days=MAX_DAYS_AHEAD)

    rules = [
        (park_day.isna(), "unparseable date"),
        (local.isna(), "unparseable datetime"),
        ((hours_from_day_start < 0) | (hours_from_day_start >= 24 + MAX_HOURS_AFTER_MIDNIGHT),
         "datetime outside its park day"),
        (park_day > latest_day, "date in the future"),
        (posted_given & posted.isna(), "non-numeric SPOSTMIN"),
        (actual_given & actual.isna(), "non-numeric SACTMIN"),
        ((posted < 0) & (posted != CLOSED), "negative posted wait"),
        (posted > max_posted_wait, f"posted wait above {max_posted_wait} minutes"),
        (actual < 0, "negative actual wait"),
        (actual > MAX_ACTUAL_WAIT, f"actual wait above {MAX_ACTUAL_WAIT} minutes"),
        # The stored wait columns are integers, so a fractional minute is rejected, not rounded.
        (posted.notna() & (posted % 1 != 0), "non-integer SPOSTMIN"),
        (actual.notna() & (actual % 1 != 0), "non-integer SACTMIN"),
        (posted.isna() & actual.isna(), "no wait value"),
    ]
    # Rule numbers instead of strings keep the checks vectorized. Number 0 marks a valid row.
    rule_number = np.zeros(len(chunk), dtype=np.int8)
    for number, (broken, _) in enumerate(rules, start=1):
        rule_number[(rule_number == 0) & np.asarray(broken, dtype=bool)] = number
    texts = np.array([""] + [text for _, text in rules], dtype=object)
    reason = pd.Series(texts[rule_number], index=chunk.index, dtype=object)

    parsed = pd.DataFrame({"park_day": park_day, "local": local, "posted": posted, "actual": actual}, index=chunk.index)
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
    if header == [""]:
        raise IngestError(f"{path}: the file is empty; delete it or export it again with the header {','.join(WAIT_COLUMNS)}")
    if header != WAIT_COLUMNS:
        raise IngestError(
            f"{path}: header {header} does not match {WAIT_COLUMNS}; export the file in the TouringPlans wait-time layout"
        )


def _has_four_fields_per_line(block: bytes) -> bool:
    """Return whether every newline-terminated line of `block` contains exactly 3 commas."""
    data = np.frombuffer(block, dtype=np.uint8)
    line_ends = np.flatnonzero(data == ord("\n"))
    commas_so_far = np.cumsum(data == ord(","), dtype=np.int32)[line_ends]
    return bool(np.all(np.diff(commas_so_far, prepend=0) == len(WAIT_COLUMNS) - 1))


def _parse_block(block: bytes, path: Path, first_line: int) -> tuple[pd.DataFrame, pd.Series, list[str]]:
    """Split the complete CSV lines of `block` into a wait-time frame indexed by file line number.

    Returns the frame, a mask of the lines without exactly 4 comma-separated
    fields (their fields are empty strings in the frame) and each line's text
    without its newline. Trailing carriage returns are not part of any field.
    """
    # TODO: quoted fields (RFC 4180) are not supported; TouringPlans exports contain none.
    try:
        text = block.decode("utf-8")
    except UnicodeDecodeError as error:
        raise _read_error(path, error) from None
    lines = text.split("\n")[:-1]
    # The C parser splits a well-formed block about twice as fast as str.split
    # per line (cProfile, bundled data). It cuts a field at a NUL character, so such blocks
    # and blocks with a line of the wrong width take the per-line path.
    if "\x00" not in text and _has_four_fields_per_line(block):
        frame, wrong_width = _split_with_c_parser(text, first_line)
    else:
        frame, wrong_width = _split_per_line(lines, first_line)
    return frame, wrong_width, lines


def _split_with_c_parser(text: str, first_line: int) -> tuple[pd.DataFrame, pd.Series]:
    """Split newline-terminated lines that each have 4 fields and no NUL character."""
    frame = pd.read_csv(io.StringIO(text), header=None, names=WAIT_COLUMNS, dtype=str, na_filter=False,
                        quoting=csv.QUOTE_NONE, lineterminator="\n", skip_blank_lines=False, engine="c")
    frame.index = pd.RangeIndex(first_line, first_line + len(frame))
    if "\r" in text:
        frame["SPOSTMIN"] = frame["SPOSTMIN"].str.rstrip("\r")
    return frame, pd.Series(False, index=frame.index, dtype=bool)


def _split_per_line(lines: list[str], first_line: int) -> tuple[pd.DataFrame, pd.Series]:
    """Split any lines with str.split; a line without 4 fields becomes empty fields and is flagged."""
    width = len(WAIT_COLUMNS)
    fields = [line.rstrip("\r").split(",") for line in lines]
    good = [row if len(row) == width else [""] * width for row in fields]
    index = pd.RangeIndex(first_line, first_line + len(lines))
    frame = pd.DataFrame(good, columns=WAIT_COLUMNS, index=index, dtype=object)
    wrong_width = pd.Series([len(row) != width for row in fields], index=index, dtype=bool)
    return frame, wrong_width


def _observation_frame(parsed: pd.DataFrame, ride_id: int, source_file_id: int, folds: dict) -> pd.DataFrame:
    # The first of several rows with the same ride and local time wins; the
    # database's unique key drops any copy that is already stored.
    merged = parsed.drop_duplicates("local", keep="first")
    observed_at = _localize(merged["local"], folds)
    is_closed = (merged["posted"] == CLOSED).to_numpy()
    return pd.DataFrame(
        {
            "ride_id": ride_id,
            "park_day": merged["park_day"],
            "observed_at": observed_at.dt.tz_convert(None),
            "local_hour": merged["local"].dt.hour,
            "posted_wait": merged["posted"].where(~is_closed),
            "actual_wait": merged["actual"],
            "is_closed": is_closed,
            "source_file_id": source_file_id,
        }
    )


def _optional_ints(values: pd.Series) -> list[int | None]:
    """Convert whole numbers, given as ints, floats or None and NaN for missing, to ints and None."""
    numbers = pd.to_numeric(values).to_numpy(dtype="float64", na_value=np.nan)
    missing = np.isnan(numbers)
    result = np.where(missing, 0, numbers).astype(np.int64).astype(object)
    result[missing] = None
    return result.tolist()


_FOUR_DIGIT_YEARS = (np.datetime64("1000-01-01T00:00:00.000000"), np.datetime64("9999-12-31T23:59:59.999999"))


def _datetimes(values: pd.Series) -> pd.Series:
    # pandas.to_datetime iterates even a datetime64 Series to decide on caching,
    # which costs more than the formatting that follows.
    return values if pd.api.types.is_datetime64_dtype(values) else pd.to_datetime(values)


def _iso_dates(values: pd.Series) -> list[str]:
    """Format dates, or datetimes at midnight, as 'YYYY-MM-DD'."""
    return np.datetime_as_string(_datetimes(values).to_numpy(dtype="datetime64[D]"), unit="D").tolist()


def _iso_times(values: pd.Series) -> list[str]:
    """Format naive datetimes as 'YYYY-MM-DD HH:MM:SS.ffffff', the text SQLAlchemy stores in SQLite."""
    times = _datetimes(values)
    micros = times.to_numpy(dtype="datetime64[us]")
    if not (_FOUR_DIGIT_YEARS[0] <= micros.min() and micros.max() <= _FOUR_DIGIT_YEARS[1]):
        return times.dt.strftime("%Y-%m-%d %H:%M:%S.%f").tolist()
    # With four-digit years every string has 26 UCS-4 code points, and
    # column 10 of this view is the 'T' between date and time.
    text = np.datetime_as_string(micros, unit="us").astype("U26")
    text.view(np.uint32).reshape(len(text), 26)[:, 10] = ord(" ")
    return text.tolist()


def _copy_observations(connection: sa.Connection, frame: pd.DataFrame) -> int:
    """Store observations on PostgreSQL with COPY into a staging table; return rows inserted."""
    text = pd.DataFrame({
        "ride_id": frame["ride_id"].to_numpy(),
        "park_day": _iso_dates(frame["park_day"]),
        "observed_at": [f"{time}+00" for time in _iso_times(frame["observed_at"])],
        "local_hour": frame["local_hour"].to_numpy(dtype=np.int64),
        "posted_wait": pd.array(_optional_ints(frame["posted_wait"]), dtype="Int64"),
        "actual_wait": pd.array(_optional_ints(frame["actual_wait"]), dtype="Int64"),
        "is_closed": np.where(frame["is_closed"].to_numpy(dtype=bool), "t", "f"),
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

    `frame` has the observations columns: park_day as dates or datetimes at
    midnight, observed_at as naive UTC datetimes, waits as whole numbers with
    None or NaN for missing. PostgreSQL uses COPY into a staging table; SQLite
    uses one executemany of INSERT OR IGNORE inside the caller's transaction.
    """
    if frame.empty:
        return 0
    dialect = connection.dialect.name
    if dialect == "postgresql":
        return _copy_observations(connection, frame)
    if dialect == "sqlite":
        # Bind the values as SQLAlchemy's SQLite types store them, so that the
        # unique key matches rows that SQLAlchemy inserted.
        rows = zip(
            frame["ride_id"].tolist(),
            _iso_dates(frame["park_day"]),
            _iso_times(frame["observed_at"]),
            frame["local_hour"].to_numpy(dtype=np.int64).tolist(),
            _optional_ints(frame["posted_wait"]),
            _optional_ints(frame["actual_wait"]),
            frame["is_closed"].to_numpy(dtype=bool).astype(np.int64).tolist(),
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


def _ingest_block(connection, path, block, first_line, ride_id, file_id, max_posted_wait, summary, folds) -> int:
    """Validate and store the complete lines of `block`; return the number of lines."""
    frame, wrong_width, lines = _parse_block(block, path, first_line)
    parsed, reason = validate_wait_rows(frame, max_posted_wait)
    reason[wrong_width] = f"expected {len(WAIT_COLUMNS)} comma-separated fields"
    bad = (reason != "").to_numpy()
    summary.rows_read += len(frame)
    observations = _observation_frame(parsed[~bad], ride_id, file_id, folds)
    summary.rows_stored += store_observations(connection, observations)
    rejected = [
        {"source_file_id": file_id, "line_number": int(line), "reason": reason[line],
         "raw": lines[int(line) - first_line].rstrip("\r")}
        for line in frame.index[bad]
    ]
    summary.rows_rejected += len(rejected)
    insert_ignoring_duplicates(connection, schema.rejected_rows, rejected)
    for text, count in reason[bad].value_counts().items():
        summary.rejected_by_reason[text] = summary.rejected_by_reason.get(text, 0) + int(count)
    return len(lines)


def _resume_folds(connection: sa.Connection, file_id: int) -> dict:
    """Rebuild the autumn repeated-hour state of a resumed file from its latest stored observation.

    A file that stopped inside the repeated hour must go on reading it as
    standard time once the clock went back, which the stored UTC offset shows.
    """
    table = schema.observations
    latest = connection.execute(
        sa.select(sa.func.max(table.c.observed_at)).where(table.c.source_file_id == file_id)).scalar()
    if latest is None:
        return {}
    utc = pd.Timestamp(latest)
    utc = utc.tz_localize("UTC") if utc.tzinfo is None else utc.tz_convert("UTC")
    local = utc.tz_convert(LOCAL_ZONE)
    naive = local.tz_localize(None)
    probe = pd.Series([naive]).dt.tz_localize(LOCAL_ZONE, ambiguous="NaT", nonexistent="shift_forward")
    if probe.notna().all():
        return {}
    went_back = local.dst() == pd.Timedelta(0)
    return {naive.date(): (naive.to_datetime64(), bool(went_back))}


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
                folds = _resume_folds(connection, position.file_id) if position.byte_offset else {}
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
                    line_count = _ingest_block(connection, path, complete, line_number, ride_id,
                                               position.file_id, max_posted_wait, summary, folds)
                    hasher.update(complete)
                    consumed += len(complete)
                    line_number += line_count
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
    names the fix. A ride file that fails is reported in the summary and
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
    summary = IngestSummary()
    for path in metadata_files:
        load_park_days(engine, path, summary)

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
