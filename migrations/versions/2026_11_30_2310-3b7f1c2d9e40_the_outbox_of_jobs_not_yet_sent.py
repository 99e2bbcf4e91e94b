"""the outbox of jobs not yet sent: each job committed with its step, deleted once the
broker has taken it

Revision ID: 3b7f1c2d9e40
Revises: 8d3e6f0a9c21
Create Date: 2026-11-30 23:10:03.674609

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '3b7f1c2d9e40'
down_revision: Union[str, Sequence[str], None] = '8d3e6f0a9c21'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('outbox_job',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('task', sa.String(length=64), nullable=False),
    sa.Column('args', sa.JSON(), nullable=False),
    sa.Column('task_id', sa.String(length=64), nullable=True),
    sa.Column('queue', sa.String(length=16), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('resent_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_outbox_job'))
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table('outbox_job')
