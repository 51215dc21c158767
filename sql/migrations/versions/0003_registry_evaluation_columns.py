"""Record evaluation-window scores, learning-curve files and champion changes.

Revision ID: 0003
Revises: 0002

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0003'
down_revision: Union[str, Sequence[str], None] = '0002'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('model_versions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('eval_start', sa.Date(), nullable=True))
        batch_op.add_column(sa.Column('eval_end', sa.Date(), nullable=True))
        batch_op.add_column(sa.Column('eval_mae', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('eval_rmse', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('eval_within_10', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('eval_scored_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('trials', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('curve_path', sa.String(length=500), nullable=True))
    with op.batch_alter_table('registry_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('previous_champion_id', sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column('challenger_mae', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('champion_mae', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('baseline_mae', sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('registry_events', schema=None) as batch_op:
        batch_op.drop_column('baseline_mae')
        batch_op.drop_column('champion_mae')
        batch_op.drop_column('challenger_mae')
        batch_op.drop_column('previous_champion_id')
    with op.batch_alter_table('model_versions', schema=None) as batch_op:
        batch_op.drop_column('curve_path')
        batch_op.drop_column('trials')
        batch_op.drop_column('eval_scored_at')
        batch_op.drop_column('eval_within_10')
        batch_op.drop_column('eval_rmse')
        batch_op.drop_column('eval_mae')
        batch_op.drop_column('eval_end')
        batch_op.drop_column('eval_start')
