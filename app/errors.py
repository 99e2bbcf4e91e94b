"""Domain errors: problems a user can act on, each with its HTTP meaning.

Services raise these; one exception handler (`app.main`) turns them into a JSON detail for the
API or the error page for browsers, so routes do not re-map them one by one. The message is
shown to the user as it is: write it in their words and name the field or resource.
"""

from __future__ import annotations

from typing import ClassVar


class DomainError(Exception):
    status_code: ClassVar[int] = 400


class NotFound(DomainError):
    """The resource does not exist, or belongs to someone else (never say which)."""

    status_code = 404


class Conflict(DomainError):
    """The resource exists but is not in a state that allows this yet."""

    status_code = 409


class Invalid(DomainError):
    """The request names something wrong: the message says which field and why."""

    status_code = 422


class TooMany(DomainError):
    """The user has reached a limit on how many of these they may have at once."""

    status_code = 429
