"""Command-line interface: `parkcast --help` lists every command."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from parkcast.settings import Settings, get_settings, mask_url

__all__ = ["app"]

app = typer.Typer(help="parkcast: scheduled forecasts of theme-park ride wait times.", no_args_is_help=True)


@app.callback()
def _prepare() -> None:
    # Prefect's local mode fails with "unable to open database file" when
    # PREFECT_HOME names a folder that does not exist yet.
    if prefect_home := os.environ.get("PREFECT_HOME"):
        Path(prefect_home).expanduser().mkdir(parents=True, exist_ok=True)


@app.command()
def run() -> None:
    """Run the daily_forecast flow once: ingest, retrain if needed, write forecasts."""
    from parkcast.flows.daily_forecast import daily_forecast
    from parkcast.summary import format_daily_summary

    summary = daily_forecast()
    typer.echo(format_daily_summary(summary))


@app.command("settings")
def show_settings() -> None:
    """Print the effective settings, with any database password masked."""
    settings = get_settings()
    for name, field in Settings.model_fields.items():
        value = getattr(settings, name)
        if name == "database_url":
            value = mask_url(value)
        typer.echo(f"PARKCAST_{name.upper():<28} {value}")


def _read_engine():
    """Open the configured database for reading, or exit with the error when it is not reachable."""
    from parkcast.db import DatabaseUnavailableError, make_engine

    try:
        return make_engine(get_settings().database_url)
    except DatabaseUnavailableError as error:
        typer.echo(f"Error: {error}", err=True)
        raise typer.Exit(code=1) from None


def _views_missing(error: Exception) -> None:
    typer.echo(
        f"Error: cannot read the forecast views ({error.__class__.__name__}). "
        "Run `parkcast run` once: it applies the database migrations that create them.",
        err=True,
    )
    raise typer.Exit(code=1)


@app.command()
def forecast(
    park: str | None = typer.Option(None, "--park", help="Park code: MK, EP, HS or AK. Shows every ride of the park."),
    ride: str | None = typer.Option(None, "--ride", help="Ride code, such as soarin. Shows that ride only."),
    day: str | None = typer.Option(None, "--date", help="Park day YYYY-MM-DD; default: first day of the newest forecast set."),
    plot: Path | None = typer.Option(None, "--plot", help="Also draw the hourly waits per ride into this .png file."),
) -> None:
    """Print one park day's latest hourly forecasts for a park or a ride."""
    import sqlalchemy as sa

    from parkcast.reports import ForecastLookupError, format_day_forecast, load_day_forecast, plot_day_forecast

    engine = _read_engine()
    try:
        result = load_day_forecast(engine, park, ride, day)
        typer.echo(format_day_forecast(result))
        if plot is not None:
            typer.echo(f"Plot written to {plot_day_forecast(result, plot)}")
    except ForecastLookupError as error:
        typer.echo(f"Error: {error}", err=True)
        raise typer.Exit(code=2) from None
    except (sa.exc.OperationalError, sa.exc.ProgrammingError) as error:
        _views_missing(error)
    finally:
        engine.dispose()


@app.command()
def calendar(
    days: int | None = typer.Option(None, "--days", min=1, max=60, help="Park days to show; default PARKCAST_HORIZON_DAYS."),
) -> None:
    """Print the crowd index (1-10) of each park for the next park days of the newest forecast set."""
    import sqlalchemy as sa

    from parkcast.reports import ForecastLookupError, format_crowd_calendar, load_crowd_calendar

    engine = _read_engine()
    try:
        typer.echo(format_crowd_calendar(load_crowd_calendar(engine, days or get_settings().horizon_days)))
    except ForecastLookupError as error:
        typer.echo(f"Error: {error}", err=True)
        raise typer.Exit(code=2) from None
    except (sa.exc.OperationalError, sa.exc.ProgrammingError) as error:
        _views_missing(error)
    finally:
        engine.dispose()


if __name__ == "__main__":
    app()
