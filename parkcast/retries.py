"""Retry policy of the Prefect tasks that read or write the database or files.

A task retries only on errors that can pass by themselves (a locked SQLite
file, a dropped PostgreSQL connection, a timed-out read). Invalid input,
missing tables and bugs fail on the first attempt, because a retry would
only repeat them and delay the readable error.
"""

from __future__ import annotations

import errno
import sqlite3

import sqlalchemy as sa

__all__ = ["RETRIES", "RETRY_DELAY_SECONDS", "is_transient", "retry_if_transient"]

# Three retries with exponential backoff: 2, 8 and 32 seconds after each failure.
RETRIES = 3
RETRY_DELAY_SECONDS = [2, 8, 32]

# OSError numbers of conditions that may clear up: busy or interrupted calls,
# network file systems and sockets that time out or reset.
_TRANSIENT_ERRNOS = frozenset({
    errno.EAGAIN, errno.EBUSY, errno.EINTR, errno.ETIMEDOUT, errno.ESTALE,
    errno.ECONNRESET, errno.ECONNREFUSED, errno.ECONNABORTED, errno.EPIPE,
    errno.ENETUNREACH, errno.EHOSTUNREACH,
})
# SQLite reports a locked file and a missing table with the same exception
# class, so its messages decide.
_TRANSIENT_SQLITE_MESSAGES = ("database is locked", "database table is locked", "disk i/o error")


def is_transient(error: BaseException) -> bool:
    """Return True if `error` may not happen again when the same call is retried."""
    if isinstance(error, sa.exc.DBAPIError):
        if error.connection_invalidated:
            return True
        if not isinstance(error, sa.exc.OperationalError):
            return False
        if isinstance(error.orig, sqlite3.Error):
            message = str(error.orig).lower()
            return any(text in message for text in _TRANSIENT_SQLITE_MESSAGES)
        # PostgreSQL drivers raise OperationalError for lost connections,
        # server shutdowns, serialization failures and deadlocks.
        return True
    if isinstance(error, sa.exc.TimeoutError):  # no pooled connection became free in time
        return True
    if isinstance(error, (TimeoutError, ConnectionError)):
        return True
    if isinstance(error, OSError):
        return error.errno in _TRANSIENT_ERRNOS
    return False


def retry_if_transient(task, task_run, state) -> bool:
    """Prefect retry_condition_fn: retry the failed task run only on a transient error."""
    error = state.data
    if not isinstance(error, BaseException):
        error = state.result(raise_on_failure=False)
    return isinstance(error, BaseException) and is_transient(error)
