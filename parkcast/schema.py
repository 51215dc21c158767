"""SQLAlchemy Core tables of parkcast's database, as the migrations create them."""

from __future__ import annotations

import sqlalchemy as sa

__all__ = [
    "metadata",
    "rides",
    "park_days",
    "park_hours",
    "source_files",
    "observations",
    "rejected_rows",
    "model_versions",
    "training_runs",
    "training_epochs",
    "registry_events",
    "forecast_sets",
    "forecasts",
    "park_day_history",
]

metadata = sa.MetaData()

rides = sa.Table(
    "rides",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("code", sa.String(80), nullable=False, unique=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("short_name", sa.String(120)),
    sa.Column("park_code", sa.String(2), nullable=False),
    sa.Column("park_name", sa.String(120)),
    sa.Column("land", sa.String(120)),
    sa.Column("opened_on", sa.Date),
    sa.Column("duration_minutes", sa.Float),
    sa.Column("average_wait_per_hundred", sa.Float),
)

park_days = sa.Table(
    "park_days",
    metadata,
    sa.Column("park_day", sa.Date, primary_key=True),
    # The full TouringPlans metadata row, column name to raw string value.
    sa.Column("attributes", sa.JSON, nullable=False),
)

park_hours = sa.Table(
    "park_hours",
    metadata,
    sa.Column("park_day", sa.Date, primary_key=True),
    sa.Column("park_code", sa.String(2), primary_key=True),
    # Minutes after midnight of the park day; a close of 25:00 is 1500.
    sa.Column("opens_minute", sa.Integer, nullable=False),
    sa.Column("closes_minute", sa.Integer, nullable=False),
)

source_files = sa.Table(
    "source_files",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("path", sa.String(500), nullable=False, unique=True),
    sa.Column("size_bytes", sa.BigInteger, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("rows_read", sa.Integer, nullable=False),
    sa.Column("rows_stored", sa.Integer, nullable=False),
    sa.Column("rows_rejected", sa.Integer, nullable=False),
    sa.Column("ingested_at", sa.DateTime(timezone=True), nullable=False),
    # Incremental ingest: decompressed bytes and lines (header included) read
    # so far, and the SHA-256 of those bytes. A file whose first
    # bytes_consumed bytes still hash to prefix_sha256 has only grown.
    sa.Column("bytes_consumed", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("lines_consumed", sa.Integer, nullable=False, server_default="0"),
    sa.Column("prefix_sha256", sa.String(64), nullable=False, server_default=""),
)

observations = sa.Table(
    "observations",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("ride_id", sa.Integer, sa.ForeignKey("rides.id"), nullable=False),
    sa.Column("park_day", sa.Date, nullable=False),
    # UTC instant of the observation; local_hour is its America/New_York hour.
    sa.Column("observed_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("local_hour", sa.SmallInteger, nullable=False),
    sa.Column("posted_wait", sa.Integer),
    sa.Column("actual_wait", sa.Integer),
    sa.Column("is_closed", sa.Boolean, nullable=False),
    sa.Column("source_file_id", sa.Integer, sa.ForeignKey("source_files.id")),
    sa.UniqueConstraint("ride_id", "observed_at", name="uq_observations_ride_time"),
)
sa.Index("ix_observations_day", observations.c.park_day, observations.c.ride_id)

rejected_rows = sa.Table(
    "rejected_rows",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("source_file_id", sa.Integer, sa.ForeignKey("source_files.id"), nullable=False),
    sa.Column("line_number", sa.Integer, nullable=False),
    sa.Column("reason", sa.String(200), nullable=False),
    sa.Column("raw", sa.Text, nullable=False),
    sa.UniqueConstraint("source_file_id", "line_number", name="uq_rejected_rows_line"),
)

model_versions = sa.Table(
    "model_versions",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("status_reason", sa.Text),
    sa.Column("file_path", sa.String(500), nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("train_start", sa.Date, nullable=False),
    sa.Column("train_end", sa.Date, nullable=False),
    sa.Column("feature_schema_version", sa.Integer, nullable=False),
    sa.Column("hyperparameters", sa.JSON, nullable=False),
    sa.Column("code_version", sa.String(40), nullable=False),
    sa.Column("val_mae", sa.Float),
    sa.Column("val_rmse", sa.Float),
    sa.Column("val_within_10", sa.Float),
    sa.Column("training_run_id", sa.Integer, sa.ForeignKey("training_runs.id")),
    sa.Column("promoted_at", sa.DateTime(timezone=True)),
    # Scores on the freshest evaluation window of the last decision that scored
    # this version; validation scores above come from its own training data.
    sa.Column("eval_start", sa.Date),
    sa.Column("eval_end", sa.Date),
    sa.Column("eval_mae", sa.Float),
    sa.Column("eval_rmse", sa.Float),
    sa.Column("eval_within_10", sa.Float),
    sa.Column("eval_scored_at", sa.DateTime(timezone=True)),
    sa.Column("trials", sa.Integer),
    # How the trials were combined into this model, "best" or "average". Rows with NULL predate the column and are "best".
    sa.Column("trial_combine", sa.String(10)),
    sa.Column("curve_path", sa.String(500)),
)
# At most one champion at any time, enforced by the database itself.
sa.Index(
    "uq_model_versions_one_champion",
    model_versions.c.status,
    unique=True,
    sqlite_where=model_versions.c.status == "champion",
    postgresql_where=model_versions.c.status == "champion",
)

training_runs = sa.Table(
    "training_runs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("flow_run_id", sa.String(40)),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("eval_start", sa.Date),
    sa.Column("eval_end", sa.Date),
    sa.Column("eval_cells", sa.Integer),
    sa.Column("challenger_id", sa.String(40)),
    sa.Column("challenger_mae", sa.Float),
    sa.Column("champion_before_id", sa.String(40)),
    sa.Column("champion_mae", sa.Float),
    sa.Column("baseline_mae", sa.Float),
    sa.Column("decision", sa.String(20)),
    sa.Column("decision_reason", sa.Text),
)

training_epochs = sa.Table(
    "training_epochs",
    metadata,
    sa.Column("model_version_id", sa.String(40), sa.ForeignKey("model_versions.id"), primary_key=True),
    sa.Column("epoch", sa.Integer, primary_key=True),
    sa.Column("loss", sa.Float, nullable=False),
    sa.Column("val_loss", sa.Float),
)

registry_events = sa.Table(
    "registry_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("model_version_id", sa.String(40), sa.ForeignKey("model_versions.id"), nullable=False),
    sa.Column("action", sa.String(20), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("previous_champion_id", sa.String(40)),
    # MAEs in minutes on the evaluation window of a retrain decision.
    sa.Column("challenger_mae", sa.Float),
    sa.Column("champion_mae", sa.Float),
    sa.Column("baseline_mae", sa.Float),
)

forecast_sets = sa.Table(
    "forecast_sets",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("as_of", sa.Date, nullable=False, unique=True),
    sa.Column("model_version_id", sa.String(40), sa.ForeignKey("model_versions.id"), nullable=False),
    sa.Column("flow_run_id", sa.String(40)),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("horizon_days", sa.Integer, nullable=False),
    sa.Column("row_count", sa.Integer, nullable=False),
    sa.Column("fallback_days", sa.Integer, nullable=False),
)

forecasts = sa.Table(
    "forecasts",
    metadata,
    sa.Column("forecast_set_id", sa.Integer, sa.ForeignKey("forecast_sets.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("ride_id", sa.Integer, sa.ForeignKey("rides.id"), primary_key=True),
    sa.Column("park_day", sa.Date, primary_key=True),
    sa.Column("hour", sa.SmallInteger, primary_key=True),
    sa.Column("predicted_wait", sa.Float, nullable=False),
    # False where the park day had no metadata row and typical hours were used.
    sa.Column("from_metadata", sa.Boolean, nullable=False),
)
# forecast_latest (sql/views/) looks up newer sets of the same ride and park day.
sa.Index("ix_forecasts_ride_day", forecasts.c.ride_id, forecasts.c.park_day)

# Copy of the park_day_observed view (sql/views/), refreshed with each forecast
# write: the crowd index reads it instead of aggregating every observation.
park_day_history = sa.Table(
    "park_day_history",
    metadata,
    sa.Column("park_code", sa.String(2), primary_key=True),
    sa.Column("park_day", sa.Date, primary_key=True),
    sa.Column("mean_wait", sa.Float, nullable=False),
    sa.Column("cells", sa.Integer, nullable=False),
)
# The crowd index counts a park's history days below a forecast mean.
sa.Index("ix_park_day_history_wait", park_day_history.c.park_code, park_day_history.c.mean_wait)
