"""Features computed by the pandas code match plain SQL queries on the same real slice."""

import sqlite3

import numpy as np
import pandas as pd
import pytest

from parkcast.tasks.backtest import load_benchmark_cells, load_benchmark_context
from parkcast.tasks.features import RECENT_WINDOW_DAYS, YEAR_PROFILE_DAYS, build_features, load_cells, with_history
from parkcast.tasks.ingest import ingest_folder

from .conftest import write_slice


@pytest.fixture(scope="module")
def year_slice(tmp_path_factory):
    """Two rides over 15 months, long enough for the 364-day year profile to differ from the all-time one."""
    return write_slice(tmp_path_factory.mktemp("year"), rides=["soarin", "slinky_dog"], start="01/01/2018", end="03/31/2019")


def _raw_database(folder) -> sqlite3.Connection:
    """Every raw row of the slice's ride files in an in-memory SQLite table."""
    connection = sqlite3.connect(":memory:")
    for path in sorted(folder.glob("*.csv.gz")):
        if path.name == "touringplans_metadata.csv.gz":
            continue
        raw = pd.read_csv(path, usecols=["date", "datetime", "SPOSTMIN"], dtype=str)
        raw.assign(ride=path.name.removesuffix(".csv.gz")).to_sql("raw", connection, if_exists="append", index=False)
    return connection


# The protocol's cells as one GROUP BY over the raw strings.
CELLS_SQL = """
SELECT ride AS ride_code,
       substr(date, 7, 4) || '-' || substr(date, 1, 2) || '-' || substr(date, 4, 2) AS park_day,
       CAST(substr(datetime, 12, 2) AS INTEGER) AS hour,
       AVG(CAST(SPOSTMIN AS REAL)) AS wait
FROM raw
WHERE SPOSTMIN IS NOT NULL AND CAST(SPOSTMIN AS REAL) BETWEEN 0 AND 500
GROUP BY 1, 2, 3
"""


def _sql_cells(folder) -> pd.DataFrame:
    cells = pd.read_sql(CELLS_SQL, _raw_database(folder))
    cells["park_day"] = pd.to_datetime(cells["park_day"])
    return cells.sort_values(["park_day", "ride_code", "hour"], ignore_index=True)


def test_benchmark_cells_match_sql_group_by(real_slice):
    expected = _sql_cells(real_slice)
    cells = load_benchmark_cells(real_slice)
    assert len(cells) == len(expected) > 1000
    pd.testing.assert_frame_equal(cells[expected.columns], expected, check_dtype=False)


def test_database_cells_match_sql_group_by(sqlite_engine, real_slice):
    ingest_folder.fn(sqlite_engine, real_slice, 500)
    cells = load_cells.fn(sqlite_engine).sort_values(["park_day", "ride_code", "hour"], ignore_index=True)
    expected = _sql_cells(real_slice)
    merged = expected.merge(cells, on=["ride_code", "park_day", "hour"], how="outer", suffixes=("_sql", "_db"), indicator=True)
    # Ingest rejects observations whose time falls outside their park day; no cell of this slice loses all of them.
    assert (merged["_merge"] == "both").all(), merged[merged["_merge"] != "both"].head()
    assert (np.abs(merged["wait_sql"] - merged["wait_db"]) < 1e-6).mean() > 0.999


def _keys(cells: pd.DataFrame, as_of: str, count: int) -> pd.DataFrame:
    later = cells[cells["park_day"] > pd.Timestamp(as_of)]
    return later.sample(count, random_state=0)[["ride_code", "park_day", "hour"]].assign(as_of=pd.Timestamp(as_of))


@pytest.mark.parametrize("as_of", ["2018-09-15", "2019-02-28"])
def test_history_features_match_sql_windows(year_slice, as_of):
    cells = load_benchmark_cells(year_slice)
    keys = _keys(cells, as_of, 60).reset_index(drop=True)
    features = build_features(keys, with_history(load_benchmark_context(year_slice), cells))

    connection = sqlite3.connect(":memory:")
    cells.assign(
        park_day=cells["park_day"].dt.strftime("%Y-%m-%d"),
        weekday=cells["park_day"].dt.dayofweek,
    ).to_sql("cells", connection, index=False)
    profile_sql = """
        SELECT AVG(wait) FROM cells
        WHERE ride_code = :ride AND weekday = :weekday AND hour = :hour
          AND park_day <= :as_of AND park_day > :since
    """
    recent_sql = """
        SELECT CASE WHEN COUNT(*) >= 3 THEN AVG(level) END FROM (
            SELECT park_day, AVG(wait) AS level FROM cells
            WHERE ride_code = :ride AND (:hour < 0 OR hour = :hour)
              AND park_day <= :as_of AND park_day > date(:as_of, :back)
            GROUP BY park_day)
    """
    for row, key in keys.iterrows():
        values = {
            "ride": key["ride_code"], "weekday": int(key["park_day"].dayofweek), "hour": int(key["hour"]),
            "as_of": as_of, "since": "0000-00-00", "back": f"-{RECENT_WINDOW_DAYS} days",
        }
        expected = {
            "profile_level": connection.execute(profile_sql, values).fetchone()[0],
            "year_profile_level": connection.execute(
                profile_sql, {**values, "since": str((pd.Timestamp(as_of) - pd.Timedelta(days=YEAR_PROFILE_DAYS)).date())}
            ).fetchone()[0],
            "recent_level": connection.execute(recent_sql, {**values, "hour": -1}).fetchone()[0],
            "recent_hour_level": connection.execute(recent_sql, values).fetchone()[0],
        }
        for name, value in expected.items():
            got = features.loc[row, name]
            if value is None:
                assert np.isnan(got), (name, key.to_dict(), got)
            else:
                assert got == pytest.approx(value, rel=1e-9), (name, key.to_dict())
    # The slice is long enough that the last year's profile differs from the all-time one somewhere.
    if as_of == "2019-02-28":
        assert (np.abs(features["profile_level"] - features["year_profile_level"]) > 0.5).any()
