"""Logging for parkcast: Prefect's run logger inside runs, passwords masked everywhere."""

from __future__ import annotations

import logging
import re

__all__ = ["get_logger", "PasswordMaskingFilter", "install_password_masking"]

# user:password@ inside any URL-like string, such as a SQLAlchemy database URL.
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-zA-Z][\w+.-]*://[^:/@\s]+):(?P<password>[^@\s]+)@")


class PasswordMaskingFilter(logging.Filter):
    """Replace the password of any URL in a log record's message with ***."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = _URL_PASSWORD.sub(r"\g<scheme>:***@", message)
        if masked != message:
            record.msg = masked
            record.args = None
        return True


_MASKED_LOGGERS = ("parkcast", "prefect", "prefect.flow_runs", "prefect.task_runs")
_FILTER = PasswordMaskingFilter()


def install_password_masking() -> None:
    """Attach the masking filter to parkcast's and Prefect's loggers (idempotent)."""
    for name in _MASKED_LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)


def get_logger() -> logging.Logger | logging.LoggerAdapter:
    """Return Prefect's run logger inside a flow or task run, else parkcast's logger."""
    install_password_masking()
    from prefect.exceptions import MissingContextError
    from prefect.logging import get_run_logger

    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger("parkcast")
