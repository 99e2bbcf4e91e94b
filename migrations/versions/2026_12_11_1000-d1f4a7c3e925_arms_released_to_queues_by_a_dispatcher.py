"""arms released to queues by a dispatcher: a row per queue to lock while picking, and when
each user was last served on each queue

Revision ID: d1f4a7c3e925
Revises: b8e4a1c6d2f0
Create Date: 2026-12-11 10:00:00.000000

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = 'd1f4a7c3e925'
down_revision: Union[str, Sequence[str], None] = 'b8e4a1c6d2f0'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    dispatch_queue = op.create_table('dispatch_queue',
    sa.Column('name', sa.String(length=16), nullable=False),
    sa.Column('dispatched_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_dispatch_queue'))
    )
    # The rows the dispatcher locks exist from the start: creating one is then never a race.
    op.bulk_insert(dispatch_queue, [{'name': 'cpu'}, {'name': 'gpu'}])
    op.create_table('dispatch_turn',
    sa.Column('queue', sa.String(length=16), nullable=False),
    sa.Column('owner_id', sa.Integer(), nullable=False),
    sa.Column('served_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['owner_id'], ['user_account.id'], name=op.f('fk_dispatch_turn_owner_id_user_account'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('queue', 'owner_id', name=op.f('pk_dispatch_turn'))
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table('dispatch_turn')
    op.drop_table('dispatch_queue')
