"""Typed settings for parkcast, read from PARKCAST_* environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal, get_args

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

__all__ = ["Settings", "SettingsError", "get_settings", "REPO_ROOT", "mask_url", "TrialCombine", "TRIAL_COMBINES", "check_trial_combine"]

REPO_ROOT = Path(__file__).resolve().parent.parent
# Ways to combine the trials of one retrain into one model: "best" keeps the
# trial with the lowest validation MAE, "average" the mean of their forecasts.
TrialCombine = Literal["best", "average"]
TRIAL_COMBINES: tuple[str, ...] = get_args(TrialCombine)


def check_trial_combine(value: str) -> str:
    """Check that `value` names a way to combine trials and return it. Raise ValueError naming it and the choices."""
    if value not in TRIAL_COMBINES:
        raise ValueError(f"combine={value!r} is not a way to combine trials; use one of {', '.join(TRIAL_COMBINES)}")
    return value


class Settings(BaseSettings):
    """Every setting parkcast reads; the README's settings table mirrors it."""

    model_config = SettingsConfigDict(
        env_prefix="PARKCAST_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        protected_namespaces=(),
    )

    database_url: str = Field(
        default=f"sqlite:///{REPO_ROOT / 'var' / 'parkcast.db'}",
        description="SQLAlchemy URL of the database (SQLite file or PostgreSQL).",
    )
    data_dir: Path = Field(
        default=REPO_ROOT / "data" / "touringplans",
        description="Folder of TouringPlans files that the ingest step reads.",
    )
    model_dir: Path = Field(
        default=REPO_ROOT / "var" / "models",
        description="Folder where model versions are written as .h5 files.",
    )
    horizon_days: int = Field(
        default=14, ge=1, le=60, description="Number of park days to forecast."
    )
    seed: int = Field(default=42, description="Random seed for training.")
    evaluation_days: int = Field(
        default=28,
        ge=7,
        le=365,
        description="Length in park days of the freshest window that scores models.",
    )
    max_epochs: int = Field(
        default=40, ge=1, le=1000, description="Upper bound on training epochs."
    )
    trials: int = Field(
        default=1, ge=1, le=200, description="Candidate models trained per retrain."
    )
    trial_combine: TrialCombine = Field(
        default="best",
        description="How the trials become the challenger: best keeps the one with the lowest validation MAE, "
        "average saves the mean of all their forecasts as one model.",
    )
    promotion_margin_minutes: float = Field(
        default=0.1,
        ge=0.0,
        description="MAE improvement in minutes a challenger needs to be promoted.",
    )
    max_posted_wait: int = Field(
        default=500,
        ge=1,
        description="Posted waits above this many minutes are rejected as impossible.",
    )
    default_park: str | None = Field(
        default=None,
        pattern="^(MK|EP|HS|AK)$",
        description="Park code (MK, EP, HS, AK) of ride files that no attractions file lists.",
    )
    live_url: str | None = Field(
        default=None,
        description="queue-times.com park JSON (http(s) URL or file path) that `parkcast poll-live` reads.",
    )
    live_park: str | None = Field(
        default=None,
        pattern="^(MK|EP|HS|AK)$",
        description="Park code of the live feed, for rides that no attractions file lists.",
    )

    daily_cron: str = Field(
        default="0 4 * * *",
        description="Cron schedule of the daily_forecast deployment, in schedule_timezone.",
    )
    retrain_cron: str = Field(
        default="0 3 * * 0",
        description="Cron schedule of the weekly retrain deployment, in schedule_timezone.",
    )
    schedule_timezone: str = Field(
        default="America/New_York",
        description="IANA time zone in which both cron schedules are read.",
    )
    run_wait_seconds: float = Field(
        default=600.0,
        ge=0.0,
        description="Seconds a run waits for a still-running run of the same flow before it is skipped.",
    )

    @field_validator("schedule_timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}; use an IANA name such as America/New_York") from None
        return value


class SettingsError(ValueError):
    """A PARKCAST_* variable contains a value that the setting does not accept."""


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Return the process-wide settings, read once from the environment.

    Raises SettingsError naming each invalid PARKCAST_* variable, its value and the rule it breaks.
    """
    try:
        return Settings()
    except ValidationError as error:
        problems = []
        for item in error.errors():
            name = str(item["loc"][0]) if item["loc"] else "?"
            value = item.get("input")
            value_text = mask_url(str(value)) if name == "database_url" else repr(value)
            problems.append(f"PARKCAST_{name.upper()}={value_text}: {item['msg']}")
        raise SettingsError(
            "invalid setting " + "; ".join(problems)
            + ". Fix the environment variable or the .env file (the README lists every setting)."
        ) from None


def mask_url(url: str) -> str:
    """Return the URL with any password replaced by ***, safe for logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL must still not leak.
        return "<unparsable database URL>"
