"""Track how much of each source file was ingested, for incremental reads.

Revision ID: 0002
Revises: 0001

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = "0002"
down_revision: Union[str, Sequence[str], None] = "0001"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table("source_files", schema=None) as batch_op:
        batch_op.add_column(sa.Column("bytes_consumed", sa.BigInteger(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("lines_consumed", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("prefix_sha256", sa.String(length=64), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("source_files", schema=None) as batch_op:
        batch_op.drop_column("prefix_sha256")
        batch_op.drop_column("lines_consumed")
        batch_op.drop_column("bytes_consumed")
