"""share links may include the hand-off bundle (data and adapter)

Revision ID: b7e2c41a9d05
Revises: 47f107688f6b
Create Date: 2026-11-30 12:00:00.000000

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = 'b7e2c41a9d05'
down_revision: Union[str, Sequence[str], None] = '47f107688f6b'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema: existing links keep giving the report and PDF only."""
    with op.batch_alter_table('share_link') as batch_op:
        batch_op.add_column(
            sa.Column('include_bundle', sa.Boolean(), server_default=sa.false(), nullable=False)
        )


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('share_link') as batch_op:
        batch_op.drop_column('include_bundle')
