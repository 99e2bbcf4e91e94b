"""The interactive API reference at /docs, on vendored Swagger UI (no CDN, no inline script)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from app.web import render

router = APIRouter(include_in_schema=False)


@router.get("/docs")
def api_reference(request: Request) -> Response:
    return render(request, "api/docs.html", {"openapi_url": request.app.openapi_url})
