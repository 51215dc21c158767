"""Command-line interface: `parkcast --help` lists every command."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
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


@app.command("poll-live")
def poll_live_command(
    source: str = typer.Argument(None, help="queue-times.com JSON URL or file; defaults to PARKCAST_LIVE_URL."),
    every: float = typer.Option(0.0, min=0.0, help="Seconds between polls; 0 polls once."),
    count: int = typer.Option(1, min=1, help="Number of polls when --every is set."),
) -> None:
    """Ingest live queue-times.com snapshots into the database, once or on a fixed interval."""
    import time

    from parkcast.db import make_engine, migrate
    from parkcast.tasks.ingest import IngestError
    from parkcast.tasks.live import poll_live

    settings = get_settings()
    source = source or settings.live_url
    if not source:
        raise typer.BadParameter("no live source: pass a URL or file, or set PARKCAST_LIVE_URL")
    engine = make_engine(settings.database_url)
    migrate(engine)
    polls = count if every > 0 else 1
    failures = 0
    for poll in range(polls):
        try:
            summary = poll_live(engine, source, settings.max_posted_wait, settings.live_park)
            typer.echo(f"Live poll {poll + 1}/{polls}: {summary.rows_read} rides read, {summary.rows_stored} "
                       f"stored, {summary.rows_rejected} rejected, {summary.files_skipped} unchanged snapshots")
        except IngestError as error:
            failures += 1
            typer.echo(f"Live poll {poll + 1}/{polls} failed: {error}", err=True)
        if poll + 1 < polls:
            time.sleep(every)
    engine.dispose()
    if failures == polls:
        raise typer.Exit(code=1)


if __name__ == "__main__":
    app()
