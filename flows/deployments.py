"""Prefect deployments of the daily and retrain jobs, with their schedules."""

from __future__ import annotations

from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.deployments.runner import RunnerDeployment
from prefect.schedules import Cron

from parkcast.flows.daily_forecast import daily_forecast, retrain_on_stored_data
from parkcast.settings import Settings

__all__ = ["build_deployments", "DAILY_DEPLOYMENT", "RETRAIN_DEPLOYMENT"]

DAILY_DEPLOYMENT = "daily"
RETRAIN_DEPLOYMENT = "weekly"


def build_deployments(settings: Settings) -> list[RunnerDeployment]:
    """Return the daily_forecast and retrain deployments for `parkcast serve`.

    Both cron schedules are read in the settings' time zone, so 04:00 stays
    04:00 local time across daylight-saving changes. A deployment runs at
    most one flow run at a time; a run due while the previous one is still
    going is cancelled, and the flow's own limit guards manual runs as well.
    """
    one_at_a_time = ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW)
    daily = daily_forecast.to_deployment(
        name=DAILY_DEPLOYMENT,
        schedules=[Cron(settings.daily_cron, timezone=settings.schedule_timezone)],
        concurrency_limit=one_at_a_time,
        description="Ingest fresh records, retrain when needed, write the next park days' forecasts.",
        tags=["parkcast"],
    )
    retrain = retrain_on_stored_data.to_deployment(
        name=RETRAIN_DEPLOYMENT,
        schedules=[Cron(settings.retrain_cron, timezone=settings.schedule_timezone)],
        concurrency_limit=one_at_a_time,
        parameters={"force": True},
        description="Train a challenger on the stored records; promote it only if it beats the champion.",
        tags=["parkcast"],
    )
    return [daily, retrain]
