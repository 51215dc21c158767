"""Load the champion safely and write the next park days' forecasts as one set."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

import numpy as np
import pandas as pd
import sqlalchemy as sa
from prefect import task
from prefect.cache_policies import NONE

from parkcast import schema
from parkcast.logs import get_logger
from parkcast.retries import RETRIES, RETRY_DELAY_SECONDS, retry_if_transient
from parkcast.models.mlp import predict_minutes, to_model_inputs
from parkcast.tasks.features import CATEGORICAL_FEATURES, FEATURE_SCHEMA_VERSION, METADATA_FEATURES, NUMERIC_FEATURES, Context, build_features
from parkcast.tasks import registry
from parkcast.tasks.registry import LoadedModel, NoUsableModelError, load_model_file

__all__ = ["NoUsableModelError", "LoadedModel", "load_model_file", "load_champion", "forecast_keys", "calendar_only_where_fallback", "refresh_park_day_history", "ForecastResult", "write_forecasts"]

# A ride's typical hours are those it was observed open on at least this share
# of its recent park days.
TYPICAL_HOUR_SHARE = 0.5
TYPICAL_HOURS_LOOKBACK_DAYS = 60


@task(cache_policy=NONE, retries=RETRIES, retry_delay_seconds=RETRY_DELAY_SECONDS,
      retry_condition_fn=retry_if_transient)
def load_champion(engine: sa.Engine) -> LoadedModel:
    """Load the champion, falling back to earlier champions when its file is broken."""
    return registry.load_champion(engine)


def _typical_hours(cells: pd.DataFrame) -> dict[str, list[int]]:
    """Return each ride's usual operating hours from its latest park days of data."""
    typical = {}
    for ride, ride_cells in cells.groupby("ride_code"):
        recent_days = np.sort(ride_cells["park_day"].unique())[-TYPICAL_HOURS_LOOKBACK_DAYS:]
        recent = ride_cells[ride_cells["park_day"].isin(recent_days)]
        share = recent.groupby("hour")["park_day"].nunique() / len(recent_days)
        typical[ride] = sorted(int(h) for h in share[share >= TYPICAL_HOUR_SHARE].index)
    return typical


def _hours_from_metadata(opens_minute: int, closes_minute: int) -> list[int]:
    """Local clock hours (0-23) overlapping the opening interval; 25:00 close gives hour 0.

    A park open more than 24 hours (metadata allows closes up to 30:00) would
    repeat clock hours, so each hour is kept once, at its first occurrence.
    """
    first, last = opens_minute // 60, (closes_minute - 1) // 60
    return list(dict.fromkeys(hour % 24 for hour in range(first, last + 1)))


def forecast_keys(engine: sa.Engine, context: Context, cells: pd.DataFrame, as_of: date, horizon_days: int) -> pd.DataFrame:
    """List (ride, park day, hour) keys of every operating hour after `as_of`, for rides observed in `cells`."""
    days = [as_of + timedelta(days=offset) for offset in range(1, horizon_days + 1)]
    with engine.connect() as connection:
        hours = pd.read_sql(sa.select(schema.park_hours).where(schema.park_hours.c.park_day.in_(days)), connection)
    opening = {(pd.Timestamp(r.park_day).date(), r.park_code): (r.opens_minute, r.closes_minute) for r in hours.itertuples()}
    typical = _typical_hours(cells)
    observed = set(cells["ride_code"])
    rows = []
    for ride in context.rides.itertuples():
        if ride.code not in observed:
            continue  # No history means no base level (see write_forecasts).
        for day in days:
            if (day, ride.park_code) in opening:
                ride_hours, from_metadata = _hours_from_metadata(*opening[(day, ride.park_code)]), True
            else:
                ride_hours, from_metadata = typical.get(ride.code, []), False
            rows += [{"ride_code": ride.code, "ride_id": ride.id, "park_day": day, "hour": h, "from_metadata": from_metadata} for h in ride_hours]
    keys = pd.DataFrame(rows, columns=["ride_code", "ride_id", "park_day", "hour", "from_metadata"])
    return keys.assign(as_of=pd.Timestamp(as_of))


def calendar_only_where_fallback(features: pd.DataFrame, keys: pd.DataFrame) -> pd.DataFrame:
    """Blank the metadata features of rows forecast from typical hours.

    A park day can have a metadata row but no opening hours for one park. Its
    rows then use typical hours and, like days without metadata, only
    calendar features, as the model saw in training (see mask_metadata).
    """
    fallback = ~keys["from_metadata"].astype(bool).to_numpy()
    features = features.copy()
    features.loc[fallback, METADATA_FEATURES] = np.nan
    features.loc[fallback, "has_metadata"] = 0.0
    features.loc[fallback, ["ticket_season", "wdw_season"]] = "unknown"
    return features


def refresh_park_day_history(connection: sa.Connection, since: date | None = None) -> None:
    """Replace the park_day_history rows with the park_day_observed view's current rows.

    The crowd index reads this copy because the view aggregates every
    observation, which takes seconds on the bundled data (docs/benchmarks.md).
    With `since`, only park days from `since` on are replaced; the caller
    promises that no observation of an earlier park day changed.
    """
    history = schema.park_day_history
    columns = ["park_code", "park_day", "mean_wait", "cells"]
    if since is None:
        observed = sa.table("park_day_observed", *(sa.column(name) for name in columns))
        connection.execute(sa.delete(history))
        connection.execute(sa.insert(history).from_select(columns, sa.select(*observed.c)))
        return
    connection.execute(sa.delete(history).where(history.c.park_day >= since))
    connection.execute(sa.insert(history).from_select(columns, _park_days_observed_since(since)))


def _park_days_observed_since(since: date) -> sa.Select:
    """Return the park_day_observed view's query restricted to park days from `since` on.

    SQLite does not push an outer park_day filter into the view's inner
    GROUP BY, so the view's SQL is repeated here with the filter inside.
    tests/test_replay.py checks that both give the same rows.
    """
    obs, rides = schema.observations, schema.rides
    cells = (
        sa.select(rides.c.park_code, obs.c.park_day, sa.func.avg(sa.cast(obs.c.posted_wait, sa.Float)).label("cell_wait"))
        .join(rides, rides.c.id == obs.c.ride_id)
        .where(obs.c.posted_wait.is_not(None), sa.not_(obs.c.is_closed), obs.c.park_day >= since)
        .group_by(rides.c.park_code, obs.c.park_day, obs.c.ride_id, obs.c.local_hour)
        .subquery("cells")
    )
    return (
        sa.select(cells.c.park_code, cells.c.park_day, sa.func.avg(cells.c.cell_wait), sa.func.count())
        .group_by(cells.c.park_code, cells.c.park_day)
    )


@dataclass(frozen=True)
class ForecastResult:
    """Outcome of one forecast write."""

    as_of: date
    rows: int
    fallback_days: int
    unchanged: bool
    # Park days whose rows used typical hours because metadata did not cover them.
    fallback_dates: tuple[date, ...] = ()
    # Known rides without a single observation, which get no forecasts.
    rides_without_history: tuple[str, ...] = ()


def _lock_forecast_day(connection: sa.Connection, as_of: date) -> None:
    """Serialize writers of one as-of day until the transaction ends, so the later one replaces the earlier set.

    SQLite already lets one writer at a time into a write transaction. On
    PostgreSQL a second writer would otherwise find the first one's set only
    after its own delete and fail on the unique as_of.
    """
    if connection.dialect.name == "postgresql":
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext('parkcast-forecast-set'), :day)"),
                           {"day": as_of.toordinal()})


@task(cache_policy=NONE, retries=RETRIES, retry_delay_seconds=RETRY_DELAY_SECONDS,
      retry_condition_fn=retry_if_transient)
def write_forecasts(engine: sa.Engine, loaded: LoadedModel, context: Context, cells: pd.DataFrame,
                    horizon_days: int, flow_run_id: str | None, history_since: date | None = None) -> ForecastResult:
    """Predict every operating hour of the next park days and store them as one set.

    A set already written for the same as-of day by the same model is left as
    it is. Otherwise the old set for that day is replaced in one transaction,
    so readers see either the old set or the new one, never a mix. Either way
    park_day_history is refreshed, from `history_since` on when it is given.
    """
    as_of = pd.Timestamp(cells["park_day"].max()).date()
    keys = forecast_keys(engine, context, cells, as_of, horizon_days)
    # The model forecasts a correction to a ride's observed level. With no
    # observation that level is 0 and the output is meaningless (it reached
    # millions of minutes), so such rides are left out and reported.
    rides_without_history = tuple(sorted(set(context.rides["code"]) - set(cells["ride_code"])))
    if rides_without_history:
        get_logger().warning("No forecasts for rides without observations: %s; ingest their wait-time files",
                             ", ".join(rides_without_history))
    fallback_dates = tuple(sorted(set(keys.loc[~keys["from_metadata"], "park_day"])))
    fallback_days = len(fallback_dates)
    sets = schema.forecast_sets
    with engine.connect() as connection:
        existing = connection.execute(sa.select(sets).where(sets.c.as_of == as_of)).first()
    if (existing is not None and existing.model_version_id == loaded.version_id and existing.row_count == len(keys)
            and existing.horizon_days == horizon_days):
        with engine.begin() as connection:
            refresh_park_day_history(connection, history_since)
        get_logger().info("Forecasts for as-of %s by model %s already stored; nothing to write", as_of, loaded.version_id)
        return ForecastResult(as_of, len(keys), fallback_days, unchanged=True, fallback_dates=fallback_dates,
                              rides_without_history=rides_without_history)

    features = calendar_only_where_fallback(build_features(keys, context), keys)
    predicted = predict_minutes(loaded.model, to_model_inputs(features, CATEGORICAL_FEATURES, NUMERIC_FEATURES))
    with engine.begin() as connection:
        _lock_forecast_day(connection, as_of)
        connection.execute(sa.delete(schema.forecasts).where(
            schema.forecasts.c.forecast_set_id.in_(sa.select(sets.c.id).where(sets.c.as_of == as_of))))
        connection.execute(sa.delete(sets).where(sets.c.as_of == as_of))
        set_id = connection.execute(sa.insert(sets).values(
            as_of=as_of, model_version_id=loaded.version_id, flow_run_id=flow_run_id,
            created_at=datetime.now(timezone.utc), horizon_days=horizon_days, row_count=len(keys),
            fallback_days=fallback_days).returning(sets.c.id)).scalar_one()
        rows = [
            {"forecast_set_id": set_id, "ride_id": int(r.ride_id), "park_day": r.park_day, "hour": int(r.hour),
             "predicted_wait": round(float(p), 2), "from_metadata": bool(r.from_metadata)}
            for r, p in zip(keys.itertuples(), predicted)
        ]
        if rows:
            connection.execute(sa.insert(schema.forecasts), rows)
        refresh_park_day_history(connection, history_since)
    get_logger().info("Wrote %d forecasts for %d park days after %s (%d days without metadata)",
                      len(rows), horizon_days, as_of, fallback_days)
    return ForecastResult(as_of, len(rows), fallback_days, unchanged=False, fallback_dates=fallback_dates,
                          rides_without_history=rides_without_history)
