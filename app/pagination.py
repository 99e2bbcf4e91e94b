"""Keyset pagination for the JSON API's lists, one contract for all of them.

A list answers a JSON array, newest first; `limit` (1..100) rows a page; an opaque `cursor`
naming the last row seen, as (created_at, id), so rows created while a client walks the pages
neither repeat nor push others off a page (an offset would); a `Link: <...>; rel="next"`
header while more remain, and `X-Total-Count`.

Services hand over a `select()` of their rows, filtered to the caller's; this module orders,
cuts and counts it, so services stay free of HTTP.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Generic, TypeVar

from fastapi import Query, Request, Response
from fastapi.exceptions import RequestValidationError
from sqlalchemy import Select, and_, func, or_, select
from sqlalchemy.orm import Session

T = TypeVar("T")

DEFAULT_LIMIT: Final = 50
MAX_LIMIT: Final = 100
# A cursor is a timestamp and a 32-character id, base64-encoded: well under this.
MAX_CURSOR_CHARS: Final = 200
BAD_CURSOR = (
    "This cursor was not given out by this API (or was cut short): pass the one from the "
    "previous page's Link header unchanged, or leave it out to start from the newest."
)

# For the routes' `responses=`: the headers are part of the contract, so /openapi.json says so.
LIST_RESPONSES: Final[dict[int | str, dict[str, Any]]] = {
    200: {
        "description": "The page, newest first",
        "headers": {
            "Link": {
                "description": 'The next page\'s absolute URL, as `<url>; rel="next"`; absent '
                "on the last page",
                "schema": {"type": "string"},
            },
            "X-Total-Count": {
                "description": "How many rows the whole list holds",
                "schema": {"type": "integer"},
            },
        },
    }
}


@dataclass(frozen=True)
class Cursor:
    """The last row of the previous page."""

    created_at: datetime
    id: str


class InvalidCursor(ValueError):
    pass


def encode_cursor(cursor: Cursor) -> str:
    created = cursor.created_at
    # SQLite hands back naive datetimes; every stored one is UTC (app.db.utcnow).
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    raw = json.dumps([created.astimezone(UTC).isoformat(), cursor.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str) -> Cursor:
    """The cursor `encode_cursor` made, or InvalidCursor for anything else."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        created, ident = json.loads(raw.decode())
        if not isinstance(created, str) or not isinstance(ident, str) or len(ident) > 64:
            raise InvalidCursor(BAD_CURSOR)
        when = datetime.fromisoformat(created)
    except (binascii.Error, UnicodeDecodeError, ValueError, TypeError):
        raise InvalidCursor(BAD_CURSOR) from None
    if when.tzinfo is None:
        raise InvalidCursor(BAD_CURSOR)
    return Cursor(created_at=when.astimezone(UTC), id=ident)


@dataclass(frozen=True)
class PageRequest:
    limit: int = DEFAULT_LIMIT
    after: Cursor | None = None


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    total: int
    next_cursor: str | None


def page_request(
    limit: Annotated[
        int, Query(ge=1, le=MAX_LIMIT, description=f"Rows a page, 1 to {MAX_LIMIT}")
    ] = DEFAULT_LIMIT,
    cursor: Annotated[
        str | None,
        Query(
            max_length=MAX_CURSOR_CHARS,
            description="Where the page starts: the cursor from the previous page's Link "
            "header; leave out for the newest rows",
        ),
    ] = None,
) -> PageRequest:
    """The query parameters of every list route (use with Depends)."""
    if cursor is None:
        return PageRequest(limit=limit)
    try:
        return PageRequest(limit=limit, after=decode_cursor(cursor))
    except InvalidCursor as error:
        # FastAPI's own shape, as for `limit`, so clients read one kind of 422.
        raise RequestValidationError(
            [{"type": "value_error", "loc": ("query", "cursor"), "msg": str(error), "input": None}]
        ) from None


def paginate(session: Session, stmt: Select[T], page: PageRequest) -> Page[T]:
    """One page of `stmt`'s rows, newest first by (created_at, id); the entity selected must
    have both columns. `stmt` carries the caller's filters and no ordering."""
    entity: Any = stmt.column_descriptions[0]["entity"]
    created, ident = entity.created_at, entity.id
    total = session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery()))
    if page.after is not None:
        after = page.after
        stmt = stmt.where(
            or_(created < after.created_at, and_(created == after.created_at, ident < after.id))
        )
    rows = list(session.scalars(stmt.order_by(created.desc(), ident.desc()).limit(page.limit + 1)))
    items = rows[: page.limit]
    next_cursor = None
    if len(rows) > page.limit:
        last: Any = items[-1]
        next_cursor = encode_cursor(Cursor(created_at=last.created_at, id=last.id))
    return Page(items=items, total=int(total or 0), next_cursor=next_cursor)


def set_page_headers(request: Request, response: Response, page: Page[Any]) -> None:
    """X-Total-Count, and the next page's Link while there is one."""
    response.headers["X-Total-Count"] = str(page.total)
    if page.next_cursor is not None:
        url = request.url.include_query_params(cursor=page.next_cursor)
        response.headers["Link"] = f'<{url}>; rel="next"'
