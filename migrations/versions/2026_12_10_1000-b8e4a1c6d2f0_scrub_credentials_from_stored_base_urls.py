"""scrub credentials, queries and fragments from stored base URLs

Revision ID: b8e4a1c6d2f0
Revises: e7b2c9d4f815
Create Date: 2026-12-10 10:00:00

Before the egress policy, a model could be registered with a base URL such as
`http://team:secret@host/v1` or `https://host/v1?key=...`: the credentials sat in plain text in
`llm_model.base_url`, came back from the API and the models page, and reached logs. The policy
now refuses such a URL when a model is registered or used, but rows stored before it kept
theirs. This migration removes the user-info, the query and the fragment from every stored
base URL, so the secret is gone from the database (not merely hidden), and marks the model's
last check as failed with a message saying what happened and what to do: an API key belongs
in the key field, which is stored encrypted. The host, port and path stay, so the owner sees
which model it was.

A downgrade cannot bring the removed secrets back, and should not: it leaves the rows as they
are.
"""

from collections.abc import Sequence
from datetime import UTC, datetime
from urllib.parse import urlsplit, urlunsplit

import sqlalchemy as sa
from alembic import op

revision: str = "b8e4a1c6d2f0"
down_revision: str | Sequence[str] | None = "e7b2c9d4f815"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCRUBBED_MESSAGE = (
    "base_url held credentials, a query or a fragment; they were removed when PathPilot was "
    "upgraded, as URLs are not a safe place for secrets. Put the API key in the model's key "
    "field (stored encrypted) and check the connection again."
)


def scrubbed(url: str) -> str | None:
    """The URL without user-info, query and fragment; None when there was nothing to remove.

    Written out here rather than imported: a migration must keep doing what it did when it
    was written, whatever the application's code becomes.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        # It does not even split (a broken IPv6 bracket): drop everything up to the last
        # user-info marker and from the first query or fragment marker on.
        scheme, sep, rest = url.partition("://")
        rest = rest.rpartition("@")[2].split("?", 1)[0].split("#", 1)[0]
        clean = f"{scheme}{sep}{rest}"
        return clean if clean != url else None
    has_userinfo = "@" in parts.netloc
    if not (has_userinfo or parts.query or parts.fragment or url.endswith(("?", "#"))):
        return None
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, "", "")).rstrip("/")


def upgrade() -> None:
    connection = op.get_bind()
    model = sa.table(
        "llm_model",
        sa.column("id", sa.String),
        sa.column("base_url", sa.String),
        sa.column("check_ok", sa.Boolean),
        sa.column("check_message", sa.Text),
        sa.column("checked_at", sa.DateTime(timezone=True)),
    )
    rows = connection.execute(
        sa.select(model.c.id, model.c.base_url).where(model.c.base_url.is_not(None))
    ).all()
    now = datetime.now(UTC)
    for model_id, url in rows:
        clean = scrubbed(url)
        if clean is None:
            continue
        connection.execute(
            model.update()
            .where(model.c.id == model_id)
            .values(base_url=clean, check_ok=False, check_message=SCRUBBED_MESSAGE, checked_at=now)
        )


def downgrade() -> None:
    pass
