"""Keys for pages kept once rendered: a digest of what the page shows and of the code that
renders it. No FastAPI here: the report service computes its key without the web layer."""

from __future__ import annotations

import hashlib
from functools import lru_cache

from app import __version__
from app.settings import PROJECT_ROOT


@lru_cache
def render_version() -> str:
    """A digest of the code, templates and migrations that produce pages, for keys and ETags:
    a deploy that changes any of them changes every kept page's key and every ETag."""
    digest = hashlib.sha256(__version__.encode())
    for folder, pattern in (("app", "*.py"), ("templates", "*"), ("migrations", "*.py")):
        for path in sorted((PROJECT_ROOT / folder).rglob(pattern)):
            if path.is_file():
                digest.update(str(path.relative_to(PROJECT_ROOT)).encode() + b"\0")
                digest.update(path.read_bytes())
    return digest.hexdigest()


def page_key(*parts: object) -> str:
    """A kept page's key: a digest of `parts` (every value the page shows depends on) and of
    `render_version()`. Values must have a faithful `repr` (strings, numbers, dates, tuples)."""
    material = repr((render_version(), parts))
    return hashlib.sha256(material.encode()).hexdigest()
