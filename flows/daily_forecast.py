"""The daily job: ingest fresh records, retrain when needed, publish forecasts."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import sqlalchemy as sa
from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from parkcast import schema
from parkcast.db import make_engine, migrate
from parkcast.flows.limits import exclusive_run
from parkcast.flows.retrain import RetrainResult, retrain
from parkcast.logs import get_logger, install_password_masking
from parkcast.settings import Settings, check_trial_combine, get_settings, mask_url
from parkcast.summary import format_daily_summary
from parkcast.tasks.features import load_cells, load_context, with_history
from parkcast.tasks.ingest import IngestSummary, ingest_folder
from parkcast.tasks.predict import ForecastResult, NoUsableModelError, load_champion, write_forecasts

__all__ = ["DailySummary", "daily_forecast", "retrain_on_stored_data"]


@dataclass(frozen=True)
class DailySummary:
    """Outcome of one daily run, for the CLI to print."""

    database: str
    ingest: IngestSummary
    retrain: RetrainResult | None
    champion_id: str
    champion_problems: list[str]
    forecast: ForecastResult


def _needs_retrain(engine: sa.Engine, newest_day: pd.Timestamp) -> bool:
    """True when there is no champion or records newer than its evaluation window arrived."""
    versions, runs = schema.model_versions, schema.training_runs
    query = (
        sa.select(runs.c.eval_end)
        .join(versions, versions.c.training_run_id == runs.c.id)
        .where(versions.c.status == "champion")
    )
    with engine.connect() as connection:
        eval_end = connection.execute(query).scalar_one_or_none()
    return eval_end is None or newest_day.date() > eval_end


@flow(name="daily_forecast")
def daily_forecast(settings: Settings | None = None) -> DailySummary:
    """Ingest the data folder, retrain if needed, and write the next park days' forecasts."""
    install_password_masking()
    settings = settings or get_settings()
    with exclusive_run("daily_forecast", settings.run_wait_seconds):
        return _daily_forecast(settings)


def _daily_forecast(settings: Settings) -> DailySummary:
    logger = get_logger()
    engine = make_engine(settings.database_url)
    try:
        migrate(engine)
        logger.info("Database %s is at the newest schema", mask_url(settings.database_url))
        ingest = ingest_folder(engine, settings.data_dir, settings.max_posted_wait, settings.default_park)
        cells = load_cells(engine)
        if cells.empty:
            raise RuntimeError(f"no usable wait-time observations in the database; check the files in {settings.data_dir}")
        context = with_history(load_context(engine), cells)

        result = retrain(engine, cells, context, settings) if _needs_retrain(engine, cells["park_day"].max()) else None
        recovered: list[str] = []
        try:
            loaded = load_champion(engine)
        except NoUsableModelError as error:
            if result is not None:
                raise
            # Every champion file is missing or broken: train a replacement now
            # instead of failing every daily run until an operator steps in.
            logger.error("Retraining because no champion model can be loaded: %s", error)
            recovered.append(f"retrained because no champion could be loaded ({error})")
            result = retrain(engine, cells, context, settings)
            loaded = load_champion(engine)
        forecast = write_forecasts(engine, loaded, context, cells, settings.horizon_days,
                                   str(flow_run.id) if flow_run.id else None)
    finally:
        engine.dispose()
    summary = DailySummary(
        mask_url(settings.database_url), ingest, result, loaded.version_id, recovered + loaded.problems, forecast)
    create_markdown_artifact(
        key="daily-forecast-summary",
        markdown="```\n" + format_daily_summary(summary) + "\n```",
        description="Rows ingested and rejected, the model decision and forecasts written.",
    )
    return summary


@flow(name="retrain_on_stored_data")
def retrain_on_stored_data(trials: int | None = None, force: bool = False, combine: str | None = None) -> RetrainResult | None:
    """Retrain on the records already in the database, as scheduled or by hand.

    Without `force`, nothing is trained unless records newer than the
    champion's evaluation window arrived. `trials` overrides PARKCAST_TRIALS
    and `combine` ("best" or "average") PARKCAST_TRIAL_COMBINE.
    """
    install_password_masking()
    settings = get_settings()
    if trials is not None:
        settings = settings.model_copy(update={"trials": trials})
    if combine is not None:
        settings = settings.model_copy(update={"trial_combine": check_trial_combine(combine)})
    engine = make_engine(settings.database_url)
    try:
        migrate(engine)
        cells = load_cells(engine)
        if cells.empty:
            raise RuntimeError("no wait-time observations stored yet; run `parkcast run` first to ingest them")
        if not force and not _needs_retrain(engine, cells["park_day"].max()):
            get_logger().info("No records newer than the champion's evaluation window; retrain skipped")
            return None
        # The retrain flow acquires the one-slot retrain limit itself.
        return retrain(engine, cells, with_history(load_context(engine), cells), settings)
    finally:
        engine.dispose()
