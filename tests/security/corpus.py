"""Hostile inputs, as data: uploads, wizard forms, other forms and JSON API bodies.

Each case names where it goes (`target`), what goes there, the status it must get and the
words the answer must contain (the line, row or field at fault, in the user's terms).
`tests/security/test_hostile_inputs.py` sends every case to a user who already has a good
sample and a scored assessment, and checks both survive untouched.

Cases marked `fixed=` were a 500 or a missing/misleading message before; the string says
where the fix is.
"""

from __future__ import annotations

import codecs
import dataclasses
import gzip
import html
import io
import json
import zipfile
from dataclasses import dataclass, field
from typing import Any

from tests.factories.assessments import intake

XSS = "<script>alert(1)</script>"
IMG_XSS = "<img src=x onerror=alert(1)>"

# Targets: where a case is sent.
SAMPLE = "sample"  # POST /assessments/{id}/sample (multipart: file, format, task)
DOCUMENTS = "documents"  # POST /assessments/{id}/documents (multipart: files)
PILOT_FORM = "pilot-form"  # POST /assessments/{id}/pilots (form)
TOKEN_FORM = "token-form"  # POST /account/tokens
LINK_FORM = "link-form"  # POST /assessments/{id}/sharing
LOGIN = "login"  # POST /login
SIGNUP = "signup"  # POST /signup
API_ASSESSMENTS = "api-assessments"  # POST /api/v1/assessments (raw body)
API_PILOTS = "api-pilots"  # POST /api/v1/assessments/{id}/pilots (raw body)
WHAT_IF = "what-if"  # GET /assessments/{id}/report/what-if (query string, as HTMX sends it)
MODEL_FORM = "model-form"  # POST /models (form)
API_MODELS = "api-models"  # POST /api/v1/models (raw body)
API_SAMPLE = "api-sample"  # PUT /api/v1/assessments/{id}/sample (multipart: file, format, task)
API_DOCUMENTS = "api-documents"  # POST /api/v1/assessments/{id}/documents (multipart: files)


def step(name: str) -> str:
    """Target: POST /assessments/{id}/steps/{name} (form)."""
    return f"step:{name}"


@dataclass(frozen=True)
class Hostile:
    id: str
    target: str
    status: int
    expect: tuple[str, ...] = ()  # substrings of the response (the message naming the problem)
    data: bytes = b""  # the uploaded file (SAMPLE, DOCUMENTS) or the raw body (API_*)
    filename: str = "sample.csv"
    fields: dict[str, Any] = field(default_factory=dict)  # form fields
    content_type: str = "application/json"  # API_* only
    env: dict[str, str] = field(default_factory=dict)  # settings overrides for this case
    stored_name: str | None = None  # accepted uploads: the display name the server keeps
    escaped: str | None = None  # text sent that must come back escaped, on this page ...
    shown_on: str | None = None  # ... ("{aid}" is filled in)
    fixed: str = ""  # where a 500 or a missing message was fixed
    hidden: tuple[str, ...] = ()  # sent, and must not come back (a credential)

    @property
    def accepted(self) -> bool:
        return self.status < 400


# --- building blocks -------------------------------------------------------------------

GOOD_ROWS = "".join(f"message number {i} about {lab},{lab}\n" for i in range(20) for lab in "abc")
GOOD_CSV_TEXT = "text,label\n" + GOOD_ROWS


def jsonl(*records: Any) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in records).encode()


INSTRUCTION = {"instruction": "Classify", "input": "my card is lost", "output": "card"}


def zipped() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("sample.jsonl", jsonl(INSTRUCTION))
    return buffer.getvalue()


def api_body(**changes: Any) -> bytes:
    return json.dumps(intake() | changes).encode()


def api_raw(**raw: str) -> bytes:
    """The intake with some values spliced in as raw JSON text (NaN, 1e309, huge ints)."""
    body = intake()
    for key in raw:
        body[key] = f"@@{key}@@"
    text = json.dumps(body)
    for key, value in raw.items():
        text = text.replace(f'"@@{key}@@"', value)
    return text.encode()


def without(*keys: str) -> bytes:
    return json.dumps({k: v for k, v in intake().items() if k not in keys}).encode()


# The tables below are laid out by hand, one case per entry.
# fmt: off
USE_CASE_OK = {"use_case": "Route support messages.", "task_type": "classification"}
RESOURCES_OK = {"budget_one_off_usd": "1000", "budget_monthly_usd": "100", "gpu_access": "none",
                "timeline": "weeks"}
TRAFFIC_OK = {"queries_per_day": "1000", "latency_target_ms": "2000", "data_residency": "none",
              "target_model_size_b": "8"}

# --- sample uploads ----------------------------------------------------------------------

SAMPLES = [
    Hostile("jsonl-broken-line", SAMPLE, 422, ("line 2", "not valid JSON"), filename="s.jsonl",
            data=jsonl(INSTRUCTION) + b'{"instruction": "a", "input": \n'),
    Hostile("jsonl-trailing-comma", SAMPLE, 422, ("line 1", "not valid JSON"), filename="s.jsonl",
            data=b'{"instruction": "a", "input": "b", "output": "c",}\n'),
    Hostile("jsonl-duplicate-key", SAMPLE, 422, ("line 1", "duplicate key &#39;output&#39;"),
            filename="s.jsonl",
            data=b'{"instruction": "a", "input": "b", "output": "c", "output": "d"}\n'),
    Hostile("jsonl-nan", SAMPLE, 422, ("line 2", "NaN is not a JSON value"), filename="s.jsonl",
            data=jsonl(INSTRUCTION) + b'{"instruction": "a", "input": NaN, "output": "c"}\n'),
    Hostile("jsonl-5000-digit-number", SAMPLE, 422, ("line 1", "more than 4,300 digits"),
            filename="s.jsonl",
            data=b'{"instruction": "a", "input": "b", "output": ' + b"9" * 5000 + b"}\n",
            fixed="500 (ValueError from int parsing): app/domain/samples/strict_json.py, "
            "formats.py"),
    Hostile("jsonl-5000-digit-number-line-3", SAMPLE, 422, ("line 3", "4,300 digits"),
            filename="s.jsonl",
            data=jsonl(INSTRUCTION, INSTRUCTION) + b'{"output": ' + b"1" * 4400 + b"}\n",
            fixed="500 (ValueError from int parsing): app/domain/samples/strict_json.py"),
    Hostile("jsonl-deeply-nested", SAMPLE, 422, ("line 2", "nested too deeply"),
            filename="s.jsonl",
            data=jsonl(INSTRUCTION) + b'{"input": ' + b"[" * 5000 + b"]" * 5000 + b"}\n"),
    Hostile("json-array-file", SAMPLE, 422, ("JSON array", "JSON Lines"), filename="s.json",
            data=json.dumps([INSTRUCTION]).encode()),
    Hostile("jsonl-mixed-formats", SAMPLE, 422, ("line 2",), filename="s.jsonl",
            data=jsonl(INSTRUCTION, {"question": "q?", "answer": "a"})),
    Hostile("jsonl-wrong-value-type", SAMPLE, 422, ("line 1", "output"), filename="s.jsonl",
            data=jsonl({"instruction": "a", "input": "b", "output": 5})),
    Hostile("jsonl-chat-without-assistant", SAMPLE, 422, ("line 1", "assistant"),
            filename="s.jsonl", data=jsonl({"messages": [{"role": "user", "content": "hi"}]})),
    Hostile("jsonl-not-an-object", SAMPLE, 422, ("line 2",), filename="s.jsonl",
            data=jsonl(INSTRUCTION) + b'"just a string"\n'),
    Hostile("squad-broken", SAMPLE, 422, ("not valid JSON", "line 3"), filename="squad.json",
            data=b'{\n  "data": [\n    {"title": "x", "paragraphs": [}\n  ]\n}\n'),
    Hostile("csv-no-label-column", SAMPLE, 422, ("label",), data=b"text\nhello\nworld\n"),
    Hostile("csv-unclosed-quote", SAMPLE, 422, ("row 2", "never closed"),
            data=b'text,label\n"hello,a\nworld,b\n'),
    Hostile("csv-empty-label", SAMPLE, 422, ("row 3",),
            data=b"text,label\nhello,a\nworld,\n"),
    Hostile("csv-header-only", SAMPLE, 422, ("header but no data rows",), data=b"text,label\n"),
    Hostile("utf16le-without-bom", SAMPLE, 422, ("NUL byte", "UTF-16"),
            data=GOOD_CSV_TEXT.encode("utf-16-le")),
    Hostile("utf16be-without-bom", SAMPLE, 422, ("NUL byte", "UTF-16"),
            data=GOOD_CSV_TEXT.encode("utf-16-be")),
    Hostile("utf32-without-bom", SAMPLE, 422, ("NUL byte",),
            data=GOOD_CSV_TEXT.encode("utf-32-le")),
    Hostile("nul-byte-in-utf8", SAMPLE, 422, ("line 3", "NUL byte (byte"),
            data=b"text,label\nhello,a\nwor\x00ld,b\n"),
    Hostile("utf8-with-one-latin1-byte", SAMPLE, 422, ("line 3", "mixed encodings"),
            data="text,label\ncafé ok,a\n".encode() + b"na\xefve,b\n"),
    Hostile("windows-1252-quotes", SAMPLE, 422, ("line 2", "not plain Latin-1"),
            data=b"text,label\n\x93quoted\x94,a\n"),
    Hostile("utf16-bom-odd-bytes", SAMPLE, 422, ("byte-order mark", "not valid UTF-16"),
            data=codecs.BOM_UTF16_LE + "text,label\n".encode("utf-16-le") + b"\x00\xd8"),
    Hostile("terminal-control-codes", SAMPLE, 422, ("control characters",),
            data=b"text,label\n" + b"\x1b[31mred\x1b[0m,a\n" * 50),
    Hostile("ten-mb-single-line", SAMPLE, 422, ("line 2", "the limit is 20,000 per line"),
            data=b"text,label\n" + b"x" * (10 * 1024 * 1024) + b",a\n"),
    Hostile("over-max-rows", SAMPLE, 422, ("more than 50 rows", "the limit is 50"),
            data=GOOD_CSV_TEXT.encode(), env={"MAX_ROWS": "50"}),
    Hostile("over-max-bytes", SAMPLE, 413, ("the limit is 1000 bytes",),
            data=GOOD_CSV_TEXT.encode(), env={"MAX_UPLOAD_BYTES": "1000"}),
    Hostile("zip-renamed-jsonl", SAMPLE, 422, ("ZIP archive",), filename="s.jsonl",
            data=zipped()),
    Hostile("gzip-renamed-csv", SAMPLE, 422, ("gzip-compressed",),
            data=gzip.compress(GOOD_CSV_TEXT.encode())),
    Hostile("pdf-renamed-csv", SAMPLE, 422, ("PDF document",),
            data=b"%PDF-1.7\n1 0 obj <<>> endobj\n%%EOF\n"),
    Hostile("png-renamed-jsonl", SAMPLE, 422, ("PNG image",), filename="s.jsonl",
            data=b"\x89PNG\r\n\x1a\n" + b"\x00" * 64),
    Hostile("xlsx-renamed-csv", SAMPLE, 422, ("ZIP archive", "Excel"), data=zipped()),
    Hostile("elf-renamed-csv", SAMPLE, 422, ("executable",), data=b"\x7fELF\x02\x01\x01" * 10),
    Hostile("bzip2-renamed-csv", SAMPLE, 422, ("bzip2",), data=b"BZh91AY&SY" + b"\x01" * 40),
    Hostile("empty-file", SAMPLE, 422, ("empty",), data=b""),
    Hostile("whitespace-only", SAMPLE, 422, ("only whitespace",), data=b"  \n\t\n \n"),
    Hostile("random-binary", SAMPLE, 422, ("NUL byte",), data=bytes(range(256)) * 8),
    Hostile("unknown-format-choice", SAMPLE, 422, ("Unknown format", "xml"),
            data=GOOD_CSV_TEXT.encode(), fields={"format": "xml"}),
    Hostile("unknown-task-choice", SAMPLE, 422, ("Unknown task",),
            data=GOOD_CSV_TEXT.encode(), fields={"task": "mind_reading"}),
    Hostile("format-choice-xss", SAMPLE, 422, ("Unknown format",),
            data=GOOD_CSV_TEXT.encode(), fields={"format": XSS}),
    Hostile("forced-format-mismatch", SAMPLE, 422, ("line 1",), filename="s.jsonl",
            data=jsonl({"question": "q?", "answer": "a"}), fields={"format": "instruction_jsonl"}),
    # Accepted: decoded or named safely.
    Hostile("latin1-csv", SAMPLE, 303, data=("text,label\n" + GOOD_ROWS.replace("message",
            "café")).encode("latin-1")),
    Hostile("utf8-bom-csv", SAMPLE, 303, data=codecs.BOM_UTF8 + GOOD_CSV_TEXT.encode()),
    Hostile("crlf-csv", SAMPLE, 303, data=GOOD_CSV_TEXT.replace("\n", "\r\n").encode()),
    Hostile("path-traversal-name", SAMPLE, 303, data=GOOD_CSV_TEXT.encode(),
            filename="../../etc/passwd.csv", stored_name="passwd.csv"),
    Hostile("windows-traversal-name", SAMPLE, 303, data=GOOD_CSV_TEXT.encode(),
            filename="..\\..\\Windows\\System32\\evil.csv", stored_name="evil.csv"),
    Hostile("absolute-path-name", SAMPLE, 303, data=GOOD_CSV_TEXT.encode(),
            filename="/etc/passwd", stored_name="passwd"),
    Hostile("thousand-char-name", SAMPLE, 303, data=GOOD_CSV_TEXT.encode(),
            filename="a" * 996 + ".csv", stored_name="a" * 255),
    Hostile("xss-file-name", SAMPLE, 303, data=GOOD_CSV_TEXT.encode(),
            filename=f"{IMG_XSS}.csv", stored_name=f"{IMG_XSS}.csv", escaped=IMG_XSS,
            shown_on="/assessments/{aid}/steps/data"),
    Hostile("script-file-name", SAMPLE, 303, data=GOOD_CSV_TEXT.encode(),
            filename=f"{XSS}.csv", stored_name="script>.csv"),  # '/' ends the path part
]

# --- RAG documents -----------------------------------------------------------------------

DOCS = [
    Hostile("doc-unsupported-type", DOCUMENTS, 422, ("report.docx", "unsupported file type"),
            data=b"hello", filename="report.docx"),
    Hostile("doc-zip-renamed-txt", DOCUMENTS, 422, ("notes.txt", "ZIP archive"),
            data=zipped(), filename="notes.txt"),
    Hostile("doc-fake-pdf", DOCUMENTS, 422, ("manual.pdf", "not a PDF file"),
            data=b"just text", filename="manual.pdf"),
    Hostile("doc-empty", DOCUMENTS, 422, ("faq.txt", "empty"), data=b"", filename="faq.txt"),
    Hostile("doc-nul-bytes", DOCUMENTS, 422, ("faq.md", "NUL byte"),
            data=b"# FAQ\n\x00\x00\x00", filename="faq.md"),
    Hostile("doc-over-max-bytes", DOCUMENTS, 422, ("big.txt", "too large"),
            data=b"x" * 2000, filename="big.txt", env={"MAX_UPLOAD_BYTES": "1000"}),
    Hostile("doc-over-storage-quota", DOCUMENTS, 413,
            ("This upload (2.3 KB)", "storage quota of 2 KB", "USER_STORAGE_QUOTA_BYTES"),
            data=b"Refunds take five days.\n" * 100, filename="faq.txt",
            env={"USER_STORAGE_QUOTA_BYTES": "2048"},
            fixed="no per-user quota: app/assessments/service.py"),
    Hostile("doc-over-document-cap", DOCUMENTS, 422, ("maximum number of documents",),
            data=b"Refunds take five days.", filename="faq.txt", env={"MAX_DOCUMENTS": "0"}),
    Hostile("doc-traversal-name", DOCUMENTS, 303, data=b"Refunds take five days.",
            filename="../../../../tmp/owned.txt", stored_name="owned.txt"),
]

# --- wizard steps ------------------------------------------------------------------------

MEGABYTE = "x" * 1_000_000  # under Starlette's 1 MiB per-field limit: reaches validation
TWO_MEGABYTES = "x" * 2_000_000  # over the 1 MiB request cap: refused while it is read

STEPS = [
    Hostile("title-1mb", step("use_case"), 422, ("Keep it under 200 characters",),
            fields={"title": MEGABYTE, **USE_CASE_OK}),
    Hostile("use-case-1mb", step("use_case"), 422, ("Keep it under 5,000 characters",),
            fields={"title": "ok", "use_case": MEGABYTE, "task_type": "classification"}),
    Hostile("task-type-unknown", step("use_case"), 422, ("task_type-error", "Choose one"),
            fields={"title": "ok", "use_case": "x", "task_type": "quantum"}),
    Hostile("task-type-xss", step("use_case"), 422, ("task_type-error",),
            fields={"title": "ok", "use_case": "x", "task_type": XSS}),
    Hostile("title-nul", step("use_case"), 422, ("title-error", "NUL"),
            fields={"title": "bad\x00title", **USE_CASE_OK},
            fixed="stored as-is (PostgreSQL refuses NUL in text): app/assessments/wizard.py"),
    Hostile("title-2mb", step("use_case"), 413, ("Content Too Large", "at most 1 MB"),
            fields={"title": TWO_MEGABYTES, **USE_CASE_OK},
            fixed="no cap on page bodies: max_body_size on the app (app/main.py)"),
    Hostile("title-xss-echoed-on-error", step("use_case"), 422, ("task_type-error",),
            fields={"title": XSS, "use_case": XSS, "task_type": "nope"}),
    Hostile("title-xss-saved", step("use_case"), 303, fields={"title": XSS, **USE_CASE_OK},
            escaped=XSS, shown_on="/assessments/{aid}/steps/review"),
    Hostile("prompt-tokens-negative", step("problems"), 422, ("Must be at least 0",),
            fields={"prompt_tokens_today": "-5"}),
    Hostile("prompt-tokens-huge", step("problems"), 422, ("Must be at most 1,000,000.",),
            fields={"prompt_tokens_today": "1" + "0" * 30},
            fixed="said 'at most 1e+06': number formatting in app/assessments/wizard.py"),
    Hostile("prompt-tokens-1e309", step("problems"), 422, ("Enter a whole number",),
            fields={"prompt_tokens_today": "1e309"}),
    Hostile("prompt-tokens-4000-digits", step("problems"), 422, ("prompt_tokens_today-error",),
            fields={"prompt_tokens_today": "9" * 4000}),
    Hostile("failure-mode-unknown", step("problems"), 422, ("failure_modes-error", "Choose one"),
            fields={"failure_modes": ["missing_facts", "telepathy"]}),
    Hostile("volatility-unknown", step("knowledge"), 422, ("volatility-error", "Choose one"),
            fields={"volatility": "hourly", "has_documents": "no"}),
    Hostile("yes-no-maybe", step("knowledge"), 422, ("needs_citations-error", "yes or no"),
            fields={"volatility": "static", "needs_citations": "maybe"}),
    Hostile("examples-negative", step("data"), 422, ("Must be at least 0",),
            fields={"examples_available": "-1"}),
    Hostile("examples-arabic-digits", step("data"), 422, ("Enter a whole number",),
            fields={"examples_available": "١٢٣"}),
    Hostile("examples-float", step("data"), 422, ("Enter a whole number",),
            fields={"examples_available": "12.5"}),
    Hostile("budget-nan", step("resources"), 422, ("budget_one_off_usd-error", "Enter a number"),
            fields={**RESOURCES_OK, "budget_one_off_usd": "nan"},
            fixed="'Must be at most 1e+09' for NaN: allow_inf_nan=False, assessments/schemas.py"),
    Hostile("budget-infinity", step("resources"), 422, ("Enter a number",),
            fields={**RESOURCES_OK, "budget_monthly_usd": "-inf"},
            fixed="'Must be at least 0' for -inf: allow_inf_nan=False, assessments/schemas.py"),
    Hostile("budget-negative", step("resources"), 422, ("Must be at least 0",),
            fields={**RESOURCES_OK, "budget_one_off_usd": "-100"}),
    Hostile("budget-1e308", step("resources"), 422, ("Must be at most",),
            fields={**RESOURCES_OK, "budget_one_off_usd": "1e308"}),
    Hostile("gpu-unknown", step("resources"), 422, ("gpu_access-error", "Choose one"),
            fields={**RESOURCES_OK, "gpu_access": "quantum"}),
    Hostile("team-skill-unknown", step("resources"), 422, ("team_skills-error",),
            fields={**RESOURCES_OK, "team_skills": ["python", "wizardry"]}),
    Hostile("latency-zero", step("traffic"), 422, ("Must be at least 50",),
            fields={**TRAFFIC_OK, "latency_target_ms": "0"}),
    Hostile("model-size-zero", step("traffic"), 422, ("Must be more than 0",),
            fields={**TRAFFIC_OK, "target_model_size_b": "0"}),
    Hostile("model-size-nan", step("traffic"), 422, ("target_model_size_b-error", "Enter a number"),
            fields={**TRAFFIC_OK, "target_model_size_b": "NaN"},
            fixed="NaN reported as a bound: allow_inf_nan=False, assessments/schemas.py"),
    Hostile("min-difference-over-50", step("traffic"), 422, ("Must be at most 50",),
            fields={**TRAFFIC_OK, "min_difference_points": "50.5"}),
    Hostile("min-difference-nan", step("traffic"), 422,
            ("min_difference_points-error", "Enter a number"),
            fields={**TRAFFIC_OK, "min_difference_points": "nan"}),
    Hostile("min-difference-negative", step("traffic"), 422, ("Must be at least 0",),
            fields={**TRAFFIC_OK, "min_difference_points": "-2"}),
    Hostile("residency-xss", step("traffic"), 422, ("data_residency-error",),
            fields={**TRAFFIC_OK, "data_residency": f'"><img src=x onerror=alert(1)>{XSS}'}),
    Hostile("unknown-step-traversal", step("..%2F..%2Fetc"), 404, ("Not Found",)),
    Hostile("unknown-step-name", step("payment"), 404, ("No such step",)),
]

# --- other forms -------------------------------------------------------------------------

FORMS = [
    Hostile("pilot-size-words", PILOT_FORM, 422, ("max_train", "whole number"),
            fields={"max_train": "many"}),
    Hostile("pilot-size-negative", PILOT_FORM, 422, ("max_train", "whole number"),
            fields={"max_train": "-5"}),
    Hostile("pilot-size-huge", PILOT_FORM, 422, ("max_train", "at most 480"),
            fields={"max_train": "9" * 40}),
    Hostile("pilot-size-4400-digits", PILOT_FORM, 422, ("max_train", "whole number"),
            fields={"max_train": "9" * 4400},
            fixed="500 (int() of > 4,300 digits): app/pilots/routes.py"),
    Hostile("pilot-size-superscript", PILOT_FORM, 422, ("max_train", "whole number"),
            fields={"max_train": "²"},
            fixed="500 ('²'.isdigit() but int('²') fails): app/pilots/routes.py"),
    Hostile("pilot-arm-unknown", PILOT_FORM, 422, ("unknown arm",),
            fields={"max_train": "60", "arms": ["magic"]}),
    Hostile("pilot-arm-xss", PILOT_FORM, 422, ("unknown arm",),
            fields={"max_train": "60", "arms": [XSS]}),
    Hostile("token-name-1mb", TOKEN_FORM, 422, ("under 80 characters",),
            fields={"name": MEGABYTE}),
    Hostile("token-name-nul", TOKEN_FORM, 422, ("printable",), fields={"name": "a\x00b"}),
    Hostile("token-name-blank", TOKEN_FORM, 422, ("Give the token a name",),
            fields={"name": " \t "}),
    Hostile("link-label-1mb", LINK_FORM, 422, ("under 80 characters",),
            fields={"label": MEGABYTE}),
    Hostile("link-label-control", LINK_FORM, 422, ("printable",), fields={"label": "a\x1bb"}),
    Hostile("login-1mb-email", LOGIN, 401, ("Email or password is wrong",),
            fields={"email": MEGABYTE, "password": "x"}),
    Hostile("login-1mb-password", LOGIN, 401, ("Email or password is wrong",),
            fields={"email": "owner@example.com", "password": MEGABYTE}),
    Hostile("login-2mb-password", LOGIN, 413, ("Content Too Large", "at most 1 MB"),
            fields={"email": "owner@example.com", "password": TWO_MEGABYTES}),
    Hostile("login-xss-email", LOGIN, 401, ("Email or password is wrong",),
            fields={"email": XSS, "password": "x"}),
    Hostile("login-non-ascii-csrf", LOGIN, 403, ("Reload the page",),
            fields={"email": "a@b.co", "password": "x", "csrf_token": "é" * 43},
            fixed="500 (compare_digest TypeError on non-ASCII): app/deps.py"),
    Hostile("signup-nul-email", SIGNUP, 422, ("Enter an email address",),
            fields={"email": "a\x00b@example.com", "password": "long enough password"},
            fixed="accepted (PostgreSQL refuses NUL): app/accounts/schemas.py"),
    Hostile("signup-1mb-password", SIGNUP, 422, ("Keep it under 1,024 characters",),
            fields={"email": "new@example.com", "password": MEGABYTE}),
    Hostile("signup-xss-email", SIGNUP, 422, ("Enter an email address",),
            fields={"email": f"{XSS}@x", "password": "long enough password"}),
]

# --- JSON API bodies ---------------------------------------------------------------------

API = [
    Hostile("api-malformed-json", API_ASSESSMENTS, 422, ("json_invalid", "JSON decode error"),
            data=b'{"title": '),
    Hostile("api-duplicate-keys", API_ASSESSMENTS, 422, ("duplicate key 'title'",),
            data=api_body()[:-1] + b', "title": "second"}',
            fixed="silently kept the last value: strict_json_body in app/deps.py"),
    Hostile("api-nan", API_ASSESSMENTS, 422, ("NaN is not a JSON value",),
            data=api_raw(budget_one_off_usd="NaN"),
            fixed="reported as a bound: strict_json_body in app/deps.py"),
    Hostile("api-infinity-literal", API_ASSESSMENTS, 422, ("Infinity is not a JSON value",),
            data=api_raw(budget_monthly_usd="-Infinity")),
    Hostile("api-1e309-int", API_ASSESSMENTS, 422, ("queries_per_day", "finite number"),
            data=api_raw(queries_per_day="1e309")),
    Hostile("api-1e309-float", API_ASSESSMENTS, 422, ("budget_one_off_usd", "finite number"),
            data=api_raw(budget_one_off_usd="1e309")),
    Hostile("api-huge-int", API_ASSESSMENTS, 422, ("examples_available", "less than or equal"),
            data=api_raw(examples_available="1" + "0" * 100)),
    Hostile("api-5000-digit-int", API_ASSESSMENTS, 400, ("error parsing the body",),
            data=api_raw(examples_available="9" * 5000)),
    Hostile("api-negative", API_ASSESSMENTS, 422, ("latency_target_ms", "greater than or equal"),
            data=api_body(latency_target_ms=-1)),
    Hostile("api-missing-fields", API_ASSESSMENTS, 422, ("title", "task_type", "missing"),
            data=b"{}"),
    Hostile("api-missing-one-field", API_ASSESSMENTS, 422, ('"gpu_access"]', "missing"),
            data=without("gpu_access")),
    Hostile("api-wrong-type", API_ASSESSMENTS, 422, ("examples_available", "int_parsing"),
            data=api_body(examples_available="many")),
    Hostile("api-bool-as-object", API_ASSESSMENTS, 422, ("needs_citations", "bool_type"),
            data=api_body(needs_citations={"yes": True})),
    Hostile("api-unknown-enum", API_ASSESSMENTS, 422, ("gpu_access", "enum"),
            data=api_body(gpu_access="quantum")),
    Hostile("api-unknown-list-enum", API_ASSESSMENTS, 422, ("failure_modes", "enum"),
            data=api_body(failure_modes=["missing_facts", "telepathy"])),
    Hostile("api-list-as-string", API_ASSESSMENTS, 422, ("failure_modes", "list_type"),
            data=api_body(failure_modes="missing_facts")),
    Hostile("api-nested-junk", API_ASSESSMENTS, 422, ('"title"]', "string_type"),
            data=api_body(title={"a": [1, {"b": None}, [[["deep"]]]]})),
    Hostile("api-unknown-field", API_ASSESSMENTS, 422, ("colour", "extra_forbidden"),
            data=api_body(colour="blue")),
    Hostile("api-1mb-title", API_ASSESSMENTS, 422, ("title", "at most 200 characters"),
            data=api_body(title="x" * 1_000_000)),
    Hostile("api-nul-title", API_ASSESSMENTS, 422, ("title", "NUL"),
            data=api_body(title="a\x00b"),
            fixed="stored as-is (PostgreSQL refuses NUL in text): app/domain/intake.py"),
    Hostile("api-min-difference-words", API_ASSESSMENTS, 422,
            ("min_difference_points", "float_parsing"),
            data=api_body(min_difference_points="two")),
    Hostile("api-blank-title", API_ASSESSMENTS, 422, ("title", "blank"),
            data=api_body(title="   ")),
    Hostile("api-body-array", API_ASSESSMENTS, 422, ("model_attributes_type",), data=b"[1, 2]"),
    Hostile("api-body-null", API_ASSESSMENTS, 422, ("model_attributes_type",), data=b"null"),
    Hostile("api-body-string", API_ASSESSMENTS, 422, ("model_attributes_type",),
            data=b'"intake"'),
    Hostile("api-empty-body", API_ASSESSMENTS, 422, ("missing",), data=b""),
    Hostile("api-deeply-nested", API_ASSESSMENTS, 400, ("error parsing the body",),
            data=b"[" * 100_000 + b"]" * 100_000),
    Hostile("api-invalid-utf8", API_ASSESSMENTS, 400, ("error parsing the body",),
            data=b'{"title": "\xff\xfe"}'),
    Hostile("api-lone-surrogate", API_ASSESSMENTS, 422, ("title", "unicode"),
            data=api_raw(title='"\\ud800"')),
    Hostile("api-text-plain", API_ASSESSMENTS, 422, ("model_attributes_type",),
            data=api_body(), content_type="text/plain"),
    Hostile("api-form-encoded", API_ASSESSMENTS, 422, ("model_attributes_type",),
            data=b"title=x", content_type="application/x-www-form-urlencoded"),
    Hostile("api-2mb-body", API_ASSESSMENTS, 413, ("Content Too Large",),
            data=api_body(use_case="x" * 2_000_000),
            fixed="no cap on API bodies: max_body_size=1 MiB on the API routers (app/main.py)"),
    Hostile("api-pilot-zero", API_PILOTS, 422, ("max_train", "at least 8"),
            data=b'{"max_train": 0}',
            fixed="0 silently meant 'the cap' (`or`): app/pilots/api.py"),
    Hostile("api-pilot-negative", API_PILOTS, 422, ("max_train", "at least 8"),
            data=b'{"max_train": -1}'),
    Hostile("api-pilot-huge", API_PILOTS, 422, ("max_train", "at most 480"),
            data=b'{"max_train": 1000000000000}'),
    Hostile("api-pilot-1e309", API_PILOTS, 422, ("max_train", "finite number"),
            data=b'{"max_train": 1e309}'),
    Hostile("api-pilot-words", API_PILOTS, 422, ("max_train", "int_parsing"),
            data=b'{"max_train": "ten"}'),
    Hostile("api-pilot-arms-string", API_PILOTS, 422, ("arms", "list_type"),
            data=b'{"arms": "fewshot"}'),
    Hostile("api-pilot-arms-unknown", API_PILOTS, 422, ("unknown arm 'magic'",),
            data=b'{"arms": ["magic"]}'),
    Hostile("api-pilot-arms-empty", API_PILOTS, 422, ("at least one arm",),
            data=b'{"arms": []}'),
    Hostile("api-pilot-arms-junk", API_PILOTS, 422, ("arms", "string_type"),
            data=b'{"arms": [[{"a": 1}], null]}'),
    Hostile("api-pilot-duplicate-keys", API_PILOTS, 422, ("duplicate key 'arms'",),
            data=b'{"arms": ["fewshot"], "arms": ["magic"]}'),
]

# --- the report's what-if (query string) --------------------------------------------------

WHAT_IFS = [
    Hostile("what-if-negative-volume", WHAT_IF, 422, ("(queries_per_day): Must be at least 0",),
            fields={"queries_per_day": "-5"}),
    Hostile("what-if-words-for-volume", WHAT_IF, 422, ("(queries_per_day): Enter a whole number",),
            fields={"queries_per_day": "lots"}),
    Hostile("what-if-volume-4400-digits", WHAT_IF, 422, ("(queries_per_day): Keep it under 40",),
            fields={"queries_per_day": "9" * 4400}),
    Hostile("what-if-volume-superscript", WHAT_IF, 422, ("(queries_per_day): Enter a whole",),
            fields={"queries_per_day": "²"}),
    Hostile("what-if-tokens-1e309", WHAT_IF, 422, ("(prompt_tokens_today): Enter a whole",),
            fields={"prompt_tokens_today": "1e309"}),
    Hostile("what-if-budget-nan", WHAT_IF, 422, ("(budget_monthly_usd): Enter a number",),
            fields={"budget_monthly_usd": "NaN"}),
    Hostile("what-if-budget-huge", WHAT_IF, 422, ("(budget_monthly_usd): Must be at most",),
            fields={"budget_monthly_usd": "1e308"}),
    Hostile("what-if-gpu-unknown", WHAT_IF, 422, ("(gpu_access): Choose one of the options",),
            fields={"gpu_access": "quantum"}),
    Hostile("what-if-volatility-xss", WHAT_IF, 422, ("(volatility): Choose one",),
            fields={"volatility": XSS}),
    Hostile("what-if-runs-zero", WHAT_IF, 422, ("(training_runs): Must be at least 1",),
            fields={"training_runs": "0"}),
    Hostile("what-if-compute-infinity", WHAT_IF, 422, ("(compute_usd_per_hour): Enter a number",),
            fields={"compute_usd_per_hour": "Infinity"}),
    Hostile("what-if-eval-negative", WHAT_IF, 422, ("(eval_usd_per_1k): Must be at least 0",),
            fields={"eval_usd_per_1k": "-0.5"}),
    Hostile("what-if-corpus-nul", WHAT_IF, 422, ("(rag_corpus_tokens): Enter a whole number",),
            fields={"rag_corpus_tokens": "12\x0034"}),
    Hostile("what-if-two-bad-fields", WHAT_IF, 422, ("(queries_per_day)", "(gpu_access)"),
            fields={"queries_per_day": "-1", "gpu_access": "mars", "volatility": "static"}),
    # Accepted: the ends of every range recalculate without storing anything.
    Hostile("what-if-range-ends", WHAT_IF, 200,
            fields={"queries_per_day": "0", "prompt_tokens_today": "1000000",
                    "budget_monthly_usd": "0", "training_runs": "100",
                    "compute_usd_per_hour": "10000", "eval_usd_per_1k": "10000",
                    "rag_corpus_tokens": "0", "unknown": XSS}),
    Hostile("what-if-top-volume", WHAT_IF, 200,
            fields={"queries_per_day": "1000000000", "gpu_access": "managed_api"}),
]

# --- registered models: base URLs the server must not send requests to ----------------------

URL_SECRET = "pw-PathPilotProbe-51c3"
SHARED = {"EGRESS_MODE": "shared"}


def model_body(base_url: str, **changes: Any) -> bytes:
    body = {"name": "m", "kind": "openai_compatible", "base_url": base_url, "model": "m"}
    return json.dumps(body | changes).encode()


def model_form(base_url: str) -> dict[str, str]:
    return {"name": "m", "kind": "openai_compatible", "base_url": base_url, "model": "m",
            "max_concurrency": "4", "api_key": URL_SECRET}


# Every spelling of an address the server never connects to, in every mode.
NEVER = [
    ("metadata", "http://169.254.169.254/latest/meta-data/", "cloud metadata"),
    ("metadata-decimal", "http://2852039166/latest/meta-data/", "four decimal numbers"),
    ("metadata-octal", "http://0251.0376.0251.0376/v1", "four decimal numbers"),
    ("metadata-hex", "http://0xa9fea9fe/v1", "four decimal numbers"),
    ("metadata-dotted-hex", "http://0xa9.0xfe.0xa9.0xfe/v1", "four decimal numbers"),
    ("metadata-short", "http://169.254.43518/v1", "four decimal numbers"),
    ("loopback-short", "http://127.1:8000/v1", "four decimal numbers"),
    ("metadata-trailing-dot", "http://169.254.169.254./v1", "four decimal numbers"),
    ("metadata-mapped-v6", "http://[::ffff:169.254.169.254]/v1", "cloud metadata"),
    ("metadata-mapped-v6-hex", "http://[::ffff:a9fe:a9fe]/v1", "cloud metadata"),
    ("metadata-nat64", "http://[64:ff9b::a9fe:a9fe]/v1", "cloud metadata"),
    ("metadata-aws-v6", "http://[fd00:ec2::254]/v1", "cloud metadata"),
    ("metadata-alibaba", "http://100.100.100.200/v1", "cloud metadata"),
    ("metadata-gcp-name", "http://metadata.google.internal/computeMetadata/v1", "metadata"),
    ("metadata-gcp-name-case", "http://Metadata.Google.Internal./v1", "metadata"),
    ("link-local", "http://169.254.10.1:8000/v1", "link-local"),
    ("link-local-v6", "http://[fe80::1]:8000/v1", "link-local"),
    ("unspecified", "http://0.0.0.0:8000/v1", "unspecified"),
    ("unspecified-v6", "http://[::]:8000/v1", "unspecified"),
    ("multicast", "http://224.0.0.1/v1", "multicast"),
    ("broadcast", "http://255.255.255.255/v1", "broadcast"),
    ("reserved", "http://240.0.0.1/v1", "reserved"),
]
# Shapes that store a credential or let the user choose the path.
SHAPES = [
    ("user-info", f"http://team:{URL_SECRET}@llm.example.test/v1", "user name or password"),
    ("user-only", f"http://{URL_SECRET}@llm.example.test/v1", "user name or password"),
    ("query-key", f"http://llm.example.test/v1?key={URL_SECRET}", "query"),
    ("query-empty", "http://llm.example.test/v1?x=", "query"),
    ("fragment", "http://llm.example.test/v1#", "fragment"),
    ("fragment-path", "http://llm.example.test/admin#/v1", "fragment"),
    ("port-out-of-range", "http://llm.example.test:99999/v1", "not a valid URL"),
    ("space-in-host", "http://llm.exa mple.test/v1", "spaces"),
    ("percent-host", "http://%31%36%39.254.169.254/v1", "host name is not valid"),
]
MODELS = [
    *(Hostile(f"model-api-{name}", API_MODELS, 422, ("base_url", words),
              data=model_body(url), hidden=(URL_SECRET,),
              fixed="registered, then the check answered 500 or read the answer back: "
              "app/integrations/egress.py")
      for name, url, words in NEVER + SHAPES),
    *(Hostile(f"model-form-{name}", MODEL_FORM, 422, ("base_url", words),
              fields=model_form(url), hidden=(URL_SECRET,))
      for name, url, words in NEVER + SHAPES),
    # A shared deployment: private, loopback and internal addresses only when allowlisted.
    Hostile("model-api-shared-loopback", API_MODELS, 422, ("base_url", "ENDPOINT_ALLOWED_HOSTS"),
            data=model_body("http://127.0.0.1:8000/v1"), env=SHARED),
    Hostile("model-api-shared-loopback-v6", API_MODELS, 422, ("base_url", "ENDPOINT_ALLOWED"),
            data=model_body("http://[::1]:8000/v1"), env=SHARED),
    Hostile("model-api-shared-private", API_MODELS, 422, ("base_url", "ENDPOINT_ALLOWED_HOSTS"),
            data=model_body("http://10.0.0.5:8000/v1"), env=SHARED),
    Hostile("model-api-shared-cgnat", API_MODELS, 422, ("base_url", "ENDPOINT_ALLOWED_HOSTS"),
            data=model_body("http://100.64.0.9/v1"), env=SHARED),
    Hostile("model-form-shared-private", MODEL_FORM, 422, ("base_url", "ENDPOINT_ALLOWED_HOSTS"),
            fields=model_form("http://192.168.1.20:8000/v1"), env=SHARED, hidden=(URL_SECRET,)),
    Hostile("model-api-shared-metadata", API_MODELS, 422, ("base_url", "cloud metadata"),
            data=model_body("http://169.254.169.254/v1"),
            env=SHARED | {"ENDPOINT_ALLOWED_HOSTS": "169.254.0.0/16"}),
    # Accepted: the embedded default's local vLLM, and an allowlisted network when shared.
    Hostile("model-api-local-vllm", API_MODELS, 201, data=model_body("http://127.0.0.1:8000/v1")),
    Hostile("model-api-shared-allowlisted", API_MODELS, 201,
            data=model_body("http://10.0.0.5:8000/v1"),
            env=SHARED | {"ENDPOINT_ALLOWED_HOSTS": "10.0.0.0/8"}),
]

# fmt: on


def through_api(case: Hostile) -> Hostile:
    """An upload case sent to the JSON API instead of the wizard's form: the same checks and
    messages (unescaped: JSON, not HTML); a stored upload answers 200 or 201, not 303."""
    sample = case.target == SAMPLE
    stored = 200 if sample else 201
    return dataclasses.replace(
        case,
        id=f"api-upload-{case.id}",
        target=API_SAMPLE if sample else API_DOCUMENTS,
        status=case.status if case.status >= 400 else stored,
        expect=tuple(html.unescape(words) for words in case.expect),
    )


UPLOADS_API = [through_api(case) for case in [*SAMPLES, *DOCS]]

CORPUS: list[Hostile] = [*SAMPLES, *DOCS, *UPLOADS_API, *STEPS, *FORMS, *API, *WHAT_IFS, *MODELS]
