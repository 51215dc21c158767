"""Database engine creation, connectivity checks and schema migrations."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError

from parkcast.settings import mask_url

__all__ = ["DatabaseUnavailableError", "make_engine", "migrate", "MIGRATIONS_DIR"]

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "sql" / "migrations"


class DatabaseUnavailableError(RuntimeError):
    """The configured database cannot be reached or opened."""


def _enable_sqlite_foreign_keys(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def make_engine(url: str, must_exist: bool = False) -> Engine:
    """Create an engine for `url` and check that the database responds.

    SQLite files get their folder created, WAL journaling (readers do not block
    the writer) and enforced foreign keys. With `must_exist`, a missing SQLite
    file raises DatabaseUnavailableError instead of being created, so that
    read-only commands do not hide a mistyped path.
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise DatabaseUnavailableError(
            f"invalid database URL {mask_url(url)}: set PARKCAST_DATABASE_URL to a SQLAlchemy URL such as "
            "sqlite:////path/to/parkcast.db or postgresql+psycopg://user:password@host:5432/dbname"
        ) from None
    is_sqlite = parsed.get_backend_name() == "sqlite"
    if is_sqlite and parsed.database and parsed.database != ":memory:":
        if must_exist and not Path(parsed.database).is_file():
            raise DatabaseUnavailableError(
                f"database file not found: {parsed.database}. Run `parkcast run` first to create and fill it, "
                "or fix PARKCAST_DATABASE_URL (see `parkcast settings`)."
            )
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)

    engine = create_engine(url, future=True, pool_pre_ping=not is_sqlite)
    if is_sqlite:
        event.listen(engine, "connect", _enable_sqlite_foreign_keys)

    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except OperationalError as error:
        engine.dispose()
        raise DatabaseUnavailableError(
            f"cannot connect to the database at {mask_url(url)}: "
            f"{error.orig.__class__.__name__}. Check that the server is running and "
            "that PARKCAST_DATABASE_URL names it (see `parkcast settings`)."
        ) from None
    return engine


def migrate(engine: Engine) -> None:
    """Upgrade the schema of `engine`'s database to the newest migration."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection_engine"] = engine
    command.upgrade(config, "head")
