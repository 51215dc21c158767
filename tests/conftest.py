"""Shared fixtures: a small slice of the real data, databases, Prefect's test harness."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from parkcast.db import make_engine, migrate
from parkcast.settings import REPO_ROOT, Settings

DATA_DIR = REPO_ROOT / "data" / "touringplans"
# One ride per park type of crowd: Epcot, Magic Kingdom, Hollywood Studios.
SLICE_RIDES = ["soarin", "pirates_of_caribbean", "slinky_dog"]
SLICE_START, SLICE_END = "01/01/2019", "03/31/2019"
DEFAULT_TEST_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def write_slice(target: Path, rides: list[str] = SLICE_RIDES, start: str = SLICE_START, end: str = SLICE_END) -> Path:
    """Copy a few rides and months of the bundled real data into `target`."""
    target.mkdir(parents=True, exist_ok=True)
    first, last = pd.Timestamp(start), pd.Timestamp(end)
    for ride in rides:
        frame = pd.read_csv(DATA_DIR / f"{ride}.csv.gz", dtype=str, keep_default_na=False)
        days = pd.to_datetime(frame["date"], format="%m/%d/%Y")
        frame[(days >= first) & (days <= last)].to_csv(target / f"{ride}.csv.gz", index=False)
    attractions = pd.read_csv(DATA_DIR / "attractions.csv", dtype=str, keep_default_na=False)
    attractions[attractions["ride"].isin(rides)].to_csv(target / "attractions.csv", index=False)
    shutil.copy(DATA_DIR / "touringplans_metadata.csv.gz", target / "touringplans_metadata.csv.gz")
    return target


@pytest.fixture(scope="session")
def real_slice(tmp_path_factory) -> Path:
    """Folder with three real rides for the first quarter of 2019."""
    return write_slice(tmp_path_factory.mktemp("slice"))


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'parkcast.db'}"


@pytest.fixture
def sqlite_engine(sqlite_url):
    engine = make_engine(sqlite_url)
    migrate(engine)
    yield engine
    engine.dispose()


def _postgres_server_url() -> str:
    return os.environ.get("PARKCAST_TEST_POSTGRES_URL", DEFAULT_TEST_POSTGRES_URL)


def create_postgres_database() -> tuple[str, sa.Engine, str]:
    """Create an empty PostgreSQL database; return its URL, the admin engine and its name.

    Skips the calling test, with the reason, when no server answers at PARKCAST_TEST_POSTGRES_URL.
    """
    server_url = _postgres_server_url()
    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
    except sa.exc.OperationalError as error:
        admin.dispose()
        pytest.skip(f"no PostgreSQL server at PARKCAST_TEST_POSTGRES_URL ({error.orig.__class__.__name__})")
    name = f"parkcast_test_{uuid.uuid4().hex[:10]}"
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.engine.make_url(server_url).set(database=name).render_as_string(hide_password=False)
    return url, admin, name


def drop_postgres_database(admin: sa.Engine, name: str) -> None:
    """Drop a database made by create_postgres_database and dispose of its admin engine."""
    with admin.connect() as connection:
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def postgres_url():
    """URL of a new, empty PostgreSQL database, dropped after the test."""
    url, admin, name = create_postgres_database()
    yield url
    drop_postgres_database(admin, name)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request):
    """Each test using it runs once on SQLite and once on PostgreSQL."""
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_url")


@pytest.fixture
def engine(database_url):
    engine = make_engine(database_url)
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def prefect_harness():
    """A temporary Prefect API for the tests that run real flows."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def small_settings(database_url: str, data_dir: Path, model_dir: Path, **overrides) -> Settings:
    """Settings for a fast run on a real slice: short windows, few epochs."""
    values = dict(
        database_url=database_url, data_dir=data_dir, model_dir=model_dir, horizon_days=7,
        evaluation_days=14, max_epochs=6, seed=7, trials=1,
    )
    values.update(overrides)
    return Settings(**values)
