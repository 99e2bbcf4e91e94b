"""Typed inputs of a hand-off bundle (`app.exports.bundle.BundleInputs`) and their data."""

from __future__ import annotations

from app.domain.records import PilotData
from app.domain.samples.schemas import Example, PilotTask
from app.exports.bundle import ArmFacts, BundleInputs

LABELS = ["billing", "card arrival", "refund"]
QLORA_RECIPE = {
    "rank": 16, "alpha": 32, "dropout": 0.05, "learning_rate": 1e-3,
    "target_modules": "all-linear", "epochs": 3, "batch_size": 8, "grad_accum": 1,
    "max_seq_len": 512, "warmup_ratio": 0.1, "early_stopping_patience": 3,
    "eval_every_steps": 5, "seed": 13, "base_parameters": 134_515_008,
}  # fmt: skip


def classification_data() -> PilotData:
    def example(i: int) -> Example:
        return Example(input=f"message {i} about {LABELS[i % 3]}", target=LABELS[i % 3], line=i)

    return PilotData(
        PilotTask.classification,
        [example(i) for i in range(24)],
        [example(i) for i in range(24, 27)],
        [example(i) for i in range(27, 36)],
        labels=LABELS,
    )


def inputs(data: PilotData, **changes: object) -> BundleInputs:
    base = BundleInputs(
        pilot_id="p" * 32,
        title="Banking intents",
        option="fine_tuning",
        option_label="Fine-tuning",
        data=data,
        data_check="Verified against the manifest.",
        seed=13,
        primary_metric="accuracy",
        arms={
            "fewshot": ArmFacts("fewshot", "done", recipe={"k": 8, "k_used": 4, "seed": 13}),
            "rag": ArmFacts("rag", "done", recipe={"top_k": 4, "labels_listed": True}),
            "qlora": ArmFacts("qlora", "done", recipe=QLORA_RECIPE, first_train_loss=3.1),
        },
        manifest={
            "seed": 13,
            "base_model_id": "HuggingFaceTB/SmolLM2-135M-Instruct (GGUF Q4_1)",
            "libraries": {"torch": "2.13.0+cpu", "transformers": "5.24.0"},
            "arm_models": {"fewshot": {"model_id": "x", "api_key": "sk-never-here"}},
        },
        target_size_b=8.0,
        adapter_dir=None,
        adapter_note="the qlora arm failed",
    )
    return BundleInputs(**{**base.__dict__, **changes})  # type: ignore[arg-type]
