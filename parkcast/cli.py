"""Command-line interface: `parkcast --help` lists every command."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
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


@contextmanager
def _readable_errors() -> Iterator[None]:
    """Turn the errors parkcast expects into one line on stderr and exit status 1."""
    from parkcast.db import DatabaseUnavailableError
    from parkcast.flows.limits import RunInProgressError
    from parkcast.tasks.ingest import IngestError
    from parkcast.tasks.predict import NoUsableModelError

    try:
        yield
    except (DatabaseUnavailableError, IngestError, NoUsableModelError, RunInProgressError, ValueError, RuntimeError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(code=1) from None


@app.command()
def run() -> None:
    """Run the daily_forecast flow once: ingest, retrain if needed, write forecasts."""
    from parkcast.flows.daily_forecast import daily_forecast
    from parkcast.summary import format_daily_summary

    with _readable_errors():
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


@app.command()
def serve() -> None:
    """Serve the daily and weekly retrain deployments on their schedules until stopped."""
    from prefect import serve as prefect_serve

    from parkcast.flows.deployments import build_deployments

    prefect_serve(*build_deployments(get_settings()))


@app.command()
def replay(
    start: datetime = typer.Option(..., formats=["%Y-%m-%d"], help="First simulated day."),
    end: datetime = typer.Option(..., formats=["%Y-%m-%d"], help="Last simulated day."),
    retrain_every: int = typer.Option(7, help="Days between retrains."),
    replay_url: str = typer.Option(None, help="Database for the replay; default var/replay.db beside the model folder."),
    plot: Path = typer.Option(None, help="Write MAE by horizon and by ride to this PNG file."),
) -> None:
    """Replay history day by day into a separate database and score what it served."""
    from parkcast.flows.replay import format_replay_report, plot_replay_report
    from parkcast.flows.replay import replay as replay_flow

    with _readable_errors():
        report = replay_flow(start.date(), end.date(), retrain_every, replay_url)
    typer.echo(format_replay_report(report))
    if plot is not None:
        plot_replay_report(report, plot)
        typer.echo(f"Plot written to {plot}")


if __name__ == "__main__":
    app()
