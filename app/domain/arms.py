"""The pilot arms: one registry entry and one typed config each.

To add an arm, write its module under `worker/pilots/arms/` (a `run(config, resources, data,
progress) -> ArmResult` function) and add its config and `ArmSpec` here. Nothing else lists
arms: the page, the API, the CLI, the runner, the report and the reconciliation rule all read
this registry (docs/architecture.md, "Adding an arm").
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.domain.arm_registry import (
    ArmRegistry,
    ArmSpec,
    Capability,
    ConfigSet,
    ModelRole,
    Needs,
    PilotSettings,
    WithoutDocuments,
)
from app.domain.recipe import QLoRARecipe
from app.domain.samples.schemas import PilotTask
from app.domain.scoring.paths import HYBRID_FT_RAG

# --------------------------------------------------------------------------- configs


@dataclass
class MajorityConfig:
    seed: int = field(default=0, metadata={"help": "Unused: the floor is deterministic."})


@dataclass
class FewShotConfig:
    k: int = field(default=8, metadata={"help": "Shots to show (fewer if they do not fit)."})
    seed: int = field(default=0, metadata={"help": "Seed for choosing the shots."})
    max_new_tokens: int | None = field(
        default=None, metadata={"help": "Output budget; unset = a per-task default."}
    )
    batch_size: int = field(default=16, metadata={"help": "Prompts decoded together."})
    max_prompt_tokens: int = field(
        default=2048,
        metadata={"help": "Cap on the context window used (prompt + output), for speed."},
    )


@dataclass
class RagConfig:
    top_k: int = field(default=8, metadata={"help": "Passages (or example shots) per query."})
    chunk_tokens: int = field(
        default=200, metadata={"help": "Chunk size in embedder tokens (MiniLM reads 256)."}
    )
    overlap: int = field(default=40, metadata={"help": "Tokens shared by neighbouring chunks."})
    ann_threshold: int = field(
        default=20_000,
        metadata={"help": "Above this many vectors use HNSW (approximate), else exact search."},
    )
    format_shots: int = field(
        default=2, metadata={"help": "Fixed training shots shown with passages (format only)."}
    )
    # Every passage token is prefilled on every query; a token budget keeps RAG's cost per
    # query near that of a few passages whatever the chunk size. Off by default: on the
    # document-QA bench it cut the gold passage's presence from ~0.91 to ~0.85 of queries for
    # ~19% fewer prompt tokens, and the hand-off bundle's query script cuts by count only.
    max_passage_tokens: int | None = field(
        default=None,
        metadata={
            "help": "Tokens of retrieved passages per query (best first; the best always goes "
            "in when it fits the window); None = as many of top_k as fit the window."
        },
    )
    seed: int = field(default=0, metadata={"help": "Seed for the fixed format shots."})
    max_new_tokens: int | None = field(
        default=None, metadata={"help": "Output budget; unset = a per-task default."}
    )
    batch_size: int = field(default=16, metadata={"help": "Prompts decoded together."})
    max_prompt_tokens: int = field(
        default=2048,
        metadata={"help": "Cap on the context window used (prompt + output), for speed."},
    )


@dataclass
class QLoRAConfig:
    """Settings of the QLoRA arm; the hyper-parameters themselves come from the recipe."""

    adapter_dir: Path = field(metadata={"help": "Directory the trained adapter is saved to"})
    seed: int = field(default=0, metadata={"help": "Seed for sampling, shuffling, LoRA init"})
    max_train_minutes: float = field(
        default=6.0, metadata={"help": "Wall-clock cap on the training loop (incl. validation)"}
    )
    max_new_tokens: int | None = field(
        default=None, metadata={"help": "Output budget; unset = the per-task default of all arms"}
    )
    batch_size: int = field(default=16, metadata={"help": "Prompts per generation batch"})
    recipe: QLoRARecipe | None = field(
        default=None, metadata={"help": "Use exactly this recipe (no time planning)"}
    )
    recipe_overrides: dict[str, Any] = field(
        default_factory=dict, metadata={"help": "QLoRARecipe fields to override after choosing"}
    )
    seconds_per_step: float | None = field(
        default=None, metadata={"help": "Step-time estimate; None: measure with a probe"}
    )
    gradient_checkpointing: bool | None = field(
        default=None, metadata={"help": "None: only on CUDA for models above 1B parameters"}
    )
    dequantize_once: bool | None = field(
        default=None,
        metadata={"help": "Dequantise the frozen 4-bit base once for training; None: on CPU, <=1B"},
    )
    group_by_length: bool = field(
        default=True,
        metadata={"help": "Batch examples of similar length together (less padding computed)"},
    )
    max_tokens_per_forward: int | None = field(
        default=None,
        metadata={
            "help": "Cap on rows x length of one training forward: longer micro-batches run in "
            "accumulated parts (same loss, less activation memory); None: 384 on CPU, none on CUDA"
        },
    )
    max_validation_examples: int = field(
        default=64, metadata={"help": "Cap on validation examples (each pass costs time)"}
    )
    eval_weights: str = field(
        default="merged",
        metadata={
            "help": '"merged": LoRA merged into the dequantised NF4 base (bf16), as a fine-tune '
            'is served; "nf4": the 4-bit base + adapter exactly as trained'
        },
    )


@dataclass
class QLoRARagConfig:
    """The adapter to reuse (or how to train one) and the retrieval settings."""

    qlora: QLoRAConfig = field(
        metadata={"help": "Training (when no adapter is given) and evaluation settings"}
    )
    adapter_path: Path | None = field(
        default=None, metadata={"help": "The QLoRA arm's saved adapter; None: train one first"}
    )
    retrieval: RagConfig = field(
        default_factory=RagConfig,
        metadata={"help": "Corpus, chunking and top_k: keep equal to the RAG arm's"},
    )

    def with_adapter(self, path: Path) -> QLoRARagConfig:
        """Reuse the QLoRA arm's adapter instead of training a second one."""
        return dataclasses.replace(self, adapter_path=path)


# --------------------------------------------------------------------------- entries

MAJORITY: ArmSpec[MajorityConfig] = ArmSpec(
    name="majority",
    label="Majority label (floor)",
    order=0,
    evidence_for=None,
    config_type=MajorityConfig,
    default_config=lambda settings, _: MajorityConfig(seed=settings.seed),
    needs=Needs(model=ModelRole.none, tasks=frozenset({PilotTask.classification})),
    implementation="worker.pilots.arms.majority",
    summary="Always answers the most frequent training label: the score any arm must beat.",
)

FEWSHOT: ArmSpec[FewShotConfig] = ArmSpec(
    name="fewshot",
    label="Few-shot prompting",
    order=10,
    evidence_for="prompting",
    config_type=FewShotConfig,
    default_config=lambda settings, _: FewShotConfig(seed=settings.seed),
    needs=Needs(model=ModelRole.prompting, capabilities=frozenset({Capability.in_context})),
    implementation="worker.pilots.arms.fewshot",
    summary="k training examples shown as earlier chat turns; the baseline to beat.",
)

RAG: ArmSpec[RagConfig] = ArmSpec(
    name="rag",
    label="RAG (retrieval)",
    order=20,
    evidence_for="rag",
    config_type=RagConfig,
    default_config=lambda settings, _: RagConfig(seed=settings.seed),
    needs=Needs(
        model=ModelRole.prompting,
        capabilities=frozenset({Capability.reading}),
        retrieval=True,
    ),
    implementation="worker.pilots.arms.rag",
    summary="MiniLM + FAISS over your documents (or the training examples), top-k in the prompt.",
    without_documents=WithoutDocuments(
        label="Prompting with retrieved examples",
        evidence_for="prompting",
        capabilities=frozenset({Capability.in_context}),
    ),
)


def _qlora_config(settings: PilotSettings, _: ConfigSet) -> QLoRAConfig:
    return QLoRAConfig(
        adapter_dir=settings.adapter_dir,
        seed=settings.seed,
        max_train_minutes=settings.max_train_minutes,
    )


QLORA: ArmSpec[QLoRAConfig] = ArmSpec(
    name="qlora",
    label="QLoRA fine-tune",
    order=30,
    evidence_for="fine_tuning",
    config_type=QLoRAConfig,
    default_config=_qlora_config,
    needs=Needs(
        model=ModelRole.fine_tuned, capabilities=frozenset({Capability.fine_tuning}), trains=True
    ),
    implementation="worker.pilots.arms.qlora",
    summary="A LoRA adapter on the 4-bit base, trained on your examples within a time cap.",
)


def _qlora_rag_config(settings: PilotSettings, configs: ConfigSet) -> QLoRARagConfig:
    # The QLoRA arm's settings (same adapter dir, seed and time cap) and the RAG arm's
    # retrieval, so this arm differs from each of them by one thing only.
    return QLoRARagConfig(qlora=configs.get(QLORA), retrieval=configs.get(RAG))


QLORA_RAG: ArmSpec[QLoRARagConfig] = ArmSpec(
    name="qlora_rag",
    label="QLoRA + RAG",
    order=40,
    evidence_for=HYBRID_FT_RAG,
    config_type=QLoRARagConfig,
    default_config=_qlora_rag_config,
    needs=Needs(
        model=ModelRole.fine_tuned,
        capabilities=frozenset({Capability.fine_tuning, Capability.reading}),
        trains=True,
        adapter_from="qlora",
        retrieval=True,
    ),
    implementation="worker.pilots.arms.qlora_rag",
    summary="The QLoRA adapter with retrieved context: do the two gains stack?",
    without_documents=WithoutDocuments(
        label="QLoRA with retrieved examples",
        evidence_for="fine_tuning",
        capabilities=frozenset({Capability.fine_tuning, Capability.in_context}),
    ),
)

ARMS = ArmRegistry([MAJORITY, FEWSHOT, RAG, QLORA, QLORA_RAG])
