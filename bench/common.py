"""What the benchmark scripts share: where the repository's files are, the app's caches, and a
signed-up user's assessment for the scripts that drive the web app.

Run every script as a module from the repository root, `python -m bench.NAME`: the `app` and
`worker` packages then import from the working tree, installed or not. Nothing here imports
the test suite: its fixtures change with the tests, and a benchmark must not.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLE = REPO_ROOT / "examples" / "banking77-sample.csv"
INTAKE = REPO_ROOT / "examples" / "intake-banking-intents.json"
# The default LLM as `worker.model_store.fetch_default_llm` converts it (`make models`).
DEFAULT_LLM = REPO_ROOT / "var" / "models" / "SmolLM2-135M-Instruct"


def reset_caches() -> None:
    """Forget the app's settings, engine and sessionmaker, so that the next use builds them
    from the environment as it is now (another VAR_DIR or DATABASE_URL)."""
    from app.db import get_engine, get_sessionmaker
    from app.settings import get_settings

    if get_engine.cache_info().currsize:
        get_engine().dispose()
    get_engine.cache_clear()
    get_sessionmaker.cache_clear()
    get_settings.cache_clear()


def tiny_sample(rows: int = 60) -> str:
    """Three intents of the shipped sample as a CSV: learnable in one short epoch."""
    with SAMPLE.open(newline="") as handle:
        keep = [
            row
            for row in csv.DictReader(handle)
            if row["label"] in ("pin_blocked", "top_up_limits", "visa_or_mastercard")
        ]
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["text", "label"])
    writer.writerows([row["text"], row["label"]] for row in keep[:rows])
    return out.getvalue()


def _csrf(http: Any) -> str:
    """The page's CSRF token, also set as the header cookie-authenticated API writes need."""
    page = http.get("/login")
    match = re.search(r'name="csrf-token" content="([^"]+)"', page.text)
    if match is None:
        raise SystemExit("the login page has no CSRF token")
    http.headers["X-CSRF-Token"] = match.group(1)
    return match.group(1)


def signed_up_assessment(http: Any, sample_csv: str) -> str:
    """Sign up through the page's form, create the banking assessment through the API and upload
    `sample_csv` to it, as a browser would; the assessment's id. `http`: a TestClient."""
    account = {"email": "bench@example.com", "password": "correct horse battery"}
    signup = http.post("/signup", data={**account, "csrf_token": _csrf(http)})
    if signup.status_code != 303:
        raise SystemExit(f"sign-up failed: {signup.status_code} {signup.text[:300]}")
    created = http.post("/api/v1/assessments", json=json.loads(INTAKE.read_text()))
    if created.status_code != 201:
        raise SystemExit(f"creating the assessment failed: {created.text[:300]}")
    aid = str(created.json()["id"])
    upload = http.post(
        f"/assessments/{aid}/sample",
        data={"csrf_token": _csrf(http)},
        files={"file": ("sample.csv", sample_csv, "text/csv")},
    )
    if upload.status_code != 303:
        raise SystemExit(f"uploading the sample failed: {upload.text[:300]}")
    return aid
