"""vLLM's runtime LoRA calls: load a PEFT adapter directory as a served model, and drop it."""

from __future__ import annotations

import os
from dataclasses import replace

from app.integrations.openai_compatible.client import OpenAICompatibleClient
from app.integrations.openai_compatible.exceptions import (
    EndpointNotFound,
    EndpointRejected,
    EndpointServerError,
)
from app.integrations.openai_compatible.schemas import EndpointSpec, shown_url


def load_lora_adapter(spec: EndpointSpec, name: str, path: str | os.PathLike[str]) -> None:
    """Ask a vLLM server to load a PEFT adapter directory at runtime, served as model `name`.

    `path` is read by the server, on its own machine. Needs a server started with
    `--enable-lora` and VLLM_ALLOW_RUNTIME_LORA_UPDATING=True."""
    _lora_call(
        spec,
        "load_lora_adapter",
        {"lora_name": name, "lora_path": os.fspath(path)},
        f"cannot load LoRA adapter {name!r} from {os.fspath(path)}",
        " (the path is read on the server's machine and must hold a PEFT adapter: "
        "adapter_config.json and the weights)",
    )


def unload_lora_adapter(spec: EndpointSpec, name: str) -> None:
    """Ask a vLLM server to drop a runtime-loaded adapter; it leaves `/models`."""
    _lora_call(spec, "unload_lora_adapter", {"lora_name": name}, f"cannot unload {name!r}", "")


def _lora_call(
    spec: EndpointSpec, path: str, body: dict[str, object], failing: str, hint: str
) -> None:
    # Not retried: a second load after a lost answer would fail with "already loaded".
    url = spec.url(path)
    with OpenAICompatibleClient(replace(spec, max_retries=0)) as client:
        try:
            client._send("POST", url, body, not_found="")
        except EndpointNotFound as error:
            if error.detail in (None, "Not Found"):  # the route itself is missing
                raise EndpointNotFound(
                    f"{failing}: {shown_url(url)} does not exist; start vLLM with --enable-lora "
                    "and VLLM_ALLOW_RUNTIME_LORA_UPDATING=True (and check the base URL)",
                    url=url,
                    status=404,
                    detail=error.detail,
                ) from error
            raise EndpointNotFound(
                f"{failing}: {error.detail}{hint}",
                url=url,
                status=404,
                detail=error.detail,
            ) from error
        except EndpointRejected as error:
            raise EndpointRejected(
                f"{failing}: {error.detail or error}", url=url, status=error.status
            ) from error
        except EndpointServerError as error:
            # vLLM answers 500 for an adapter it cannot take (a rank above --max-lora-rank,
            # layers its base lacks): say what was being loaded and the server's own words.
            raise EndpointServerError(
                f"{failing}: {error.detail or error}",
                url=url,
                status=error.status,
                detail=error.detail,
            ) from error
