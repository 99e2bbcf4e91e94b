"""the sample behind each difference

Revision ID: c41d7e2a9b63
Revises: 3b7f1c2d9e40
Create Date: 2026-12-07 22:00:00

Each stored difference keeps the sample its interval rests on (paired items, groups,
discordant items, the test's p-value, the design effect and the method), so the verdict can
refuse evidence too thin to decide. Older rows keep NULLs: the rule reads them as unknown.
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = 'c41d7e2a9b63'
down_revision: Union[str, Sequence[str], None] = '3b7f1c2d9e40'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('arm_difference', schema=None) as batch_op:
        batch_op.add_column(sa.Column('n_items', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('n_groups', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('discordant', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('p_value', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('design_effect', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('method', sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('arm_difference', schema=None) as batch_op:
        batch_op.drop_column('method')
        batch_op.drop_column('design_effect')
        batch_op.drop_column('p_value')
        batch_op.drop_column('discordant')
        batch_op.drop_column('n_groups')
        batch_op.drop_column('n_items')
