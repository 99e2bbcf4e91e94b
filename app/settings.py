"""One settings object, read from the environment (prefix-free names, as in the README)."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
import re
import secrets
import time
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# Price per 1M tokens (input, output) in USD. Used for cost per 1k queries and the
# break-even estimate; override with PRICE_TABLE='{"name": [in, out], ...}'.
DEFAULT_PRICE_TABLE: dict[str, tuple[float, float]] = {
    "hosted-base": (0.50, 1.50),
    "hosted-fine-tuned": (1.50, 4.50),
    "self-hosted-gpu": (0.20, 0.20),
}


_HOST_NAME = re.compile(r"[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*")


class Settings(BaseSettings):
    # hide_input_in_errors: several settings are secrets (SECRET_KEY, ENCRYPTION_KEYS, API keys,
    # a DATABASE_URL's password); a validation error names the variable, never its value.
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", hide_input_in_errors=True)

    var_dir: Path = Field(PROJECT_ROOT / "var", description="Where files, models and the DB live")
    database_url: str = Field("", description="SQLAlchemy URL; default SQLite under var/")
    broker_url: str = Field("", description="Celery broker; default SQLAlchemy transport on SQLite")
    secret_key: str = Field("", description="Signs session cookies; generated into var/ when unset")
    encryption_keys: SecretStr = Field(
        SecretStr(""),
        description="Fernet keys for users' endpoint API keys at rest, comma-separated: the "
        "first encrypts, all decrypt (README: rotating keys); unset, a key derived from "
        "SECRET_KEY encrypts",
    )

    llm_model: str = Field(
        "", description="Local HF model dir or hub id; default converted SmolLM2"
    )
    embedder_model: str = Field("", description="sentence-transformers model; default MiniLM wheel")

    max_upload_bytes: int = Field(20 * 1024 * 1024, description="Largest accepted upload")
    max_rows: int = Field(50_000, description="Most rows accepted in a sample")
    max_line_chars: int = Field(20_000, description="Longest accepted line in a sample")
    max_documents: int = Field(200, description="Most documents in a RAG corpus upload")
    # Every other request is capped at app.deps.API_MAX_BODY_BYTES (1 MiB); Starlette would
    # otherwise spool a body of any size to disk before a route could refuse it.
    max_upload_request_bytes: int = Field(
        100 * 1024 * 1024,
        ge=1024,
        description="Largest upload request in all (a sample, or one batch of documents)",
    )
    user_storage_quota_bytes: int = Field(
        1024 * 1024 * 1024, ge=0, description="Most bytes of uploaded files one user keeps"
    )
    local_model_roots: str = Field(
        "",
        description="Comma-separated directories that registered local models must be under "
        "(default: var/models); LLM_MODEL's own directory is always allowed",
    )

    pilot_max_train: int = Field(480, description="Cap on training examples in a pilot")
    pilot_max_test: int = Field(120, description="Cap on test examples in a pilot")
    pilot_max_train_minutes: float = Field(6.0, description="Cap on fine-tuning wall time per arm")
    pilot_learning_curve: bool = Field(
        False,
        description="Default of the pilot option that trains the QLoRA arm on 1/4 and 1/2 of "
        "the split for a learning curve (docs/pilots.md: measured cost)",
    )

    pilot_stalled_after_s: float = Field(
        60.0,
        description="A running pilot silent this long is treated as orphaned (its worker "
        "beats every few seconds while it runs)",
    )
    pilot_max_attempts: int = Field(2, description="Deliveries of one pilot before it fails")
    # The queues are first come, first served and shared by every user: without a cap one
    # user's thirty pilots hold the GPU queue for everyone (app.pilots.service.check_caps).
    max_queued_pilots_per_user: int = Field(
        3,
        ge=1,
        description="Most pilots one user may have waiting for a worker (status queued); "
        "starting another is refused with 429",
    )
    max_running_pilots_per_user: int = Field(
        2,
        ge=1,
        description="Most pilots one user may have started by a worker and not finished "
        "(status running, arms waiting on the GPU queue included); starting another is "
        "refused with 429",
    )
    worker_queues: str = Field(
        "cpu,gpu",
        description="Queues a worker takes, comma-separated: cpu (pilots that do not train) "
        "and gpu (pilots with a fine-tuning arm)",
    )
    # Arms are released to a queue a few at a time, the next one chosen when a slot frees
    # (app.pilots.dispatch): quick arms first, then the user with the fewest arms in flight.
    queue_slots_cpu: int = Field(
        2,
        ge=1,
        description="Most arms in flight on the cpu queue (sent and not finished): the "
        "concurrency of the workers that take it, all together",
    )
    queue_slots_gpu: int = Field(
        1,
        ge=1,
        description="Most arms in flight on the gpu queue: the concurrency of the workers "
        "that take it, all together",
    )
    queues_share_a_worker: bool = Field(
        True,
        description="One worker takes both queues (the embedded default): a training arm is "
        "then held back while a quicker arm waits; false when cpu and gpu have workers of "
        "their own",
    )
    pilot_sweep_interval_s: float = Field(
        60.0, description="How often Celery beat sweeps for stalled pilots"
    )

    # The deployment's shared OpenAI-compatible endpoint (docker-compose's vLLM service): the
    # prompting arms of a pilot that chose no registered model ask it.
    default_endpoint_url: str = Field("", description="API root, e.g. http://vllm:8000/v1")
    default_endpoint_model: str = Field("", description="The model name the endpoint serves")
    default_endpoint_api_key: str = Field("", description="Bearer token for it, if any")
    default_endpoint_size_b: float | None = Field(
        None, description="Its size in billions of parameters (the report's proxy rule)"
    )
    default_endpoint_is_deployment: bool = Field(
        False, description="It serves the model the team will deploy"
    )

    # Requests the server sends on a user's behalf (app.integrations.egress, README "Security").
    egress_mode: Literal["embedded", "shared"] = Field(
        "embedded",
        description="embedded: one user on their own machine, who may register endpoints on "
        "it and its network (a local vLLM); shared: a server for a team, where users' "
        "endpoints may not reach private, loopback or internal addresses unless allowlisted",
    )
    endpoint_allowed_hosts: str = Field(
        "",
        description="Shared mode: comma-separated host names, addresses and CIDRs on the "
        "internal network that users' endpoints may reach (e.g. vllm.internal,10.20.0.0/16)",
    )
    endpoint_max_answer_bytes: int = Field(
        4 * 1024 * 1024, ge=64 * 1024, description="Largest answer read from an endpoint"
    )
    endpoint_request_deadline_s: float = Field(
        300.0, gt=0, description="Most time one request to an endpoint takes, in all"
    )
    endpoint_max_concurrency_per_host: int = Field(
        16,
        ge=1,
        le=1024,
        description="Most requests in flight at once to one endpoint host from one process, "
        "shared by every pilot and model that names it (each model's own concurrency is "
        "bounded by this too)",
    )

    # Share links (app.sharing): anonymous downloads and what each link keeps on disk.
    share_downloads_per_hour: int = Field(
        20,
        ge=1,
        description="Most downloads (PDF or bundle) one client address makes through one "
        "share link in any hour; more are refused with 429 and Retry-After",
    )
    share_link_max_days: int = Field(
        365, ge=1, description="Longest expiry an owner may give a share link, in days"
    )

    price_table: dict[str, tuple[float, float]] = Field(
        default_factory=lambda: dict(DEFAULT_PRICE_TABLE)
    )
    web_page_threads: int = Field(
        4,
        ge=1,
        le=64,
        description="Threads per web process for the most-read pages (report, pilot, live panel)",
    )
    secure_cookies: bool = Field(False, description="Mark the session cookie Secure (HTTPS)")
    celery_always_eager: bool = Field(False, description="Run tasks in-process (tests only)")

    @field_validator("endpoint_allowed_hosts")
    @classmethod
    def _hosts_and_cidrs(cls, value: str) -> str:
        # Checked here so a typo stops the server at start, not the first request; the entries
        # are parsed for use by app.integrations.egress.
        for entry in (e.strip() for e in value.split(",")):
            if not entry:
                continue
            try:
                ipaddress.ip_network(entry.strip("[]"), strict=False)
            except ValueError:
                if not _HOST_NAME.fullmatch(entry.lower().rstrip(".")):
                    raise ValueError(
                        f"ENDPOINT_ALLOWED_HOSTS: {entry!r} is neither a host name nor an "
                        "address or CIDR"
                    ) from None
        return value

    @field_validator("encryption_keys")
    @classmethod
    def _fernet_keys(cls, value: SecretStr) -> SecretStr:
        # Checked at start, so a mistyped key stops the server instead of failing the first
        # model registered; the message names the key's position, never its value.
        for position, key in enumerate(_split_keys(value.get_secret_value()), start=1):
            try:
                raw = base64.urlsafe_b64decode(key.encode("ascii"))
            except (binascii.Error, UnicodeEncodeError, ValueError):
                raw = b""
            if len(raw) != 32:
                raise ValueError(
                    f"ENCRYPTION_KEYS: key {position} is not a Fernet key (32 url-safe "
                    "base64-encoded bytes, as Fernet.generate_key() makes)"
                )
        return value

    @model_validator(mode="after")
    def _endpoint_needs_a_model(self) -> Settings:
        if self.default_endpoint_url and not self.default_endpoint_model.strip():
            raise ValueError("DEFAULT_ENDPOINT_MODEL: name the model DEFAULT_ENDPOINT_URL serves")
        return self

    @model_validator(mode="after")
    def _one_file_fits_a_request(self) -> Settings:
        # Otherwise a sample within MAX_UPLOAD_BYTES could never arrive: said at start-up.
        if self.max_upload_request_bytes < self.max_upload_bytes:
            raise ValueError(
                "MAX_UPLOAD_REQUEST_BYTES must be at least MAX_UPLOAD_BYTES "
                f"({self.max_upload_bytes})"
            )
        return self

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.var_dir / 'pathpilot.db'}"

    @property
    def resolved_broker_url(self) -> str:
        return self.broker_url or f"sqla+sqlite:///{self.var_dir / 'broker.db'}"

    @property
    def uploads_dir(self) -> Path:
        return self.var_dir / "uploads"

    @property
    def models_dir(self) -> Path:
        return self.var_dir / "models"

    @property
    def resolved_local_model_roots(self) -> tuple[Path, ...]:
        """The directories registered local models must be under, symlinks resolved. The
        directory of an absolute LLM_MODEL is one of them: the operator chose it, and the
        worker loads it for every pilot anyway."""
        entries = [e.strip() for e in self.local_model_roots.split(",") if e.strip()]
        roots = [Path(e) for e in entries] or [self.models_dir]
        if self.llm_model and Path(self.llm_model).is_absolute():
            roots.append(Path(self.llm_model))
        return tuple(dict.fromkeys(root.resolve() for root in roots))

    @property
    def adapters_dir(self) -> Path:
        return self.var_dir / "adapters"

    @property
    def share_bundles_dir(self) -> Path:
        """Each share link's hand-off bundle, built once and kept until the link goes."""
        return self.var_dir / "share-bundles"

    def resolved_secret_key(self) -> str:
        """The configured key, else one generated once into var/ (never committed)."""
        if self.secret_key:
            return self.secret_key
        self.var_dir.mkdir(parents=True, exist_ok=True)
        return _key_file(self.var_dir / "secret_key")

    def resolved_encryption_keys(self) -> list[str]:
        """ENCRYPTION_KEYS as a list, first (the encrypting key) first; empty when unset."""
        return _split_keys(self.encryption_keys.get_secret_value())


def _split_keys(value: str) -> list[str]:
    return [key.strip() for key in value.split(",") if key.strip()]


# How long a process waits for the process that created the key file to write the key.
KEY_FILE_WAIT_S = 5.0


def _key_file(path: Path) -> str:
    """The key in `path`, created once with a new random key if absent.

    Created exclusively (O_EXCL) and with mode 0600 from the start: never readable by others,
    not even for the moment between a write and a chmod, and of two processes starting at once
    (a web server and a worker) exactly one writes the key and the other reads that same key,
    instead of each signing with its own.
    """
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        # Another process created it; it may not have written the key yet.
        deadline = time.monotonic() + KEY_FILE_WAIT_S
        while True:
            key = path.read_text().strip()
            if key:
                return key
            if time.monotonic() >= deadline:
                raise RuntimeError(
                    f"{path} is empty: the process creating it stopped before writing the key. "
                    "Delete the file and start again."
                ) from None
            time.sleep(0.02)
    key = secrets.token_urlsafe(48)
    with os.fdopen(fd, "w") as handle:
        handle.write(key)
        handle.flush()
        os.fsync(handle.fileno())
    return key


@lru_cache
def get_settings() -> Settings:
    settings = Settings()
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    return settings
