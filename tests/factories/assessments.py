"""Assessments through the real app: the shipped intake, small samples, a scored assessment."""

from __future__ import annotations

import csv
import io
import json
import re

from tests.conftest import REPO


def intake() -> dict:
    return json.loads((REPO / "examples" / "intake-banking-intents.json").read_text())


GOOD_CSV = "text,label\n" + "".join(
    f"message number {i} about {lab},{lab}\n"
    for i in range(30)
    for lab in ("billing", "card", "refund")
)


def tiny_sample(rows: int = 60) -> str:
    """Three intents of the shipped sample: learnable in one short epoch."""
    with (REPO / "examples" / "banking77-sample.csv").open(newline="") as f:
        keep = [
            r
            for r in csv.DictReader(f)
            if r["label"] in ("pin_blocked", "top_up_limits", "visa_or_mastercard")
        ]
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["text", "label"])
    writer.writerows([r["text"], r["label"]] for r in keep[:rows])
    return out.getvalue()


def new_assessment(client) -> str:
    response = client.post("/assessments")
    assert response.status_code == 303
    match = re.match(r"/assessments/([0-9a-f]{32})/steps/use_case", response.headers["location"])
    assert match, response.headers["location"]
    return match.group(1)


def scored_assessment(
    client, *, sample: str | None = GOOD_CSV, title: str | None = None, **changes: object
) -> str:  # type: ignore[no-untyped-def]
    """POST /api/v1/assessments with the banking intake (with `changes` to its answers), then
    upload `sample` as a CSV via the page (None: no sample)."""
    body = intake() | changes
    if title is not None:
        body["title"] = title
    created = client.http.post("/api/v1/assessments", json=body)
    assert created.status_code == 201, created.text
    aid = str(created.json()["id"])
    if sample is not None:
        upload = client.post(
            f"/assessments/{aid}/sample", files={"file": ("sample.csv", sample, "text/csv")}
        )
        assert upload.status_code == 303, upload.text
    return aid
