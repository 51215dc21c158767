"""Create the core tables: rides, park days, observations, models, forecasts.

Revision ID: 0001
Revises: 

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0001'
down_revision: Union[str, Sequence[str], None] = None
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Create every core table and index."""
    op.create_table('park_days',
    sa.Column('park_day', sa.Date(), nullable=False),
    sa.Column('attributes', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('park_day')
    )
    op.create_table('park_hours',
    sa.Column('park_day', sa.Date(), nullable=False),
    sa.Column('park_code', sa.String(length=2), nullable=False),
    sa.Column('opens_minute', sa.Integer(), nullable=False),
    sa.Column('closes_minute', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('park_day', 'park_code')
    )
    op.create_table('rides',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=80), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('short_name', sa.String(length=120), nullable=True),
    sa.Column('park_code', sa.String(length=2), nullable=False),
    sa.Column('park_name', sa.String(length=120), nullable=True),
    sa.Column('land', sa.String(length=120), nullable=True),
    sa.Column('opened_on', sa.Date(), nullable=True),
    sa.Column('duration_minutes', sa.Float(), nullable=True),
    sa.Column('average_wait_per_hundred', sa.Float(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('code')
    )
    op.create_table('source_files',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('path', sa.String(length=500), nullable=False),
    sa.Column('size_bytes', sa.BigInteger(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('rows_read', sa.Integer(), nullable=False),
    sa.Column('rows_stored', sa.Integer(), nullable=False),
    sa.Column('rows_rejected', sa.Integer(), nullable=False),
    sa.Column('ingested_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('path')
    )
    op.create_table('training_runs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('flow_run_id', sa.String(length=40), nullable=True),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('eval_start', sa.Date(), nullable=True),
    sa.Column('eval_end', sa.Date(), nullable=True),
    sa.Column('eval_cells', sa.Integer(), nullable=True),
    sa.Column('challenger_id', sa.String(length=40), nullable=True),
    sa.Column('challenger_mae', sa.Float(), nullable=True),
    sa.Column('champion_before_id', sa.String(length=40), nullable=True),
    sa.Column('champion_mae', sa.Float(), nullable=True),
    sa.Column('baseline_mae', sa.Float(), nullable=True),
    sa.Column('decision', sa.String(length=20), nullable=True),
    sa.Column('decision_reason', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('model_versions',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('status_reason', sa.Text(), nullable=True),
    sa.Column('file_path', sa.String(length=500), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('train_start', sa.Date(), nullable=False),
    sa.Column('train_end', sa.Date(), nullable=False),
    sa.Column('feature_schema_version', sa.Integer(), nullable=False),
    sa.Column('hyperparameters', sa.JSON(), nullable=False),
    sa.Column('code_version', sa.String(length=40), nullable=False),
    sa.Column('val_mae', sa.Float(), nullable=True),
    sa.Column('val_rmse', sa.Float(), nullable=True),
    sa.Column('val_within_10', sa.Float(), nullable=True),
    sa.Column('training_run_id', sa.Integer(), nullable=True),
    sa.Column('promoted_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['training_run_id'], ['training_runs.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('model_versions', schema=None) as batch_op:
        batch_op.create_index(
            'uq_model_versions_one_champion', ['status'], unique=True,
            sqlite_where=sa.text("status = 'champion'"),
            postgresql_where=sa.text("status = 'champion'"),
        )

    op.create_table('observations',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('ride_id', sa.Integer(), nullable=False),
    sa.Column('park_day', sa.Date(), nullable=False),
    sa.Column('observed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('local_hour', sa.SmallInteger(), nullable=False),
    sa.Column('posted_wait', sa.Integer(), nullable=True),
    sa.Column('actual_wait', sa.Integer(), nullable=True),
    sa.Column('is_closed', sa.Boolean(), nullable=False),
    sa.Column('source_file_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['ride_id'], ['rides.id'], ),
    sa.ForeignKeyConstraint(['source_file_id'], ['source_files.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('ride_id', 'observed_at', name='uq_observations_ride_time')
    )
    with op.batch_alter_table('observations', schema=None) as batch_op:
        batch_op.create_index('ix_observations_day', ['park_day', 'ride_id'], unique=False)

    op.create_table('rejected_rows',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('source_file_id', sa.Integer(), nullable=False),
    sa.Column('line_number', sa.Integer(), nullable=False),
    sa.Column('reason', sa.String(length=200), nullable=False),
    sa.Column('raw', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['source_file_id'], ['source_files.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('source_file_id', 'line_number', name='uq_rejected_rows_line')
    )
    op.create_table('forecast_sets',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('as_of', sa.Date(), nullable=False),
    sa.Column('model_version_id', sa.String(length=40), nullable=False),
    sa.Column('flow_run_id', sa.String(length=40), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('horizon_days', sa.Integer(), nullable=False),
    sa.Column('row_count', sa.Integer(), nullable=False),
    sa.Column('fallback_days', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['model_version_id'], ['model_versions.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('as_of')
    )
    op.create_table('registry_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('model_version_id', sa.String(length=40), nullable=False),
    sa.Column('action', sa.String(length=20), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['model_version_id'], ['model_versions.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('training_epochs',
    sa.Column('model_version_id', sa.String(length=40), nullable=False),
    sa.Column('epoch', sa.Integer(), nullable=False),
    sa.Column('loss', sa.Float(), nullable=False),
    sa.Column('val_loss', sa.Float(), nullable=True),
    sa.ForeignKeyConstraint(['model_version_id'], ['model_versions.id'], ),
    sa.PrimaryKeyConstraint('model_version_id', 'epoch')
    )
    op.create_table('forecasts',
    sa.Column('forecast_set_id', sa.Integer(), nullable=False),
    sa.Column('ride_id', sa.Integer(), nullable=False),
    sa.Column('park_day', sa.Date(), nullable=False),
    sa.Column('hour', sa.SmallInteger(), nullable=False),
    sa.Column('predicted_wait', sa.Float(), nullable=False),
    sa.Column('from_metadata', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['forecast_set_id'], ['forecast_sets.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['ride_id'], ['rides.id'], ),
    sa.PrimaryKeyConstraint('forecast_set_id', 'ride_id', 'park_day', 'hour')
    )


def downgrade() -> None:
    """Drop every core table."""
    op.drop_table('forecasts')
    op.drop_table('training_epochs')
    op.drop_table('registry_events')
    op.drop_table('forecast_sets')
    op.drop_table('rejected_rows')
    with op.batch_alter_table('observations', schema=None) as batch_op:
        batch_op.drop_index('ix_observations_day')

    op.drop_table('observations')
    op.drop_table('model_versions')
    op.drop_table('training_runs')
    op.drop_table('source_files')
    op.drop_table('rides')
    op.drop_table('park_hours')
    op.drop_table('park_days')
