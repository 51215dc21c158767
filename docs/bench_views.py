"""Time the forecast views on the full bundled data against a plain table read.

Usage: .venv/bin/python docs/bench_views.py DATABASE_URL

The database is migrated and, when it contains no observations, the bundled data
is ingested (about a minute). Four forecast sets of PARKCAST_HORIZON_DAYS days
are written by a small untrained Keras model, so no training runs. Each query
runs 5 times and the median is reported, with its ratio to the baseline: a
read of the newest set straight from the forecasts table.
"""

from __future__ import annotations

import statistics
import sys
import time
from datetime import date, datetime, timezone

import pandas as pd
import sqlalchemy as sa

from parkcast import schema
from parkcast.db import make_engine, migrate
from parkcast.models.mlp import HyperParameters, build_model
from parkcast.settings import REPO_ROOT, get_settings
from parkcast.tasks.features import CATEGORICAL_FEATURES, NUMERIC_FEATURES, build_features, load_cells, load_context, with_history
from parkcast.tasks.ingest import ingest_folder
from parkcast.tasks.predict import LoadedModel, refresh_park_day_history, write_forecasts

AS_OF_DAYS = [date(2021, 8, 1), date(2021, 8, 15), date(2021, 8, 29), date(2021, 12, 28)]
QUERIES = {
    "baseline: newest set from forecasts": """
        SELECT f.ride_id, f.park_day, f.hour, f.predicted_wait FROM forecasts f
        JOIN forecast_sets s ON s.id = f.forecast_set_id
        WHERE s.as_of = (SELECT max(as_of) FROM forecast_sets)""",
    "forecast_latest, newest days": """
        SELECT * FROM forecast_latest WHERE park_day > (SELECT max(as_of) FROM forecast_sets)""",
    "ride_day_summary, newest days": """
        SELECT * FROM ride_day_summary WHERE park_day > (SELECT max(as_of) FROM forecast_sets)""",
    "park_day_observed, all days (live aggregate)": "SELECT * FROM park_day_observed",
    "park_day_crowd_index, newest days (calendar)": """
        SELECT * FROM park_day_crowd_index WHERE park_day > (SELECT max(as_of) FROM forecast_sets)""",
    "forecast_accuracy_by_ride, all sets": "SELECT * FROM forecast_accuracy_by_ride",
}


def prepare(engine: sa.Engine, horizon: int) -> None:
    with engine.connect() as connection:
        stored = connection.execute(sa.select(sa.func.count()).select_from(schema.observations)).scalar_one()
        sets = connection.execute(sa.select(sa.func.count()).select_from(schema.forecast_sets)).scalar_one()
    if stored == 0:
        ingest_folder.fn(engine, REPO_ROOT / "data" / "touringplans", 500)
    if sets >= len(AS_OF_DAYS):
        return
    cells = load_cells.fn(engine)
    context = with_history(load_context.fn(engine), cells)
    sample = cells.sample(2000, random_state=1).assign(as_of=lambda frame: frame["park_day"] - pd.Timedelta(days=3))
    model = build_model(HyperParameters.parse(hidden_units=(8,), seed=3), build_features(sample, context),
                        CATEGORICAL_FEATURES, NUMERIC_FEATURES)
    with engine.begin() as connection:
        connection.execute(sa.insert(schema.model_versions).values(
            id="bench-untrained", created_at=datetime.now(timezone.utc), status="retired", file_path="/not/stored.h5",
            sha256="0" * 64, train_start=AS_OF_DAYS[0], train_end=AS_OF_DAYS[0], feature_schema_version=1,
            hyperparameters={}, code_version="bench"))
    loaded = LoadedModel(model=model, version_id="bench-untrained")
    for as_of in AS_OF_DAYS:
        write_forecasts.fn(engine, loaded, context, cells[cells["park_day"] <= pd.Timestamp(as_of)], horizon, "bench")


def main(url: str) -> None:
    engine = make_engine(url)
    migrate(engine)
    prepare(engine, get_settings().horizon_days)
    with engine.connect() as connection:
        observations = connection.execute(sa.select(sa.func.count()).select_from(schema.observations)).scalar_one()
        forecasts = connection.execute(sa.select(sa.func.count()).select_from(schema.forecasts)).scalar_one()
    print(f"{engine.dialect.name}: {observations} observations, {forecasts} forecast rows in {len(AS_OF_DAYS)} sets")
    start = time.perf_counter()
    with engine.begin() as connection:
        refresh_park_day_history(connection)
    print(f"refresh_park_day_history (once per forecast write): {(time.perf_counter() - start) * 1000:.1f} ms")
    baseline = None
    for name, query in QUERIES.items():
        times, rows = [], 0
        for _ in range(5):
            with engine.connect() as connection:
                start = time.perf_counter()
                rows = len(connection.execute(sa.text(query)).all())
                times.append(time.perf_counter() - start)
        median = statistics.median(times)
        baseline = baseline or median
        print(f"| {name} | {rows} | {median * 1000:.1f} | {median / baseline:.1f} |")
    engine.dispose()


if __name__ == "__main__":
    main(sys.argv[1])
