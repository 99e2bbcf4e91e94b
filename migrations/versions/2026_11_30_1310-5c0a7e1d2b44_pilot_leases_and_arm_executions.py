"""pilot leases, claiming worker, task id, and arm executions

Revision ID: 5c0a7e1d2b44
Revises: b7e2c41a9d05
Create Date: 2026-11-30 13:10:00.000000

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '5c0a7e1d2b44'
down_revision: Union[str, Sequence[str], None] = 'b7e2c41a9d05'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        'arm_execution',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('pilot_id', sa.String(length=32), nullable=False),
        sa.Column('arm', sa.String(length=16), nullable=False),
        sa.Column('lease', sa.String(length=32), nullable=False),
        sa.Column('worker', sa.String(length=128), nullable=False),
        sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('outcome', sa.String(length=16), nullable=True),
        sa.ForeignKeyConstraint(['pilot_id'], ['pilot.id'], name=op.f('fk_arm_execution_pilot_id_pilot'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_arm_execution')),
    )
    with op.batch_alter_table('arm_execution', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_arm_execution_pilot_id'), ['pilot_id'], unique=False)

    with op.batch_alter_table('pilot', schema=None) as batch_op:
        batch_op.add_column(sa.Column('lease', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('claimed_by', sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column('task_id', sa.String(length=64), nullable=True))


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('pilot', schema=None) as batch_op:
        batch_op.drop_column('task_id')
        batch_op.drop_column('claimed_by')
        batch_op.drop_column('lease')

    with op.batch_alter_table('arm_execution', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_arm_execution_pilot_id'))

    op.drop_table('arm_execution')
