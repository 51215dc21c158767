"""Hourly cells and model features, computed the same way for training and forecasting."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date

import holidays
import numpy as np
import pandas as pd
import sqlalchemy as sa
from prefect import task
from prefect.cache_policies import NONE

from parkcast import schema
from parkcast.retries import RETRIES, RETRY_DELAY_SECONDS, retry_if_transient

__all__ = [
    "FEATURE_SCHEMA_VERSION",
    "TREND_FEATURE",
    "CATEGORICAL_FEATURES",
    "NUMERIC_FEATURES",
    "Context",
    "load_cells",
    "load_context",
    "build_features",
    "METADATA_FEATURES",
    "mask_metadata",
    "RECENT_WINDOW_DAYS",
    "with_history",
    "assign_training_as_of",
    "BASE_LEVEL",
]

# Bump when the meaning or list of features changes: models trained on another
# version cannot be scored against this one.
FEATURE_SCHEMA_VERSION = 3

# Numeric metadata features read straight from one column: a {park} in the
# column name means the ride's own park (MK, EP, HS or AK).
_METADATA_COLUMNS = {
    "holiday_proximity": "HOLIDAYPX",
    "metadata_holiday": "HOLIDAY",
    "wdw_event": "WDWevent",
    "wdw_race": "WDWrace",
    "park_event": "{park}event",
    "school_in_session_wdw": "inSession_wdw",
    "school_in_session_florida": "inSession_Florida",
    "capacity_lost": "CapacityLost_{park}",
    "park_hours_with_emh": "{park}HOURSEMH",
    "fireworks": "{park}FIREWK",
    "day_parades": "{park}PRDDAY",
    "night_parades": "{park}PRDNGT",
}
EXTRA_METADATA_FEATURES = list(_METADATA_COLUMNS)

CATEGORICAL_FEATURES = ["ride_code", "park_code", "hour", "day_of_week", "month", "ticket_season", "wdw_season"]
NUMERIC_FEATURES = [
    "hour_of_day",
    "day_of_year_sin",
    "day_of_year_cos",
    "is_public_holiday",
    "has_metadata",
    "park_open_hour",
    "park_close_hour",
    "park_open_hours",
    "hours_after_open",
    "extra_magic_morning",
    "extra_magic_evening",
    "school_in_session",
    "holiday_metric",
    "ride_duration_minutes",
    *EXTRA_METADATA_FEATURES,
    "recent_level",
    "has_recent_level",
    "recent_hour_level",
    "has_recent_hour_level",
    "last_year_level",
    "has_last_year_level",
    "profile_level",
    "has_profile_level",
    "year_profile_level",
    "has_year_profile_level",
    "horizon_days",
    "base_level",
]
# Years since 2015 as a number: a linear trend. build_features returns it,
# but the MLP does not read it, because its base level already carries the
# level of the last year. Without the trend, and with less metadata masked
# (tasks/train.py), the backtest's validation MAE fell from 13.44 to 13.36
# with metadata and from 13.89 to 13.78 with it hidden (mean of 3 seeds,
# docs/benchmarks.md). The classic write-up baseline (models/classic_mlp.py)
# reads the trend, because no other input of it distinguishes the years.
TREND_FEATURE = "years_since_2015"
# The numeric feature the model's output is added to (see models/mlp.py).
BASE_LEVEL = "base_level"

# The recent level of a ride is its mean daily wait over this many calendar
# days up to and including the as-of day of the forecast.
RECENT_WINDOW_DAYS = 28
# Last year's level of a ride around the same day: 364 days back keeps the
# weekday, averaged over a window of this many days centred there.
SEASONAL_WINDOW_DAYS = 15
SEASONAL_LAG_DAYS = 364
# The year profile is the ride x weekday x hour mean over this many days up to as-of.
YEAR_PROFILE_DAYS = 364

# Features read from the park-day metadata row; future days often have none.
METADATA_FEATURES = [
    "park_open_hour",
    "park_close_hour",
    "park_open_hours",
    "hours_after_open",
    "extra_magic_morning",
    "extra_magic_evening",
    "school_in_session",
    "holiday_metric",
    *EXTRA_METADATA_FEATURES,
]


@dataclass(frozen=True)
class Context:
    """Everything besides the cell keys that features are computed from."""

    rides: pd.DataFrame  # one row per ride: code, park_code, ...
    park_days: pd.DataFrame  # one row per park day, raw metadata strings, indexed by date
    # Recent level per (ride_code, day), from the observed history; see with_history.
    recent_levels: pd.Series | None = None
    # Recent level per (ride_code, hour, day) at that hour of the day.
    recent_hour_levels: pd.Series | None = None
    # Level per (ride_code, day) over a window centred on the day, for last year's season.
    seasonal_levels: pd.Series | None = None
    # Mean wait per ride x weekday x hour of all days up to `day` (the seasonal-naive value).
    profile_levels: pd.DataFrame | None = None


def _rolling_by(
    series: pd.Series, group: list[str], window: int, last_day: pd.Timestamp, center: bool = False
) -> pd.Series:
    """Rolling mean over calendar days of a (group..., park_day) series, per group.

    Each group runs to `last_day`, so a group last seen before an as-of day
    still has its level on that day.
    """
    parts = []
    for key, part in series.groupby(level=group[0] if len(group) == 1 else group):
        part = part.droplevel(group)
        full = part.reindex(pd.date_range(part.index.min(), max(part.index.max(), last_day), freq="D"))
        rolled = full.rolling(window, min_periods=3, center=center).mean().dropna()
        key = key if isinstance(key, tuple) else (key,)
        index = pd.MultiIndex.from_tuples([(*key, day) for day in rolled.index], names=[*group, "day"])
        parts.append(pd.Series(rolled.to_numpy(), index=index))
    return pd.concat(parts) if parts else pd.Series(dtype=float)


def with_history(context: Context, cells: pd.DataFrame) -> Context:
    """Return `context` with the history features computed from observed `cells`.

    Each value is indexed by the last day it uses, and lookups only use days
    up to the forecast's as-of day, so no forecast sees later observations.
    """
    daily = cells.groupby(["ride_code", "park_day"])["wait"].mean()
    hourly = cells.set_index(["ride_code", "hour", "park_day"])["wait"]
    last_day = pd.Timestamp(cells["park_day"].max())
    return replace(
        context,
        recent_levels=_rolling_by(daily, ["ride_code"], RECENT_WINDOW_DAYS, last_day),
        recent_hour_levels=_rolling_by(hourly, ["ride_code", "hour"], RECENT_WINDOW_DAYS, last_day),
        seasonal_levels=_rolling_by(daily, ["ride_code"], SEASONAL_WINDOW_DAYS, last_day, center=True),
        profile_levels=_expanding_profile(cells),
    )


def _expanding_profile(cells: pd.DataFrame) -> pd.DataFrame:
    """Mean wait per ride x weekday x hour over all days up to each observed day."""
    frame = cells[["ride_code", "park_day", "hour", "wait"]].assign(
        weekday=pd.to_datetime(cells["park_day"]).dt.dayofweek, hour=cells["hour"].astype(int)
    )
    frame = frame.sort_values("park_day", kind="stable")
    grouped = frame.groupby(["ride_code", "weekday", "hour"])["wait"]
    frame["cum_sum"] = grouped.cumsum()
    frame["cum_count"] = grouped.cumcount() + 1.0
    frame["profile_level"] = frame["cum_sum"] / frame["cum_count"]
    columns = ["ride_code", "weekday", "hour", "park_day", "profile_level", "cum_sum", "cum_count"]
    return frame[columns].rename(columns={"park_day": "day"})


def assign_training_as_of(cells: pd.DataFrame, max_horizon: int, seed: int) -> pd.DataFrame:
    """Give each training cell an as-of day 1 to `max_horizon` days before it, at random.

    The model then learns how the recent level carries over each horizon.
    """
    horizon = np.random.default_rng(seed).integers(1, max_horizon + 1, size=len(cells))
    return cells.assign(as_of=pd.to_datetime(cells["park_day"]) - pd.to_timedelta(horizon, unit="D"))


@task(cache_policy=NONE, retries=RETRIES, retry_delay_seconds=RETRY_DELAY_SECONDS,
      retry_condition_fn=retry_if_transient)
def load_cells(engine: sa.Engine, start: date | None = None, end: date | None = None) -> pd.DataFrame:
    """Return the mean posted wait per (ride, park day, hour) between `start` and `end`.

    Closed rides and rows without a posted wait are left out.
    """
    obs, rides = schema.observations, schema.rides
    query = (
        sa.select(
            rides.c.code.label("ride_code"),
            obs.c.park_day,
            obs.c.local_hour.label("hour"),
            sa.func.avg(obs.c.posted_wait).label("wait"),
            sa.func.count().label("observations"),
        )
        .join(rides, rides.c.id == obs.c.ride_id)
        .where(obs.c.posted_wait.is_not(None), obs.c.is_closed.is_(False))
        .group_by(rides.c.code, obs.c.park_day, obs.c.local_hour)
    )
    if start is not None:
        query = query.where(obs.c.park_day >= start)
    if end is not None:
        query = query.where(obs.c.park_day <= end)
    with engine.connect() as connection:
        cells = pd.read_sql(query, connection)
    cells["park_day"] = pd.to_datetime(cells["park_day"])
    cells["wait"] = cells["wait"].astype(float)
    return cells.sort_values(["park_day", "ride_code", "hour"], ignore_index=True)


@task(cache_policy=NONE, retries=RETRIES, retry_delay_seconds=RETRY_DELAY_SECONDS,
      retry_condition_fn=retry_if_transient)
def load_context(engine: sa.Engine) -> Context:
    """Read rides and park-day metadata from the database."""
    with engine.connect() as connection:
        rides = pd.read_sql(sa.select(schema.rides), connection)
        days = connection.execute(sa.select(schema.park_days.c.park_day, schema.park_days.c.attributes)).all()
    park_days = pd.DataFrame([row.attributes for row in days], index=pd.to_datetime([row.park_day for row in days]))
    return Context(rides=rides, park_days=park_days)


def _numeric(frame: pd.DataFrame, column: str) -> pd.Series:
    if column not in frame.columns:
        return pd.Series(np.nan, index=frame.index)
    return pd.to_numeric(frame[column].astype(str).str.rstrip("%"), errors="coerce")


def _clock_hours(frame: pd.DataFrame, column: str) -> pd.Series:
    if column not in frame.columns:
        return pd.Series(np.nan, index=frame.index)
    parts = frame[column].astype(str).str.extract(r"^(\d{1,2}):(\d{2})$").astype(float)
    return parts[0] + parts[1] / 60.0


def _park_day_features(context: Context, keys: pd.DataFrame) -> pd.DataFrame:
    """Look up each key's park-day metadata for the ride's own park.

    The features depend only on (park day, park), so they are computed once
    per distinct pair and copied to the keys: parsing the wide metadata rows
    for every cell took most of the feature time of a retrain.
    """
    pairs = keys[["park_day", "park_code"]]
    distinct = pairs.drop_duplicates(ignore_index=True)
    table = _park_day_features_of_pairs(context, distinct)
    positions = pd.MultiIndex.from_frame(distinct).get_indexer(pd.MultiIndex.from_frame(pairs))
    return table.iloc[positions].set_axis(keys.index)


def _park_day_features_of_pairs(context: Context, keys: pd.DataFrame) -> pd.DataFrame:
    meta = context.park_days.reindex(keys["park_day"].to_numpy())
    meta.index = keys.index
    park = keys["park_code"]
    out = pd.DataFrame(index=keys.index)
    out["has_metadata"] = meta.notna().any(axis=1).astype(float)
    for name, suffix in [("park_open_hour", "OPEN"), ("park_close_hour", "CLOSE")]:
        values = pd.Series(np.nan, index=keys.index)
        for code in park.unique():
            rows = park == code
            values[rows] = _clock_hours(meta.loc[rows], f"{code}{suffix}")
        out[name] = values
    out["park_open_hours"] = out["park_close_hour"] - out["park_open_hour"]
    for name, suffix in [("extra_magic_morning", "EMHMORN"), ("extra_magic_evening", "EMHEVE")]:
        values = pd.Series(np.nan, index=keys.index)
        for code in park.unique():
            rows = park == code
            values[rows] = _numeric(meta.loc[rows], f"{code}{suffix}")
        out[name] = values
    out["school_in_session"] = _numeric(meta, "inSession")
    out["holiday_metric"] = _numeric(meta, "HOLIDAYM")
    season = meta["WDW_TICKET_SEASON"] if "WDW_TICKET_SEASON" in meta else pd.Series(index=keys.index)
    out["ticket_season"] = season.fillna("unknown").astype(str)
    season = meta["WDWSEASON"] if "WDWSEASON" in meta else pd.Series(index=keys.index)
    out["wdw_season"] = season.fillna("unknown").astype(str)
    for name, column in _METADATA_COLUMNS.items():
        if "{park}" not in column:
            out[name] = _numeric(meta, column)
            continue
        values = pd.Series(np.nan, index=keys.index)
        for code in park.unique():
            rows = park == code
            values[rows] = _numeric(meta.loc[rows], column.format(park=code))
        out[name] = values
    return out


def _lookup(levels: pd.Series | None, *keys: pd.Series) -> np.ndarray:
    if levels is None or levels.empty:
        return np.full(len(keys[0]), np.nan)
    return levels.reindex(pd.MultiIndex.from_arrays(list(keys))).to_numpy()


def _profile_as_of(keys: pd.DataFrame, day: pd.Series, as_of: pd.Series, profile: pd.DataFrame | None) -> pd.DataFrame:
    """Running sums of the cell's ride x weekday x hour up to each as-of day (NaN before the first)."""
    if profile is None or profile.empty:
        return pd.DataFrame(np.nan, index=range(len(keys)), columns=["profile_level", "cum_sum", "cum_count"])
    probe = pd.DataFrame({
        "ride_code": keys["ride_code"].to_numpy(), "weekday": day.dt.dayofweek.to_numpy(),
        "hour": keys["hour"].astype(int).to_numpy(), "day": as_of.to_numpy().astype("datetime64[ns]"),
        "row": np.arange(len(keys)),
    }).sort_values("day")
    profile = profile.assign(day=profile["day"].to_numpy().astype("datetime64[ns]")).sort_values("day")
    matched = pd.merge_asof(probe, profile, on="day", by=["ride_code", "weekday", "hour"])
    return matched.sort_values("row")[["profile_level", "cum_sum", "cum_count"]].reset_index(drop=True)


def _year_profile(keys: pd.DataFrame, day: pd.Series, as_of: pd.Series, profile: pd.DataFrame | None) -> tuple[np.ndarray, np.ndarray]:
    """Expanding profile up to as-of, and the profile of the YEAR_PROFILE_DAYS days up to as-of.

    Ride levels shift between years, so the last year's profile is a better
    level for long horizons than the mean over all years.
    """
    upto = _profile_as_of(keys, day, as_of, profile)
    before = _profile_as_of(keys, day, as_of - pd.Timedelta(days=YEAR_PROFILE_DAYS), profile)
    count = upto["cum_count"].to_numpy() - before["cum_count"].fillna(0.0).to_numpy()
    total = upto["cum_sum"].to_numpy() - before["cum_sum"].fillna(0.0).to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        year = np.where(count > 0, total / np.where(count > 0, count, 1.0), np.nan)
    return upto["profile_level"].to_numpy(), year


def _history_features(keys: pd.DataFrame, day: pd.Series, as_of: pd.Series, context: Context) -> pd.DataFrame:
    """Levels of each ride from observations up to the as-of day only."""
    out = pd.DataFrame(index=keys.index)
    out["recent_level"] = _lookup(context.recent_levels, keys["ride_code"], as_of)
    out["recent_hour_level"] = _lookup(context.recent_hour_levels, keys["ride_code"], keys["hour"].astype(int), as_of)
    last_year = day - pd.Timedelta(days=SEASONAL_LAG_DAYS)
    seasonal = _lookup(context.seasonal_levels, keys["ride_code"], last_year)
    # The centred window ends half a window after last year's day: drop it if that is after as-of.
    window_end = last_year + pd.Timedelta(days=SEASONAL_WINDOW_DAYS // 2)
    out["last_year_level"] = np.where(window_end <= as_of, seasonal, np.nan)
    out["profile_level"], out["year_profile_level"] = _year_profile(keys, day, as_of, context.profile_levels)
    for name in ["recent_level", "recent_hour_level", "last_year_level", "profile_level", "year_profile_level"]:
        out[f"has_{name}"] = out[name].notna().astype(float)
    # The model predicts a correction to this level. Within the recent window
    # it is the recent hour level. Beyond it, it is the last year's profile,
    # because ride levels shift between years: on the WDW-2019H2 test cells
    # (horizons up to 184 days) that profile alone scores 16.4 min MAE and the
    # recent hour level 18.6.
    near = ((day - as_of).dt.days <= RECENT_WINDOW_DAYS).to_numpy()
    near_base = out["recent_hour_level"].fillna(out["year_profile_level"])
    far_base = out["year_profile_level"].fillna(out["recent_hour_level"])
    out[BASE_LEVEL] = near_base.where(near, far_base).fillna(out["profile_level"]).fillna(out["recent_level"]).fillna(0.0)
    return out


def build_features(keys: pd.DataFrame, context: Context) -> pd.DataFrame:
    """Compute every model feature for cells given as ride_code, park_day, hour and as_of.

    Metadata fields of days without a metadata row are NaN and has_metadata is
    0; the model's preprocessing fills them, so the same code serves history
    and future days.
    """
    if "as_of" not in keys.columns:
        raise ValueError("keys need an as_of column: the day the forecast is made")
    keys = keys[["ride_code", "park_day", "hour", "as_of"]].reset_index(drop=True)
    unknown = sorted(set(keys["ride_code"]) - set(context.rides["code"]))
    if unknown:
        raise ValueError(f"unknown rides {unknown}; known rides are {sorted(context.rides['code'])}. Run `parkcast run` to ingest attractions.csv")
    park_of = dict(zip(context.rides["code"], context.rides["park_code"]))
    day = pd.to_datetime(keys["park_day"])
    frame = keys.assign(park_day=day, park_code=keys["ride_code"].map(park_of))

    years = range(int(day.dt.year.min()) - 1, int(day.dt.year.max()) + 2) if len(day) else []
    us_holidays = holidays.country_holidays("US", subdiv="FL", years=years)
    day_of_year = day.dt.dayofyear.to_numpy()
    features = pd.DataFrame(
        {
            "ride_code": frame["ride_code"].astype(str),
            "park_code": frame["park_code"].astype(str),
            "hour": frame["hour"].astype(int).astype(str),
            "day_of_week": day.dt.dayofweek.astype(str),
            "month": day.dt.month.astype(str),
            "hour_of_day": frame["hour"].astype(float),
            "day_of_year_sin": np.sin(2 * np.pi * day_of_year / 365.25),
            "day_of_year_cos": np.cos(2 * np.pi * day_of_year / 365.25),
            TREND_FEATURE: (day - pd.Timestamp("2015-01-01")).dt.days / 365.25,
            "is_public_holiday": day.dt.date.map(lambda d: float(d in us_holidays)),
        }
    )
    features = features.join(_park_day_features(context, frame))
    rides = context.rides.set_index("code")
    duration = frame["ride_code"].map(rides["duration_minutes"]) if "duration_minutes" in rides else np.nan
    features["ride_duration_minutes"] = pd.to_numeric(duration, errors="coerce")
    as_of = pd.to_datetime(keys["as_of"])
    features["horizon_days"] = (day - as_of).dt.days.astype(float)
    features = features.join(_history_features(keys, day, as_of, context))
    # Hours after midnight count from the park day's midnight: 1am is hour 25.
    clock = features["hour_of_day"].where(features["hour_of_day"] >= 5, features["hour_of_day"] + 24)
    features["hours_after_open"] = clock - features["park_open_hour"]
    return features[CATEGORICAL_FEATURES + NUMERIC_FEATURES + [TREND_FEATURE]]


def mask_metadata(features: pd.DataFrame, share: float, seed: int) -> pd.DataFrame:
    """Return a copy with the metadata of a random `share` of rows blanked out.

    Training on such rows teaches the model to forecast days beyond the
    metadata from calendar fields alone. Without them, has_metadata=0 would
    only mark the last months of history and absorb their level.
    """
    masked = features.copy()
    rows = np.random.default_rng(seed).random(len(masked)) < share
    masked.loc[rows, METADATA_FEATURES] = np.nan
    masked.loc[rows, "has_metadata"] = 0.0
    masked.loc[rows, ["ticket_season", "wdw_season"]] = "unknown"
    return masked
