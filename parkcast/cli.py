"""Command-line interface: `parkcast --help` lists every command."""

from __future__ import annotations

import enum
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import typer

from parkcast.progress import show_progress, stderr_is_terminal
from parkcast.settings import TRIAL_COMBINES, Settings, get_settings, mask_url

# The choices of `parkcast retrain --combine`, as typer wants them.
TrialCombine = enum.Enum("TrialCombine", {name: name for name in TRIAL_COMBINES}, type=str)

__all__ = ["app"]

app = typer.Typer(help="parkcast: scheduled forecasts of theme-park ride wait times.", no_args_is_help=True)


# Whether long commands draw progress bars on stderr; set by the --progress option.
_show_bars = False


@app.callback()
def _prepare(
    progress: bool = typer.Option(
        None, "--progress/--no-progress", envvar="PARKCAST_PROGRESS",
        help="Draw progress bars on stderr for ingest, training and replay. Default: only when stderr is a terminal."),
) -> None:
    from parkcast.settings import SettingsError

    global _show_bars
    _show_bars = stderr_is_terminal() if progress is None else progress
    # Prefect's local mode fails with "unable to open database file" when
    # PREFECT_HOME names a folder that does not exist yet.
    if prefect_home := os.environ.get("PREFECT_HOME"):
        Path(prefect_home).expanduser().mkdir(parents=True, exist_ok=True)
    # The temporary Prefect server otherwise sends usage telemetry to Prefect's
    # servers and logs an ERROR on every run of a machine without internet access.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    try:
        get_settings()
    except SettingsError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(code=1) from None


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
    from parkcast.db import make_engine
    from parkcast.flows.daily_forecast import daily_forecast
    from parkcast.summary import format_daily_summary

    with _readable_errors(), show_progress(_show_bars):
        # Fail fast on an unreachable database, before Prefect starts its local server.
        make_engine(get_settings().database_url).dispose()
        summary = daily_forecast()
    typer.echo(format_daily_summary(summary))
    if summary.ingest.failed_files:
        typer.echo(f"error: {len(summary.ingest.failed_files)} files failed to ingest (FAILED lines above); "
                   "every other file was ingested and the forecasts were written", err=True)
        raise typer.Exit(code=1)


@app.command("settings")
def show_settings() -> None:
    """Print the effective settings, with any database password masked."""
    settings = get_settings()
    for name, field in Settings.model_fields.items():
        value = getattr(settings, name)
        if name == "database_url":
            value = mask_url(value)
        if value is None:
            value = "unset"
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



models_app = typer.Typer(help="Inspect model versions and choose the champion by hand.", no_args_is_help=True)
app.add_typer(models_app, name="models")


def _registry_engine():
    from parkcast.db import DatabaseUnavailableError, make_engine, migrate

    try:
        engine = make_engine(get_settings().database_url, must_exist=True)
    except DatabaseUnavailableError as error:
        _fail(str(error))
    migrate(engine)
    return engine


def _fail(message: str) -> None:
    typer.echo(f"Error: {message}", err=True)
    raise typer.Exit(code=1)


def _minutes(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


@models_app.command("list")
def models_list() -> None:
    """List model versions, newest first, with validation and evaluation-window MAE in minutes."""
    from parkcast.tasks.registry import list_versions

    engine = _registry_engine()
    try:
        rows = list_versions(engine)
    finally:
        engine.dispose()
    if not rows:
        typer.echo("No model versions yet; run `parkcast retrain` or `parkcast run` to train one.")
        return
    typer.echo(f"{'VERSION':<26} {'STATUS':<10} {'CREATED (UTC)':<17} {'VAL MAE':>8} {'EVAL MAE':>8}  REASON")
    for row in rows:
        created = row.created_at.strftime("%Y-%m-%d %H:%M")
        typer.echo(f"{row.id:<26} {row.status:<10} {created:<17} {_minutes(row.val_mae):>8} "
                   f"{_minutes(row.eval_mae):>8}  {row.status_reason or ''}")


@models_app.command("show")
def models_show(version: str = typer.Argument(..., help="Version id, as `parkcast models list` prints it.")) -> None:
    """Print every recorded field of one model version and its registry events."""
    import sqlalchemy as sa

    from parkcast import schema
    from parkcast.tasks.registry import RegistryError, get_version

    engine = _registry_engine()
    try:
        try:
            row = get_version(engine, version)
        except RegistryError as error:
            _fail(str(error))
        events = schema.registry_events
        with engine.connect() as connection:
            history = connection.execute(sa.select(events).where(events.c.model_version_id == version)
                                         .order_by(events.c.id)).all()
    finally:
        engine.dispose()
    for name, value in row._mapping.items():
        typer.echo(f"{name:<24} {value}")
    for event in history:
        typer.echo(f"event {event.created_at:%Y-%m-%d %H:%M:%S} {event.action}: {event.reason}")


@models_app.command("promote")
def models_promote(
    version: str = typer.Argument(..., help="Version id to make the champion."),
    reason: str = typer.Option(..., "--reason", help="Why the operator pins this version; stored with the event."),
) -> None:
    """Pin VERSION as the champion after verifying its file; the event is recorded with the reason."""
    from parkcast.tasks.registry import RegistryError, pin_version

    engine = _registry_engine()
    try:
        replaced = pin_version(engine, version, reason)
    except RegistryError as error:
        _fail(str(error))
    finally:
        engine.dispose()
    typer.echo(f"{version} is now the champion (replaced {replaced or 'none'}).")


@models_app.command("rollback")
def models_rollback(
    reason: str = typer.Option(..., "--reason", help="Why the champion is rolled back; stored with the event."),
) -> None:
    """Replace the champion with the newest earlier champion whose file verifies; the replaced one is rejected."""
    from parkcast.tasks.registry import RegistryError, rollback

    engine = _registry_engine()
    try:
        new_champion, replaced = rollback(engine, reason)
    except RegistryError as error:
        _fail(str(error))
    finally:
        engine.dispose()
    typer.echo(f"{new_champion} is now the champion (replaced {replaced or 'none'}).")


@app.command("retrain")
def retrain_command(
    trials: int = typer.Option(None, "--trials", min=1, max=200, help="Candidates to train; default PARKCAST_TRIALS."),
    force: bool = typer.Option(False, "--force", help="Retrain even when no records arrived since the champion was chosen."),
    combine: TrialCombine = typer.Option(None, "--combine", help="best keeps the trial with the lowest validation MAE, average saves the mean of all trials. Default PARKCAST_TRIAL_COMBINE."),
) -> None:
    """Retrain on the stored observations now, without ingesting files (same flow as the retrain deployment)."""
    from parkcast.flows.daily_forecast import retrain_on_stored_data

    with _readable_errors(), show_progress(_show_bars):
        result = retrain_on_stored_data(trials=trials, force=force, combine=combine.value if combine else None)
    if result is None:
        typer.echo("No records arrived since the champion was chosen; nothing to do (use --force to retrain).")
        return
    champion = _minutes(result.champion.mae) if result.champion else "none"
    typer.echo(f"Challenger {result.challenger_id}: MAE {result.challenger.mae:.2f} min, champion {champion}, "
               f"seasonal-naive baseline {result.baseline.mae:.2f} on {result.challenger.cells} cells; "
               f"{'promoted' if result.promoted else 'rejected'}: {result.reason}")


@app.command()
def backtest(
    seeds: int = typer.Option(1, help="MLPs trained with consecutive seeds; their mean is the MLP forecast"),
    lightgbm: bool = typer.Option(True, help="Also score LightGBM (needs the bench extra)"),
    classic: bool = typer.Option(True, help="Also score the classic write-up MLP (2x64, dropout 0.1, no history features)"),
    hparam: list[str] = typer.Option([], help="MLP hyper-parameter as NAME=VALUE (JSON value), repeatable"),
    refit: bool = typer.Option(False, help="Refit the MLP and LightGBM on all training days for the early-stopped epochs or trees"),
    window: str = typer.Option(
        "test", help="test: fit up to 2019-06-30, score 2019H2 (the protocol). "
        "inner: fit up to 2018-12-31, score 2019H1, inside the training window, for choosing settings",
    ),
) -> None:
    """Run the WDW-2019H2 benchmark on PARKCAST_DATA_DIR and print every model's test scores."""
    import json

    from parkcast.models.mlp import HyperParameters
    from parkcast.tasks.backtest import WINDOWS, format_backtest, run_backtest

    if window not in WINDOWS:
        raise typer.BadParameter(f"--window {window!r}: use one of {sorted(WINDOWS)}")

    values: dict[str, object] = {}
    for item in hparam:
        name, sep, text = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"--hparam {item!r}: write NAME=VALUE, e.g. dropout_rate=0.2")
        try:
            values[name.strip()] = json.loads(text)
        except json.JSONDecodeError:
            values[name.strip()] = text
    hparams = HyperParameters.parse(**values)
    typer.echo(f"MLP hyper-parameters: {hparams.model_dump()}")
    result = run_backtest(
        get_settings().data_dir, hparams=hparams, seeds=seeds, include_lightgbm=lightgbm, include_classic=classic,
        refit=refit, window=WINDOWS[window],
    )
    typer.echo(format_backtest(result))


@app.command()
def sweep(
    out_dir: Path = typer.Option(Path("var/sweep"), help="Folder for sweep.csv, sweep.md and the PNG plots"),
    rates: str = typer.Option("0.0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9", help="Comma-separated dropout rates"),
    placements: str = typer.Option("first,every", help="Comma-separated dropout placements"),
    batch_norm: str = typer.Option("off,on", help="Comma-separated batch normalization settings: off, on"),
    sample_share: float = typer.Option(0.25, help="Share of training cells each configuration fits on"),
    max_epochs: int = typer.Option(6, help="Epochs per configuration (early stopping may end sooner)"),
) -> None:
    """Run the dropout sweep flow on the WDW-2019H2 training window; score on its validation slice."""
    from parkcast.flows.sweep import dropout_sweep

    def split(text: str) -> list[str]:
        return [part.strip() for part in text.split(",") if part.strip()]

    try:
        rate_values = tuple(float(part) for part in split(rates))
    except ValueError:
        raise typer.BadParameter(f"--rates {rates!r}: give numbers such as 0.0,0.1,0.5") from None
    norms = {"off": False, "on": True}
    if bad := [part for part in split(batch_norm) if part not in norms]:
        raise typer.BadParameter(f"--batch-norm {bad}: use off and/or on")
    table = dropout_sweep(
        data_dir=get_settings().data_dir, out_dir=out_dir, rates=rate_values, placements=tuple(split(placements)),
        batch_norms=tuple(norms[part] for part in split(batch_norm)), sample_share=sample_share, max_epochs=max_epochs,
    )
    typer.echo(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    typer.echo(f"Outputs in {out_dir}")


def _read_engine():
    """Open the configured database for reading, or exit with the error when it is not reachable."""
    from parkcast.db import DatabaseUnavailableError, make_engine

    try:
        return make_engine(get_settings().database_url, must_exist=True)
    except DatabaseUnavailableError as error:
        typer.echo(f"Error: {error}", err=True)
        raise typer.Exit(code=1) from None


@contextmanager
def _reading_views(engine) -> Iterator[None]:
    """Turn lookup errors into exit status 2, missing views into exit status 1; dispose of `engine` at the end."""
    import sqlalchemy as sa

    from parkcast.reports import ForecastLookupError

    try:
        yield
    except ForecastLookupError as error:
        typer.echo(f"Error: {error}", err=True)
        raise typer.Exit(code=2) from None
    except (sa.exc.OperationalError, sa.exc.ProgrammingError) as error:
        _views_missing(error)
    finally:
        engine.dispose()


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
    from parkcast.reports import (
        ForecastLookupError, check_plot_path, format_day_forecast, load_day_forecast, plot_day_forecast,
    )

    if plot is not None:
        try:
            check_plot_path(plot)
        except ForecastLookupError as error:
            typer.echo(f"Error: {error}", err=True)
            raise typer.Exit(code=2) from None
    engine = _read_engine()
    with _reading_views(engine):
        result = load_day_forecast(engine, park, ride, day)
        typer.echo(format_day_forecast(result))
        if plot is not None:
            typer.echo(f"Plot written to {plot_day_forecast(result, plot)}")


@app.command()
def calendar(
    days: int | None = typer.Option(None, "--days", min=1, max=60, help="Park days to show; default PARKCAST_HORIZON_DAYS."),
) -> None:
    """Print the crowd index (1-10) of each park for the next park days of the newest forecast set."""
    from parkcast.reports import format_crowd_calendar, load_crowd_calendar

    engine = _read_engine()
    with _reading_views(engine):
        typer.echo(format_crowd_calendar(load_crowd_calendar(engine, days or get_settings().horizon_days)))


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

    with _readable_errors(), show_progress(_show_bars):
        report = replay_flow(start.date(), end.date(), retrain_every, replay_url)
    typer.echo(format_replay_report(report))
    if plot is not None:
        plot_replay_report(report, plot)
        typer.echo(f"Plot written to {plot}")


if __name__ == "__main__":
    app()
