"""Measure parkcast's ingest against the raw limit, and its peak memory as history grows.

    python bench/ingest_bench.py speed [--postgres URL] [--no-sqlite]
    python bench/ingest_bench.py memory [--scale 4]

`speed` ingests the bundled ride files into an empty SQLite database (and an
empty PostgreSQL database with --postgres) and, in the same run, times the raw
limit: pandas.read_csv of the same files plus one plain executemany of the
same rows into a table with the same unique index. On PostgreSQL each of the
two runs gets its own new database, dropped at the end.

`memory` runs the ingest in a child process for the bundled data and for
`--scale` times that history, and prints each child's peak RSS (VmHWM). The larger
history repeats every row shifted by multiples of 28 years, because a 28-year
shift keeps weekdays and leap days aligned.
"""

from __future__ import annotations

import argparse
import gzip
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from parkcast.db import make_engine, migrate
from parkcast.settings import REPO_ROOT
from parkcast.tasks.ingest import _wait_files, ingest_folder, ride_code_of

DATA_DIR = REPO_ROOT / "data" / "touringplans"
RAW_TABLE = "raw_observations"


def _ingest_seconds(url: str, data_dir: Path) -> tuple[float, int]:
    engine = make_engine(url)
    migrate(engine)
    start = time.perf_counter()
    summary = ingest_folder.fn(engine, data_dir, 500)
    seconds = time.perf_counter() - start
    engine.dispose()
    return seconds, summary.rows_stored


def _raw_seconds(url: str, data_dir: Path) -> tuple[float, int]:
    """pandas.read_csv of every ride file plus one executemany into a uniquely indexed table."""
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.exec_driver_sql(f"DROP TABLE IF EXISTS {RAW_TABLE}")
        connection.exec_driver_sql(
            f"CREATE TABLE {RAW_TABLE} (ride TEXT NOT NULL, park_day TEXT NOT NULL, observed_at TEXT NOT NULL, "
            "actual_wait INTEGER, posted_wait INTEGER)"
        )
        connection.exec_driver_sql(f"CREATE UNIQUE INDEX uq_{RAW_TABLE} ON {RAW_TABLE} (ride, observed_at)")
    placeholder = "?" if engine.dialect.name == "sqlite" else "%s"
    conflict = "ON CONFLICT DO NOTHING"
    statement = (f"INSERT INTO {RAW_TABLE} VALUES ({', '.join([placeholder] * 5)}) {conflict}")
    start = time.perf_counter()
    rows = []
    for path in _wait_files(data_dir):
        frame = pd.read_csv(path)
        ride = ride_code_of(path)
        rows.extend(
            (ride, day, at, None if pd.isna(actual) else int(actual), None if pd.isna(posted) else int(posted))
            for day, at, actual, posted in frame.itertuples(index=False, name=None)
        )
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.executemany(statement, rows)
        raw.commit()
    finally:
        raw.close()
    seconds = time.perf_counter() - start
    engine.dispose()
    return seconds, len(rows)


def _create_postgres_database(admin: sa.Engine, server_url: str, created: list[str]) -> str:
    """Create an empty database on the server of `server_url`, append its name to `created`; return its URL."""
    name = f"parkcast_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    created.append(name)
    return sa.engine.make_url(server_url).set(database=name).render_as_string(hide_password=False)


def _speed_once(label: str, server_url: str | None) -> None:
    """Time parkcast's ingest and the raw limit, each into its own empty database, then drop them."""
    with tempfile.TemporaryDirectory() as folder:
        admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT") if server_url else None
        created: list[str] = []
        try:
            if admin is None:
                ingest_url, raw_url = f"sqlite:///{folder}/parkcast.db", f"sqlite:///{folder}/raw.db"
            else:
                ingest_url = _create_postgres_database(admin, server_url, created)
                raw_url = _create_postgres_database(admin, server_url, created)
            ingest, stored = _ingest_seconds(ingest_url, DATA_DIR)
            raw, raw_rows = _raw_seconds(raw_url, DATA_DIR)
        finally:
            if admin is not None:
                with admin.connect() as connection:
                    for name in created:
                        connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                admin.dispose()
    print(f"{label}: parkcast ingest {ingest:.1f} s ({stored} rows stored); raw limit {raw:.1f} s "
          f"({raw_rows} rows read); ratio {ingest / raw:.2f}", flush=True)


def speed(postgres: str | None, sqlite: bool) -> None:
    if sqlite:
        _speed_once("SQLite", None)
    if postgres:
        _speed_once("PostgreSQL", postgres)


def _synthesise(target: Path, scale: int, rides: list[str] | None) -> None:
    """Write the bundled ride files (or only `rides`) with `scale` copies of their history, 28 years apart."""
    for path in DATA_DIR.iterdir():
        if path.name.endswith(".csv") or "metadata" in path.name:
            shutil.copy(path, target / path.name)
    for path in _wait_files(DATA_DIR):
        if rides and ride_code_of(path) not in rides:
            continue
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        with gzip.open(target / path.name, "wt", compresslevel=1) as handle:
            handle.write("date,datetime,SACTMIN,SPOSTMIN\n")
            for copy in range(scale):
                shifted = frame.copy()
                if copy:
                    year = shifted["date"].str[6:10].astype(int) + 28 * copy
                    shifted["date"] = shifted["date"].str[:6] + year.astype(str)
                    year = shifted["datetime"].str[:4].astype(int) + 28 * copy
                    shifted["datetime"] = year.astype(str) + shifted["datetime"].str[4:]
                shifted.to_csv(handle, index=False, header=False)


def _peak_rss_mib() -> float:
    """Return this process's peak resident set size in MiB.

    On Linux this is VmHWM, the high-water mark of the current address space.
    ru_maxrss is not used there, because a process started by fork (or vfork)
    and exec keeps the parent's ru_maxrss if that is higher, so the child
    would report the memory the parent used to synthesise the data.
    """
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux; macOS reports bytes


def _child(data_dir: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        seconds, stored = _ingest_seconds(f"sqlite:///{folder}/parkcast.db", Path(data_dir))
    print(f"{stored} {seconds:.1f} {_peak_rss_mib():.0f}")


def memory(scale: int, rides: list[str] | None) -> None:
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        scaled, bundled = Path(folder) / "scaled", Path(folder) / "bundled"
        scaled.mkdir()
        bundled.mkdir()
        _synthesise(bundled, 1, rides)
        _synthesise(scaled, scale, rides)
        for label, data_dir in (("bundled", bundled), (f"{scale}x", scaled)):
            output = subprocess.run([sys.executable, __file__, "_child", str(data_dir)], check=True,
                                    capture_output=True, text=True).stdout.split()
            stored, seconds, peak = int(output[-3]), float(output[-2]), float(output[-1])
            results[label] = peak
            print(f"{label}: {stored} rows stored in {seconds:.1f} s, peak RSS {peak:.0f} MiB", flush=True)
    print(f"(this parent process, which synthesised the files: peak RSS {_peak_rss_mib():.0f} MiB)")
    print(f"peak RSS growth {scale}x data / bundled: {results[f'{scale}x'] / results['bundled']:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    speed_parser = commands.add_parser("speed", help="time ingest against the raw limit")
    speed_parser.add_argument("--postgres", help="PostgreSQL server URL, on which two temporary databases are created and dropped")
    speed_parser.add_argument("--no-sqlite", action="store_true", help="skip the SQLite measurement")
    memory_parser = commands.add_parser("memory", help="peak RSS for the bundled and scaled history")
    memory_parser.add_argument("--scale", type=int, default=4, help="copies of the history (default 4)")
    memory_parser.add_argument("--rides", nargs="*", help="ride codes to use (default: all bundled rides)")
    child_parser = commands.add_parser("_child")
    child_parser.add_argument("data_dir")
    arguments = parser.parse_args()
    if arguments.command == "speed":
        speed(arguments.postgres, not arguments.no_sqlite)
    elif arguments.command == "memory":
        memory(arguments.scale, arguments.rides)
    else:
        _child(arguments.data_dir)


if __name__ == "__main__":
    main()
