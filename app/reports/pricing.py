"""Price assumptions the report states next to the figures it derives from them.

Training cost = training seconds × an hourly price. These are stated assumptions, printed next
to the figure, not quotes: a typical on-demand price for one data-centre GPU, and for the few
CPU cores a pilot uses on a general-purpose cloud VM.
"""

from __future__ import annotations

from typing import Final

from app.domain.formatting import format_usd

GPU_USD_PER_HOUR: Final = 2.00
CPU_USD_PER_HOUR: Final = 0.10


def ran_on_gpu(device: str | None) -> bool:
    text = (device or "").lower()
    return "cuda" in text or "gpu" in text


def training_usd_per_hour(device: str | None) -> float:
    return GPU_USD_PER_HOUR if ran_on_gpu(device) else CPU_USD_PER_HOUR


def training_price_note(device: str | None) -> str:
    gpu = ran_on_gpu(device)
    return (
        f"Training cost = training time × {format_usd(training_usd_per_hour(device))} per hour "
        f"of {'GPU' if gpu else 'CPU'} time (an assumed cloud price, not a quote)."
    )
