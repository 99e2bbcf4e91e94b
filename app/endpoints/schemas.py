"""What a user sends to register a model; every bound is one a user would recognise."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from app.endpoints.models import ModelKind
from app.integrations.egress import url_problem


class ModelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=80, description="Your name for this model")
    kind: ModelKind = Field(ModelKind.openai_compatible, description="Where the model runs")
    base_url: str | None = Field(
        None,
        max_length=500,
        description="API root of an OpenAI-compatible server, e.g. …/v1: no user:password, "
        "query or fragment (the key goes in api_key); addresses this server never connects "
        "to (link-local, cloud metadata, ...) are refused",
    )
    model: str = Field(
        min_length=1,
        max_length=300,
        description="The served model name (endpoint), or the full path of the model "
        "directory (local), under the server's model folders (LOCAL_MODEL_ROOTS)",
    )
    api_key: str | None = Field(
        None, max_length=1000, description="Sent as a bearer token; stored encrypted, never shown"
    )
    input_usd_per_million: float | None = Field(None, ge=0, le=10_000, allow_inf_nan=False)
    output_usd_per_million: float | None = Field(None, ge=0, le=10_000, allow_inf_nan=False)
    max_concurrency: int = Field(4, ge=1, le=64, description="Requests in flight at once")
    context_window: int | None = Field(None, ge=128, le=10_000_000)
    parameters_b: float | None = Field(
        None, gt=0, le=5_000, allow_inf_nan=False, description="Size, billions of parameters"
    )
    deployment: bool = Field(False, description="This is the model you will deploy")

    @field_validator("name", "base_url", "model", "api_key")
    @classmethod
    def _no_nul(cls, value: str | None) -> str | None:
        # PostgreSQL cannot store NUL in text: refused here, not as a database error.
        if value is not None and "\x00" in value:
            raise ValueError("must not contain NUL characters")
        return value

    @model_validator(mode="after")
    def _endpoint_needs_a_url(self) -> ModelIn:
        self.name = self.name.strip()
        self.model = self.model.strip()
        if not self.name or not self.model:
            raise ValueError("name and model must not be blank")
        if self.api_key is not None:
            self.api_key = self.api_key.strip() or None
        if self.kind is ModelKind.local:
            if self.base_url:
                raise ValueError("base_url: a local model has no base URL")
            return self
        url = (self.base_url or "").strip().rstrip("/")
        # Refused here, before anything is stored: the message never repeats the URL (it may
        # hold a password). The deployment's own rules (shared mode) follow in the service.
        problem = url_problem(url)
        if problem is not None:
            raise ValueError(f"base_url: {problem}")
        self.base_url = url
        return self
