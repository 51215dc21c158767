"""Read the forecast views for the CLI: one day's table, its plot, the crowd calendar."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from parkcast import schema
from parkcast.summary import format_date_ranges

__all__ = [
    "check_plot_path",
    "ForecastLookupError",
    "DayForecast",
    "load_day_forecast",
    "format_day_forecast",
    "plot_day_forecast",
    "load_crowd_calendar",
    "format_crowd_calendar",
]

# The views that migration 0004 creates from sql/views/, described here with
# column types so that SQLAlchemy returns dates and numbers on every dialect.
views = sa.MetaData()
forecast_latest = sa.Table(
    "forecast_latest",
    views,
    sa.Column("forecast_set_id", sa.Integer),
    sa.Column("as_of", sa.Date),
    sa.Column("model_version_id", sa.String),
    sa.Column("ride_id", sa.Integer),
    sa.Column("ride_code", sa.String),
    sa.Column("ride_name", sa.String),
    sa.Column("park_code", sa.String),
    sa.Column("park_day", sa.Date),
    sa.Column("hour", sa.Integer),
    sa.Column("park_day_hour", sa.Integer),
    sa.Column("predicted_wait", sa.Float),
    sa.Column("from_metadata", sa.Boolean),
)
ride_day_summary = sa.Table(
    "ride_day_summary",
    views,
    sa.Column("ride_code", sa.String),
    sa.Column("park_code", sa.String),
    sa.Column("park_day", sa.Date),
    sa.Column("as_of", sa.Date),
    sa.Column("hours", sa.Integer),
    sa.Column("mean_wait", sa.Float),
    sa.Column("peak_wait", sa.Float),
    sa.Column("peak_hour", sa.Integer),
    sa.Column("best_wait", sa.Float),
    sa.Column("best_hour", sa.Integer),
    sa.Column("fallback_hours", sa.Integer),
)
park_day_crowd_index = sa.Table(
    "park_day_crowd_index",
    views,
    sa.Column("park_code", sa.String),
    sa.Column("park_day", sa.Date),
    sa.Column("as_of", sa.Date),
    sa.Column("mean_wait", sa.Float),
    sa.Column("cells", sa.Integer),
    sa.Column("rides", sa.Integer),
    sa.Column("fallback_cells", sa.Integer),
    sa.Column("history_days", sa.Integer),
    sa.Column("history_days_below", sa.Integer),
    sa.Column("crowd_index", sa.Integer),
)


class ForecastLookupError(ValueError):
    """A requested park, ride or day is invalid or has no forecasts. The message lists valid values."""


class DayForecast:
    """One park day's latest forecasts for a park or a ride, ready to print or plot."""

    def __init__(self, day: date, title: str, hourly: pd.DataFrame, rides: pd.DataFrame, crowd: pd.DataFrame):
        self.day = day
        self.title = title
        # Rows are hours in park-day order, columns ride codes, values minutes.
        self.hourly = hourly
        # One row per ride from ride_day_summary.
        self.rides = rides
        # One row per park from park_day_crowd_index.
        self.crowd = crowd


def _parse_day(value: str, command: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ForecastLookupError(
            f"invalid date {value!r}: expected YYYY-MM-DD. Run `{command} --date YYYY-MM-DD`, such as --date 2021-09-01"
        ) from None


def _newest_as_of(connection: sa.Connection) -> date:
    newest = connection.execute(sa.select(sa.func.max(schema.forecast_sets.c.as_of))).scalar_one()
    if newest is None:
        raise ForecastLookupError("no forecasts are stored yet. Run `parkcast run` to write the first forecast set")
    return newest if isinstance(newest, date) else date.fromisoformat(str(newest))


def load_day_forecast(engine: sa.Engine, park: str | None, ride: str | None, day: str | None) -> DayForecast:
    """Read the latest forecasts of one park day for a park (all its rides) or one ride.

    `day` defaults to the first day of the newest forecast set. Raises
    ForecastLookupError naming the bad value and listing valid ones.
    """
    if (park is None) == (ride is None):
        raise ForecastLookupError("give exactly one of --park CODE or --ride CODE, such as `parkcast forecast --park MK`")
    rides = schema.rides
    with engine.connect() as connection:
        known = pd.read_sql(sa.select(rides.c.code, rides.c.park_code).order_by(rides.c.code), connection)
        if park is not None:
            park = park.upper()
            if park not in set(known["park_code"]):
                parks = ", ".join(sorted(set(known["park_code"]))) or "none (no rides ingested yet)"
                raise ForecastLookupError(f"unknown park {park!r}; valid parks are {parks}. Run `parkcast forecast --park CODE`")
            codes, title = list(known.loc[known["park_code"] == park, "code"]), f"park {park}"
        else:
            by_lower = {code.lower(): code for code in known["code"]}
            ride = by_lower.get(ride.lower(), ride)
            if ride not in set(known["code"]):
                raise ForecastLookupError(
                    f"unknown ride {ride!r}; valid rides are {', '.join(known['code']) or 'none'}. "
                    "Run `parkcast forecast --ride CODE`"
                )
            codes, title = [ride], f"ride {ride}"
        command = f"parkcast forecast --{'park' if park else 'ride'} {park or ride}"
        chosen = _parse_day(day, command) if day is not None else _newest_as_of(connection) + timedelta(days=1)
        hourly = pd.read_sql(
            sa.select(forecast_latest).where(forecast_latest.c.ride_code.in_(codes), forecast_latest.c.park_day == chosen),
            connection,
        )
        if hourly.empty:
            days = connection.execute(
                sa.select(forecast_latest.c.park_day).where(forecast_latest.c.ride_code.in_(codes))
                .distinct().order_by(forecast_latest.c.park_day)
            ).scalars().all()
            listed = format_date_ranges([d if isinstance(d, date) else date.fromisoformat(str(d)) for d in days])
            raise ForecastLookupError(
                f"no forecasts for {title} on {chosen}; forecast days are {listed or 'none'}. "
                f"Run `{command} --date YYYY-MM-DD` with one of them, "
                "or `parkcast run` to forecast newer days"
            )
        summary = pd.read_sql(
            sa.select(ride_day_summary).where(ride_day_summary.c.ride_code.in_(codes), ride_day_summary.c.park_day == chosen)
            .order_by(ride_day_summary.c.ride_code),
            connection,
        )
        parks = sorted(set(hourly["park_code"]))
        crowd = pd.read_sql(
            sa.select(park_day_crowd_index).where(park_day_crowd_index.c.park_code.in_(parks),
                                                  park_day_crowd_index.c.park_day == chosen),
            connection,
        )
    table = hourly.pivot_table(index=["park_day_hour", "hour"], columns="ride_code", values="predicted_wait")
    table = table.sort_index().droplevel("park_day_hour")
    fallback = not bool(hourly["from_metadata"].astype(bool).all())
    return DayForecast(chosen, title + (" (no park-day metadata: typical hours used)" if fallback else ""), table, summary, crowd)


def format_day_forecast(forecast: DayForecast) -> str:
    """Render hourly waits as a table of hours by rides, then each ride's summary."""
    hourly = forecast.hourly
    width = max([len(code) for code in hourly.columns] + [6])
    lines = [f"Forecast waits in minutes for {forecast.title} on {forecast.day}", ""]
    lines.append("hour  " + "  ".join(f"{code:>{width}}" for code in hourly.columns))
    for hour, values in hourly.iterrows():
        cells = ["-" if pd.isna(v) else f"{v:.0f}" for v in values]
        lines.append(f"{hour:02d}:00 " + "  ".join(f"{cell:>{width}}" for cell in cells))
    lines.append("")
    for ride in forecast.rides.itertuples():
        lines.append(
            f"{ride.ride_code}: mean {ride.mean_wait:.0f} min, peak {ride.peak_wait:.0f} min at {ride.peak_hour:02d}:00, "
            f"best hour {ride.best_hour:02d}:00 ({ride.best_wait:.0f} min)"
        )
    for park in forecast.crowd.itertuples():
        index = "unknown (no observed days)" if pd.isna(park.crowd_index) else f"{int(park.crowd_index)}/10"
        lines.append(f"Crowd index of {park.park_code}: {index}; forecast set as of {park.as_of}")
    return "\n".join(lines)


def check_plot_path(path: Path) -> None:
    """Raise ForecastLookupError unless `path` is a .png file name in an existing folder."""
    if path.suffix.lower() != ".png":
        raise ForecastLookupError(f"invalid plot file {str(path)!r}: the name must end in .png, such as waits.png")
    if not path.parent.is_dir():
        raise ForecastLookupError(f"cannot write the plot to {str(path)!r}: folder {str(path.parent)!r} does not exist")


def plot_day_forecast(forecast: DayForecast, path: Path) -> Path:
    """Draw the hourly waits of each ride of the day as lines into a PNG file."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    check_plot_path(path)
    hourly = forecast.hourly
    positions = range(len(hourly.index))
    figure, axes = plt.subplots(figsize=(10, 5))
    try:
        for code in hourly.columns:
            axes.plot(positions, hourly[code].to_numpy(), marker="o", label=code)
        axes.set_xticks(list(positions), [f"{hour:02d}" for hour in hourly.index])
        axes.set_xlabel("hour of the park day (local time)")
        axes.set_ylabel("forecast posted wait (minutes)")
        axes.set_title(f"{forecast.title}, {forecast.day}")
        axes.set_ylim(bottom=0)
        axes.grid(alpha=0.3)
        axes.legend()
        figure.tight_layout()
        figure.savefig(path, dpi=100)
    finally:
        plt.close(figure)
    return path


def load_crowd_calendar(engine: sa.Engine, days: int) -> pd.DataFrame:
    """Return the crowd index of each park for the `days` park days after the newest set's as-of day."""
    with engine.connect() as connection:
        newest = _newest_as_of(connection)
        crowd = pd.read_sql(
            sa.select(park_day_crowd_index)
            .where(park_day_crowd_index.c.park_day > newest,
                   park_day_crowd_index.c.park_day <= newest + timedelta(days=days))
            .order_by(park_day_crowd_index.c.park_day, park_day_crowd_index.c.park_code),
            connection,
        )
    crowd["park_day"] = pd.to_datetime(crowd["park_day"]).dt.date
    return crowd


def format_crowd_calendar(crowd: pd.DataFrame) -> str:
    """Render a table of park days by parks; * marks days forecast without park-day metadata."""
    if crowd.empty:
        return "No forecast days after the newest as-of day. Run `parkcast run` to write forecasts."
    parks = sorted(set(crowd["park_code"]))
    lines = ["Crowd index 1 (quietest) to 10 (busiest) per park; * = no park-day metadata, typical hours used", ""]
    lines.append("day         weekday  " + "  ".join(f"{park:>4}" for park in parks))
    by_day = crowd.set_index(["park_day", "park_code"])
    for day in sorted(set(crowd["park_day"])):
        cells = []
        for park in parks:
            if (day, park) not in by_day.index:
                cells.append(f"{'-':>4}")
                continue
            row = by_day.loc[(day, park)]
            value = "?" if pd.isna(row["crowd_index"]) else str(int(row["crowd_index"]))
            cells.append(f"{value + ('*' if row['fallback_cells'] > 0 else ''):>4}")
        lines.append(f"{day}  {day.strftime('%a'):<7}  " + "  ".join(cells))
    return "\n".join(lines)

