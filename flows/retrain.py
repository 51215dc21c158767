"""The retrain flow: train a challenger, score it beside the champion, promote or reject."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import sqlalchemy as sa
from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NONE
from prefect.runtime import flow_run

from parkcast import schema
from parkcast.flows.limits import exclusive_run, limit_name
from parkcast.logs import get_logger
from parkcast.models.mlp import HyperParameters, predict_minutes, to_model_inputs
from parkcast.settings import Settings, get_settings
from parkcast.tasks.evaluate import Scores, SeasonalNaive, score
from parkcast.tasks.features import CATEGORICAL_FEATURES, FEATURE_SCHEMA_VERSION, NUMERIC_FEATURES, Context, build_features
from parkcast.tasks.promote import apply_decision, current_champion, decide, record_evaluation, save_version
from parkcast.tasks.registry import LOAD_ERRORS, load_model_file
from parkcast.tasks.train import Candidate, split_by_days, train_best_candidate

__all__ = ["RetrainResult", "retrain", "RETRAIN_CONCURRENCY_LIMIT"]

# Name of the Prefect global concurrency limit (one slot) that lets one retrain
# run at a time per Prefect server. The database compare-and-swap keeps the
# champion correct even when retrains use different servers.
RETRAIN_CONCURRENCY_LIMIT = limit_name("retrain")


@dataclass(frozen=True)
class RetrainResult:
    """Outcome of one retrain: both scores on the same window and the decision."""

    challenger_id: str
    challenger: Scores
    champion_id: str | None
    champion: Scores | None
    baseline: Scores
    promoted: bool
    reason: str


def _score_model(model, cells: pd.DataFrame, context: Context) -> Scores:
    inputs = to_model_inputs(build_features(cells, context), CATEGORICAL_FEATURES, NUMERIC_FEATURES)
    return score(cells["wait"].to_numpy(), predict_minutes(model, inputs))


@task(cache_policy=NONE)
def score_champion(champion: sa.Row | None, cells: pd.DataFrame, context: Context) -> Scores | None:
    """Re-score the current champion on the evaluation window; None if there is none or it is unusable."""
    if champion is None:
        return None
    if champion.feature_schema_version != FEATURE_SCHEMA_VERSION:
        get_logger().warning(
            "Champion %s was trained on feature schema %s, but this code computes schema %s, so it cannot be "
            "re-scored; any challenger that beats the baseline replaces it",
            champion.id, champion.feature_schema_version, FEATURE_SCHEMA_VERSION)
        return None
    try:
        model = load_model_file(Path(champion.file_path), champion.sha256)
        # A file whose inputs do not match its row's feature schema fails here, in predict.
        return _score_model(model, cells, context)
    except LOAD_ERRORS as error:
        get_logger().error("Champion %s cannot be re-scored, so any challenger that beats the baseline may replace it: %s", champion.id, error)
        return None


def _start_run(engine: sa.Engine, eval_cells: pd.DataFrame) -> int:
    with engine.begin() as connection:
        return connection.execute(sa.insert(schema.training_runs).values(
            flow_run_id=str(flow_run.id) if flow_run.id else None, started_at=datetime.now(timezone.utc),
            status="running", eval_start=eval_cells["park_day"].min().date(), eval_end=eval_cells["park_day"].max().date(),
            eval_cells=len(eval_cells)).returning(schema.training_runs.c.id)).scalar_one()


def _finish_run(engine: sa.Engine, run_id: int, result: RetrainResult) -> None:
    with engine.begin() as connection:
        connection.execute(sa.update(schema.training_runs).where(schema.training_runs.c.id == run_id).values(
            finished_at=datetime.now(timezone.utc), status="completed", challenger_id=result.challenger_id,
            challenger_mae=result.challenger.mae, champion_before_id=result.champion_id,
            champion_mae=result.champion.mae if result.champion else None, baseline_mae=result.baseline.mae,
            decision="promoted" if result.promoted else "rejected", decision_reason=result.reason))


def _fail_run(engine: sa.Engine, run_id: int, challenger_id: str | None, error: Exception) -> None:
    """Mark the training run failed and its saved challenger rejected, so neither stays half-done.

    A second failure here, such as an unreachable database, is only logged,
    because the caller raises the first error.
    """
    reason = f"retrain failed: {type(error).__name__}: {error}"
    try:
        with engine.begin() as connection:
            connection.execute(sa.update(schema.training_runs).where(schema.training_runs.c.id == run_id).values(
                finished_at=datetime.now(timezone.utc), status="failed", challenger_id=challenger_id,
                decision_reason=reason))
            if challenger_id is not None:
                versions = schema.model_versions
                connection.execute(sa.update(versions).where(versions.c.id == challenger_id, versions.c.status == "candidate")
                                   .values(status="rejected", status_reason=reason))
    except Exception as second:  # noqa: BLE001 - the retrain's own error matters more
        get_logger().error("Could not mark training run %s failed: %s", run_id, second)


def _format_scores(scores: Scores | None) -> str:
    if scores is None:
        return "| - | - | - |"
    return f"| {scores.mae:.2f} | {scores.rmse:.2f} | {scores.within_10:.1%} |"


def comparison_markdown(result: RetrainResult, eval_start, eval_end) -> str:
    """Render the challenger, champion and baseline scores of one decision as a Markdown table."""
    decision = "promoted" if result.promoted else "rejected"
    return "\n".join([
        f"# Retrain: challenger {result.challenger_id} {decision}",
        "",
        f"Evaluation window: park days {eval_start} to {eval_end}, {result.challenger.cells} cells. "
        "Every model below was scored on this window in this run.",
        "",
        "| Model | Version | MAE (min) | RMSE (min) | Within 10 min |",
        "|---|---|---|---|---|",
        f"| challenger | {result.challenger_id} " + _format_scores(result.challenger),
        f"| champion | {result.champion_id or 'none'} " + _format_scores(result.champion),
        "| seasonal-naive baseline | - " + _format_scores(result.baseline),
        "",
        f"Decision: {decision}. {result.reason}",
    ])


def _publish_artifact(result: RetrainResult, eval_start, eval_end) -> None:
    create_markdown_artifact(
        key="retrain-comparison", markdown=comparison_markdown(result, eval_start, eval_end),
        description=f"Challenger {result.challenger_id} against champion {result.champion_id or 'none'}",
    )


@flow(name="retrain", log_prints=False)
def retrain(engine: sa.Engine, cells: pd.DataFrame, context: Context, settings: Settings | None = None) -> RetrainResult:
    """Train a challenger on all but the freshest days and promote it only if it wins there.

    At most one retrain runs at a time per Prefect server, through the global
    concurrency limit RETRAIN_CONCURRENCY_LIMIT. A later one waits for the slot
    up to PARKCAST_RUN_WAIT_SECONDS, then is skipped with RunInProgressError.
    """
    settings = settings or get_settings()
    with exclusive_run("retrain", settings.run_wait_seconds):
        return _retrain(engine, cells, context, settings)


def _serialize_parameters(parameters: dict) -> dict:
    """Store the flow run's large in-memory inputs in the Prefect API as type placeholders.

    Prefect stores every flow run's parameters as JSON. Its encoder spends
    about 18 s on a 180,000-row cells frame (loaded 2-core machine) before it
    gives up and stores "<DataFrame>" anyway, and a retrain pays that on
    every run. Engines, frames and the feature context get the placeholder
    at once, and every other parameter keeps Prefect's encoding.
    """
    placeholders = {name: f"<{type(value).__name__}>" for name, value in parameters.items()
                    if isinstance(value, (sa.Engine, pd.DataFrame, Context))}
    rest = {name: value for name, value in parameters.items() if name not in placeholders}
    return {**_prefect_serialize_parameters(rest), **placeholders}


_prefect_serialize_parameters = retrain.serialize_parameters
retrain.serialize_parameters = _serialize_parameters


def _retrain(engine: sa.Engine, cells: pd.DataFrame, context: Context, settings: Settings) -> RetrainResult:
    train_cells, eval_cells = split_by_days(cells, settings.evaluation_days)
    # Both models forecast the evaluation window from its eve, as in production.
    eval_cells = eval_cells.assign(as_of=train_cells["park_day"].max())
    max_horizon = max(settings.horizon_days, settings.evaluation_days)
    run_id = _start_run(engine, eval_cells)
    hparams = HyperParameters.parse(seed=settings.seed, max_epochs=settings.max_epochs)
    combine = settings.trial_combine
    if combine == "average" and settings.trials < 2:
        get_logger().warning("Combining trials by average needs 2 or more trials (--trials or PARKCAST_TRIALS); "
                             "with %d trial the challenger is that trial, recorded as best", settings.trials)
        combine = "best"

    challenger_id = None
    try:
        candidate = train_best_candidate(train_cells, context, hparams, settings.trials, max_horizon, combine)
        challenger_id = save_version(engine, candidate, settings.model_dir, run_id, settings.trials, combine)
        return _decide(engine, run_id, challenger_id, candidate, train_cells, eval_cells, context, settings)
    except Exception as error:
        _fail_run(engine, run_id, challenger_id, error)
        raise


def _decide(engine: sa.Engine, run_id: int, challenger_id: str, candidate: Candidate, train_cells: pd.DataFrame,
            eval_cells: pd.DataFrame, context: Context, settings: Settings) -> RetrainResult:
    """Score the saved challenger, the champion and the baseline on the evaluation window, and apply the decision."""
    eval_start, eval_end = eval_cells["park_day"].min().date(), eval_cells["park_day"].max().date()
    challenger = _score_model(candidate.model, eval_cells, context)
    record_evaluation(engine, challenger_id, challenger, eval_start, eval_end)
    # The champion is re-scored from its file on this same window; its stored
    # scores come from older data and never enter the decision.
    champion_row = current_champion(engine)
    champion = score_champion(champion_row, eval_cells, context)
    if champion is not None:
        record_evaluation(engine, champion_row.id, champion, eval_start, eval_end)
    baseline = score(eval_cells["wait"].to_numpy(), SeasonalNaive().fit(train_cells).predict(eval_cells))

    champion_id = champion_row.id if champion_row is not None else None
    decision = apply_decision(engine, challenger_id, champion_id,
                              decide(challenger, champion, baseline, settings.promotion_margin_minutes, champion_id),
                              challenger, champion, baseline)
    result = RetrainResult(challenger_id, challenger, champion_id, champion, baseline, decision.promote, decision.reason)
    _finish_run(engine, run_id, result)
    _publish_artifact(result, eval_start, eval_end)
    return result
