"""share links pinned to a pilot, and expiring

Revision ID: e7b2c9d4f815
Revises: a5d3f9c07e12
Create Date: 2026-12-09 10:00:00

`share_link.pilot_id`: the pilot a link shows (its page, PDF and bundle); `expires_at`
(NULL: until revoked).

Existing links that give the data and adapter are pinned to the pilot they give today: the
assessment's latest finished pilot at migration time. Their holders keep exactly what the
owner chose to share when they made the link (as near as we can tell now), and a pilot run
after this migration never shows through them. Refusing them instead would break links the
owner sent on purpose. Such a link whose assessment has no finished pilot gives nothing today;
it is turned into a report-and-PDF link, so it cannot start handing over data the day a pilot
finishes. Existing report-only links stay unpinned (NULL) and keep following the report's
default pilot, as they always did.
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = 'e7b2c9d4f815'
down_revision: Union[str, Sequence[str], None] = 'a5d3f9c07e12'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('share_link', schema=None) as batch_op:
        batch_op.add_column(sa.Column('pilot_id', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f('ix_share_link_pilot_id'), ['pilot_id'], unique=False)
        batch_op.create_foreign_key(
            batch_op.f('fk_share_link_pilot_id_pilot'),
            'pilot',
            ['pilot_id'],
            ['id'],
            ondelete='CASCADE',
        )
    # The report's default pilot: the latest finished one by creation (app.reports.service).
    op.execute(
        """
        UPDATE share_link SET pilot_id = (
            SELECT pilot.id FROM pilot
            WHERE pilot.assessment_id = share_link.assessment_id AND pilot.status = 'done'
            ORDER BY pilot.created_at DESC, pilot.id DESC
            LIMIT 1
        )
        WHERE include_bundle AND pilot_id IS NULL
        """
    )
    op.execute(
        sa.text(
            "UPDATE share_link SET include_bundle = :off WHERE include_bundle AND pilot_id IS NULL"
        ).bindparams(off=False)
    )


def downgrade() -> None:
    with op.batch_alter_table('share_link', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_share_link_pilot_id_pilot'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_share_link_pilot_id'))
        batch_op.drop_column('expires_at')
        batch_op.drop_column('pilot_id')
