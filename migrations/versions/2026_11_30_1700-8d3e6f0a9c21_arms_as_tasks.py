"""arms as tasks: the pilot's stage and stored split, each arm's lease and hand-over

Revision ID: 8d3e6f0a9c21
Revises: 5afb6bed6fc8
Create Date: 2026-11-30 17:00:00.000000

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '8d3e6f0a9c21'
down_revision: Union[str, Sequence[str], None] = '5afb6bed6fc8'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        'pilot_split',
        sa.Column('pilot_id', sa.String(length=32), nullable=False),
        sa.Column('data', sa.JSON(), nullable=False),
        sa.Column('dataset_sha256', sa.String(length=64), nullable=False),
        sa.Column('caps', sa.JSON(), nullable=False),
        sa.Column('warnings', sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(['pilot_id'], ['pilot.id'], name=op.f('fk_pilot_split_pilot_id_pilot'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('pilot_id', name=op.f('pk_pilot_split')),
    )
    with op.batch_alter_table('pilot', schema=None) as batch_op:
        batch_op.add_column(sa.Column('stage', sa.String(length=16), nullable=True))

    with op.batch_alter_table('pilot_arm', schema=None) as batch_op:
        batch_op.add_column(sa.Column('lease', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('attempts', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('heartbeat_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('claimed_by', sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column('task_id', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('started_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('handover', sa.JSON(), nullable=True))


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('pilot_arm', schema=None) as batch_op:
        for column in (
            'handover', 'finished_at', 'started_at', 'task_id', 'claimed_by', 'heartbeat_at',
            'attempts', 'lease',
        ):
            batch_op.drop_column(column)

    with op.batch_alter_table('pilot', schema=None) as batch_op:
        batch_op.drop_column('stage')

    op.drop_table('pilot_split')
