"""Replay history day by day as the scheduler would have run it, then score what was served."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import sqlalchemy as sa
from prefect import flow

from parkcast import schema
from parkcast.db import make_engine, migrate
from parkcast.flows.retrain import retrain
from parkcast.logs import get_logger
from parkcast.progress import progress_bar
from parkcast.settings import Settings, get_settings
from parkcast.tasks.features import load_cells, load_context, with_history
from parkcast.tasks.predict import LoadedModel, NoUsableModelError, load_champion, write_forecasts

__all__ = ["ReplayReport", "replay", "score_served_forecasts"]

_COPIED_TABLES = [schema.rides, schema.park_days, schema.park_hours]


@dataclass
class ReplayReport:
    """Accuracy of the forecasts the replay database served, and its model history."""

    days: int
    seconds: float
    by_horizon: pd.DataFrame  # horizon_day, cells, mae
    by_ride: pd.DataFrame  # ride_code, cells, mae
    promotions: pd.DataFrame  # one row per retrain: day, challenger, scores, decision
    overall_mae: float | None = None
    skipped_days: list[date] = field(default_factory=list)


def _copy_rows(source: sa.Engine, target: sa.Engine, table: sa.Table, where=None) -> int:
    query = sa.select(table) if where is None else sa.select(table).where(where)
    with source.connect() as connection:
        rows = [dict(row._mapping) for row in connection.execute(query)]
    if rows:
        with target.begin() as connection:
            connection.execute(sa.insert(table), rows)
    return len(rows)


def _observations_of(source: sa.Engine, target: sa.Engine, first: date, last: date) -> int:
    """Copy the observations of park days first..last, as the daily ingest would add them."""
    obs = schema.observations
    columns = [c for c in obs.columns if c.name not in ("id", "source_file_id")]
    if _sqlite_file(source) and _sqlite_file(target):
        return _attached_copy(source, target, [c.name for c in columns], first, last)
    with source.connect() as connection:
        rows = [dict(row._mapping) for row in connection.execute(
            sa.select(*columns).where(obs.c.park_day >= first, obs.c.park_day <= last))]
    with target.begin() as connection:
        for start in range(0, len(rows), 50_000):
            connection.execute(sa.insert(obs), rows[start : start + 50_000])
    return len(rows)


def _current_champion(target: sa.Engine, loaded: LoadedModel | None) -> LoadedModel:
    """Return the champion model, reading its file again only when the champion changed."""
    versions = schema.model_versions
    with target.connect() as connection:
        champion_id = connection.execute(
            sa.select(versions.c.id).where(versions.c.status == "champion")).scalar_one_or_none()
    if loaded is not None and champion_id is not None and loaded.version_id == champion_id and not loaded.problems:
        return loaded
    return load_champion.fn(target)


def _sqlite_file(engine: sa.Engine) -> bool:
    return engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:")


def _attached_copy(source: sa.Engine, target: sa.Engine, names: list[str], first: date, last: date) -> int:
    """Copy observations between two SQLite files inside SQLite, without building Python rows.

    Converting the 1.6 million rows before 2019 to Python dicts took minutes.
    """
    column_list = ", ".join(f'"{name}"' for name in names)
    # SQLite rejects ATTACH and DETACH inside a transaction, so both run
    # around the committed INSERT.
    with target.connect() as connection:
        connection.exec_driver_sql("ATTACH DATABASE ? AS replay_source", (source.url.database,))
        try:
            copied = connection.exec_driver_sql(
                f"INSERT INTO observations ({column_list}) SELECT {column_list} FROM replay_source.observations "
                "WHERE park_day >= ? AND park_day <= ?", (first.isoformat(), last.isoformat())).rowcount
            connection.commit()
        finally:
            connection.rollback()
            connection.exec_driver_sql("DETACH DATABASE replay_source")
    return copied


def score_served_forecasts(target: sa.Engine, actual_cells: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, float | None]:
    """Compare every stored forecast with the mean posted wait of its cell."""
    f, s, r = schema.forecasts, schema.forecast_sets, schema.rides
    query = (
        sa.select(r.c.code.label("ride_code"), f.c.park_day, f.c.hour, f.c.predicted_wait, s.c.as_of)
        .join(s, s.c.id == f.c.forecast_set_id)
        .join(r, r.c.id == f.c.ride_id)
    )
    with target.connect() as connection:
        served = pd.read_sql(query, connection)
    served["park_day"] = pd.to_datetime(served["park_day"])
    served["horizon_day"] = (served["park_day"] - pd.to_datetime(served["as_of"])).dt.days
    joined = served.merge(actual_cells[["ride_code", "park_day", "hour", "wait"]], on=["ride_code", "park_day", "hour"])
    joined["error"] = (joined["predicted_wait"] - joined["wait"]).abs()
    by_horizon = joined.groupby("horizon_day")["error"].agg(cells="size", mae="mean").reset_index()
    by_ride = joined.groupby("ride_code")["error"].agg(cells="size", mae="mean").reset_index()
    overall = float(joined["error"].mean()) if len(joined) else None
    return by_horizon, by_ride, overall


def _promotion_history(target: sa.Engine) -> pd.DataFrame:
    runs = schema.training_runs
    with target.connect() as connection:
        return pd.read_sql(
            sa.select(runs.c.eval_end.label("data_up_to"), runs.c.challenger_id, runs.c.challenger_mae,
                      runs.c.champion_before_id, runs.c.champion_mae, runs.c.baseline_mae, runs.c.decision)
            .order_by(runs.c.id), connection)


@flow(name="replay")
def replay(start: date, end: date, retrain_every: int = 7, replay_url: str | None = None,
           settings: Settings | None = None) -> ReplayReport:
    """Run the daily job for each day from `start` to `end` on the records known that day.

    The source is the database of PARKCAST_DATABASE_URL, already ingested.
    The replay database starts with every observation before `start`, and
    each simulated day adds that day's observations, retrains every
    `retrain_every` days with the real promotion rule, and writes the next
    PARKCAST_HORIZON_DAYS forecasts as of that day.
    """
    settings = settings or get_settings()
    if end < start:
        raise ValueError(f"--end {end} is before --start {start}")
    if retrain_every < 1:
        raise ValueError(f"--retrain-every must be at least 1 day, got {retrain_every}")
    logger = get_logger()
    began = time.perf_counter()
    source = make_engine(settings.database_url)
    target_url = replay_url or f"sqlite:///{Path(settings.model_dir).parent / 'replay.db'}"
    target = make_engine(target_url)
    migrate(target)
    with target.connect() as connection:
        if connection.execute(sa.select(sa.func.count()).select_from(schema.observations)).scalar_one():
            raise ValueError(f"replay database {target_url} is not empty; delete it or pass another --replay-url")
    for table in _COPIED_TABLES:
        _copy_rows(source, target, table)
    _observations_of(source, target, date(1900, 1, 1), start - timedelta(days=1))

    all_cells = load_cells.fn(source)
    # History features only look up days up to each forecast's as-of day, so
    # one context from the full source serves every simulated day unchanged.
    context = with_history(load_context.fn(target), all_cells)
    cells = load_cells.fn(target)
    replay_settings = settings.model_copy(update={"model_dir": Path(settings.model_dir) / "replay"})
    skipped: list[date] = []
    loaded: LoadedModel | None = None
    day, days = start, 0
    with progress_bar("Replaying days", (end - start).days + 1) as bar:
        while day <= end:
            _observations_of(source, target, day, day)
            cells = pd.concat([cells, load_cells.fn(target, start=day, end=day)], ignore_index=True)
            if days % retrain_every == 0:
                retrain(target, cells, context, replay_settings)
            try:
                loaded = _current_champion(target, loaded)
            except NoUsableModelError:
                skipped.append(day)
            else:
                # Only this day's observations are new, so earlier park days
                # keep their park_day_history rows.
                write_forecasts.fn(target, loaded, context, cells, settings.horizon_days, None, history_since=day)
            days += 1
            day += timedelta(days=1)
            bar.advance()
    logger.info("Replayed %d days from %s to %s", days, start, end)

    by_horizon, by_ride, overall = score_served_forecasts(target, all_cells)
    report = ReplayReport(days, time.perf_counter() - began, by_horizon, by_ride, _promotion_history(target), overall, skipped)
    source.dispose()
    target.dispose()
    return report


def format_replay_report(report: ReplayReport) -> str:
    """Render the replay's accuracy and promotion history as plain-text tables."""
    overall = f"{report.overall_mae:.2f}" if report.overall_mae is not None else "n/a"
    lines = [f"Replayed {report.days} days in {report.seconds / 60:.1f} min; MAE of served forecasts {overall} min"]
    if report.skipped_days:
        lines.append(f"No champion yet on {len(report.skipped_days)} days, so nothing was served then")
    lines += ["", "MAE by horizon day:", report.by_horizon.to_string(index=False, float_format="%.2f")]
    lines += ["", "MAE by ride:", report.by_ride.to_string(index=False, float_format="%.2f")]
    lines += ["", "Retrains:", report.promotions.to_string(index=False, float_format="%.2f")]
    return "\n".join(lines)


def plot_replay_report(report: ReplayReport, path: Path) -> None:
    """Draw MAE by horizon day and by ride side by side into a PNG file."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    left.plot(report.by_horizon["horizon_day"], report.by_horizon["mae"], marker="o")
    left.set_xlabel("horizon (days after the as-of day)")
    left.set_ylabel("MAE (minutes)")
    left.set_title("Served forecasts by horizon")
    right.barh(report.by_ride["ride_code"], report.by_ride["mae"])
    right.set_xlabel("MAE (minutes)")
    right.set_title("Served forecasts by ride")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
