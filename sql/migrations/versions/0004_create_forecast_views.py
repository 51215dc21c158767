"""Create the read-side forecast views, the park-day history table and an index.

Revision ID: 0004
Revises: 0003

"""
from pathlib import Path
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0004'
down_revision: Union[str, Sequence[str], None] = '0003'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

VIEWS_DIR = Path(__file__).resolve().parents[2] / "views"
# Creation order: each view reads only the views before it.
VIEWS = [
    "forecast_latest",
    "ride_day_summary",
    "park_day_observed",
    "park_day_crowd_index",
    "forecast_accuracy",
    "forecast_accuracy_by_ride",
]


def view_sql(name: str, dialect: str) -> str:
    """Read the CREATE VIEW statement of `name`, preferring `<name>.<dialect>.sql`."""
    specific = VIEWS_DIR / f"{name}.{dialect}.sql"
    path = specific if specific.is_file() else VIEWS_DIR / f"{name}.sql"
    return path.read_text(encoding="utf-8")


def upgrade() -> None:
    """Index forecasts by ride and day, create the history table, then every view."""
    # forecast_latest looks up newer sets of the same ride and park day.
    op.create_index('ix_forecasts_ride_day', 'forecasts', ['ride_id', 'park_day'])
    op.create_table('park_day_history',
    sa.Column('park_code', sa.String(length=2), nullable=False),
    sa.Column('park_day', sa.Date(), nullable=False),
    sa.Column('mean_wait', sa.Float(), nullable=False),
    sa.Column('cells', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('park_code', 'park_day')
    )
    # The crowd index counts a park's history days below a forecast mean.
    op.create_index('ix_park_day_history_wait', 'park_day_history', ['park_code', 'mean_wait'])
    dialect = op.get_bind().dialect.name
    for name in VIEWS:
        op.execute(view_sql(name, dialect))


def downgrade() -> None:
    """Drop every view, newest first, then the history table and the index."""
    for name in reversed(VIEWS):
        op.execute(f"DROP VIEW IF EXISTS {name}")
    op.drop_table('park_day_history')
    op.drop_index('ix_forecasts_ride_day', table_name='forecasts')
