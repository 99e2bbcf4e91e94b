"""The published evidence the rubric rests on, as data.

Each entry records only the claim PathPilot takes from the source (``finding``), so the report
can show a reader exactly which claim a factor leans on. Numbers the sources do not give are
deliberately absent.
"""

from __future__ import annotations

from typing import Final

from pydantic import BaseModel, ConfigDict


class Citation(BaseModel):
    """One source: a stable id for factors to point at, and what to print in the report."""

    model_config = ConfigDict(frozen=True)

    id: str
    label: str  # short, for a table cell: "Ovadia et al. 2023"
    reference: str  # full bibliographic reference
    url: str | None  # None where the source is a summary with no single public address
    finding: str  # the claim the rubric takes from the source


OPENAI_ACCURACY = "openai-accuracy"
OVADIA_2023 = "ovadia-2023"
SOUDANI_2024 = "soudani-2024"
BALAGUER_2024 = "balaguer-2024"
LLAMA_FACTORY_MEMORY = "llama-factory-memory"
QLORA_2023 = "dettmers-2023-qlora"
LORA_2021 = "hu-2021-lora"
DATA_SIZE_GUIDANCE = "data-size-guidance"
COST_GUIDANCE = "cost-guidance"

_ALL: Final[tuple[Citation, ...]] = (
    Citation(
        id=OPENAI_ACCURACY,
        label="OpenAI, Optimizing LLM accuracy",
        reference='OpenAI. "Optimizing LLM Accuracy". OpenAI platform documentation guide.',
        url="https://platform.openai.com/docs/guides/optimizing-llm-accuracy",
        finding=(
            "Start from a prompt baseline; knowledge gaps, fresh or citable facts call for "
            "retrieval (RAG); behaviour, format, tone and long prompts call for fine-tuning; "
            "domain errors call for both."
        ),
    ),
    Citation(
        id=OVADIA_2023,
        label="Ovadia et al. 2023",
        reference=(
            "Ovadia, O., Brief, M., Mishaeli, M., Elisha, O. (2023). Fine-Tuning or Retrieval? "
            "Comparing Knowledge Injection in LLMs. arXiv:2312.05934."
        ),
        url="https://arxiv.org/abs/2312.05934",
        finding=(
            "RAG beat unsupervised fine-tuning for knowledge injection (e.g. 0.875 vs ~0.50)."
        ),
    ),
    Citation(
        id=SOUDANI_2024,
        label="Soudani et al. 2024",
        reference=(
            "Soudani, H., Kanoulas, E., Hasibi, F. (2024). Fine Tuning vs. Retrieval Augmented "
            "Generation for Less Popular Knowledge. arXiv:2403.01432."
        ),
        url="https://arxiv.org/abs/2403.01432",
        finding="RAG wins on rare (less popular) entities.",
    ),
    Citation(
        id=BALAGUER_2024,
        label="Balaguer et al. 2024",
        reference=(
            "Balaguer, A. et al. (2024). RAG vs Fine-tuning: Pipelines, Tradeoffs, and a Case "
            "Study on Agriculture. arXiv:2401.08406."
        ),
        url="https://arxiv.org/abs/2401.08406",
        finding="Fine-tuning added +6 points and RAG +5 more: the gains stack.",
    ),
    Citation(
        id=LLAMA_FACTORY_MEMORY,
        label="LLaMA-Factory README",
        reference="hiyouga/LLaMA-Factory, README, hardware requirement (memory) table.",
        url="https://github.com/hiyouga/LLaMA-Factory#hardware-requirement",
        finding=(
            "QLoRA (4-bit) needs about 6/12/24/48 GB for 7/14/30/70B models; LoRA in fp16 "
            "about 16–20 GB for 7B; full fine-tuning about 112–120 GB for 7B."
        ),
    ),
    Citation(
        id=QLORA_2023,
        label="Dettmers et al. 2023 (QLoRA)",
        reference=(
            "Dettmers, T., Pagnoni, A., Holtzman, A., Zettlemoyer, L. (2023). QLoRA: Efficient "
            "Finetuning of Quantized LLMs. arXiv:2305.14314."
        ),
        url="https://arxiv.org/abs/2305.14314",
        finding=(
            "4-bit (NF4) base weights plus LoRA adapters make fine-tuning fit on a single GPU."
        ),
    ),
    Citation(
        id=LORA_2021,
        label="Hu et al. 2021 (LoRA)",
        reference=(
            "Hu, E. J., Shen, Y., Wallis, P., Allen-Zhu, Z., Li, Y., Wang, S., Wang, L., Chen, W. "
            "(2021). LoRA: Low-Rank Adaptation of Large Language Models. arXiv:2106.09685."
        ),
        url="https://arxiv.org/abs/2106.09685",
        finding="Low-rank adapters fine-tune a frozen base model by training few parameters.",
    ),
    Citation(
        id=DATA_SIZE_GUIDANCE,
        label="Practitioner guides: data size",
        reference=(
            "Practitioner fine-tuning guides, as summarised in PathPilot's rubric documentation."
        ),
        url=None,
        finding=(
            "Fewer than ~100–200 good examples: use few-shot prompting, not fine-tuning; "
            "500–5,000 high-quality examples is the usual fine-tuning range; quality over "
            "quantity."
        ),
    ),
    Citation(
        id=COST_GUIDANCE,
        label="Practitioner guides: cost",
        reference=(
            "Practitioner fine-tuning guides, as summarised in PathPilot's rubric documentation."
        ),
        url=None,
        finding=(
            "LoRA compute costs $10–100 per run; managed fine-tuning APIs charge per training "
            "token and fine-tuned inference costs 3–4× base on some providers; long prompts "
            "cost on every call, so a fine-tune that shortens them can pay for itself."
        ),
    ),
)

CITATIONS: Final[dict[str, Citation]] = {citation.id: citation for citation in _ALL}


def get_citations(ids: tuple[str, ...] | list[str]) -> list[Citation]:
    """The citations for `ids`, in the given order; a KeyError names an unknown id."""
    return [CITATIONS[citation_id] for citation_id in ids]
