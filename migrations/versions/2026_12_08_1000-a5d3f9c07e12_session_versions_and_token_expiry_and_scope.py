"""session versions, and token expiry and scope

Revision ID: a5d3f9c07e12
Revises: c41d7e2a9b63
Create Date: 2026-12-08 10:00:00

`user_account.session_version` is carried in the session cookie; bumping it (log out
everywhere, a password change) ends every older session. Existing users start at 1; cookies
issued before this revision carry no version and are logged out once.

`api_token.expires_at` (NULL: never) and `api_token.scope`; existing tokens keep working as
before: no expiry, read-write.
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = 'a5d3f9c07e12'
down_revision: Union[str, Sequence[str], None] = 'c41d7e2a9b63'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('user_account', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('session_version', sa.Integer(), server_default='1', nullable=False)
        )
    with op.batch_alter_table('api_token', schema=None) as batch_op:
        batch_op.add_column(sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column('scope', sa.String(length=16), server_default='read-write', nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table('api_token', schema=None) as batch_op:
        batch_op.drop_column('scope')
        batch_op.drop_column('expires_at')
    with op.batch_alter_table('user_account', schema=None) as batch_op:
        batch_op.drop_column('session_version')
