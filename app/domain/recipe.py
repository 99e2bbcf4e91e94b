"""The QLoRA recipe: hyper-parameters scaled to the model, the data and the time cap.

The recipe decides the pilot's verdict on fine-tuning. Measured on SmolLM2-135M-Instruct
with Banking77 (77 labels, 800 train / 200 test; docs/pilots.md "Calibration"):

    r=16, lr 2e-4, q/k/v/o,        2 epochs  ->  8.0% accuracy  (the 7B recipe, copied)
    r=16, lr 1e-3, all linear,     3 epochs  -> 65.5% accuracy

So a pilot that copies the 7B recipe onto a small proxy model reports "fine-tuning does
not work" when it was the recipe that did not work. `choose_recipe` scales the learning
rate with model size, trains every linear layer of small models, picks epochs from the data
size and fits the whole run into the wall-clock cap by training on fewer examples rather
than stopping an under-trained run. Every choice is explained in `rationale`, which the
report shows next to the result.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

# Learning-rate anchors (log-linear interpolation between them). 2e-4 is the QLoRA paper's
# and the seed guides' value for 7B+ models; 1e-3 is what made the 135M proxy learn.
SMALL_MODEL_PARAMS = 1_000_000_000
LARGE_MODEL_PARAMS = 7_000_000_000
SMALL_MODEL_LR = 1e-3
LARGE_MODEL_LR = 2e-4

# Below this size every linear layer gets an adapter; above it attention only (q/k/v/o),
# the protocol's default, which keeps a large model's step time and adapter small.
ALL_LINEAR_BELOW_PARAMS = 3_000_000_000

ATTENTION_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj"]

# The attention projections by `config.model_type` where they are not q/k/v/o_proj: Phi-3 fuses
# q/k/v into one layer, Falcon and GPT-NeoX do too under another name, GPT-2 uses Conv1D
# names. PEFT fails on a module name the model does not have, so a recipe's q/k/v/o becomes
# these for such a family (Llama, Mistral, Qwen2, Gemma and most others use q/k/v/o_proj).
ATTENTION_MODULES_BY_MODEL_TYPE: dict[str, list[str]] = {
    "phi3": ["qkv_proj", "o_proj"],
    "phi": ["q_proj", "k_proj", "v_proj", "dense"],
    "falcon": ["query_key_value", "dense"],
    "gpt_neox": ["query_key_value", "dense"],
    "gpt2": ["c_attn", "c_proj"],
    "gpt_bigcode": ["c_attn", "c_proj"],
    "bloom": ["query_key_value", "dense"],
    "mpt": ["Wqkv", "out_proj"],
    "dbrx": ["Wqkv", "out_proj"],
}


def resolve_target_modules(
    wanted: str | Sequence[str], model_type: str, module_names: Sequence[str]
) -> str | list[str]:
    """The recipe's target modules as names this model has.

    `module_names` are the model's module paths (`name for name, _ in model.named_modules()`).
    "all-linear" is PEFT's own rule and fits every family. A list whose names all occur is
    kept; the attention default on a family that names its attention layers otherwise becomes
    that family's names; anything else falls back to "all-linear" rather than fail in PEFT.
    """
    if isinstance(wanted, str):
        return wanted
    leaves = {name.rsplit(".", 1)[-1] for name in module_names}
    if all(name in leaves for name in wanted):
        return list(wanted)
    family = ATTENTION_MODULES_BY_MODEL_TYPE.get(model_type)
    if list(wanted) == ATTENTION_MODULES and family and all(n in leaves for n in family):
        return list(family)
    return "all-linear"


# Share of the time cap planned for optimizer steps; the rest pays for validation passes,
# the first (slow) steps and saving the adapter, so the plan finishes before the cap bites.
TIME_CAP_PLANNING_SHARE = 0.8

# Fewest examples worth training on per label (classification) and overall, when the time
# cap forces a subset: below this, cutting epochs is the lesser evil.
MIN_EXAMPLES_PER_LABEL = 4
MIN_TRAIN_EXAMPLES = 32


@dataclass
class QLoRARecipe:
    """Hyper-parameters for one QLoRA run, with the reasons they were chosen."""

    rank: int = field(default=16, metadata={"help": "LoRA rank r (protocol: 16)"})
    alpha: int = field(default=32, metadata={"help": "LoRA alpha; scale = alpha / rank"})
    dropout: float = field(default=0.05, metadata={"help": "Dropout on the LoRA input"})
    learning_rate: float = field(default=2e-4, metadata={"help": "Peak AdamW learning rate"})
    target_modules: str | list[str] = field(
        default_factory=lambda: list(ATTENTION_MODULES),
        metadata={"help": '"all-linear" or module names that get adapters'},
    )
    epochs: int = field(default=2, metadata={"help": "Passes over the (possibly capped) data"})
    batch_size: int = field(default=8, metadata={"help": "Examples per forward pass"})
    grad_accum: int = field(default=2, metadata={"help": "Micro-batches per optimizer step"})
    max_seq_len: int = field(
        default=512, metadata={"help": "Longest training sequence; prompts cut from the left"}
    )
    early_stopping_patience: int = field(
        default=2, metadata={"help": "Validations without improvement before stopping"}
    )
    eval_every_steps: int = field(
        default=20, metadata={"help": "Optimizer steps between validation passes"}
    )
    warmup_ratio: float = field(
        default=0.1, metadata={"help": "Share of steps with linearly rising learning rate"}
    )
    max_train_examples: int | None = field(
        default=None, metadata={"help": "Cap on training examples to fit the time cap"}
    )
    estimated_steps: int = field(default=0, metadata={"help": "Planned optimizer steps"})
    estimated_seconds: float | None = field(
        default=None, metadata={"help": "Planned training seconds (None: no step estimate)"}
    )
    rationale: list[str] = field(
        default_factory=list, metadata={"help": "Why each value was chosen, for the report"}
    )

    @property
    def effective_batch_size(self) -> int:
        return self.batch_size * self.grad_accum

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _fmt_params(params: int) -> str:
    if params >= 1_000_000_000:
        return f"{params / 1e9:.1f}B"
    return f"{params / 1e6:.0f}M"


def learning_rate_for(model_params: int) -> float:
    """1e-3 up to 1B parameters, 2e-4 from 7B, log-linear in between (both axes)."""
    if model_params <= SMALL_MODEL_PARAMS:
        return SMALL_MODEL_LR
    if model_params >= LARGE_MODEL_PARAMS:
        return LARGE_MODEL_LR
    position = math.log(model_params / SMALL_MODEL_PARAMS) / math.log(
        LARGE_MODEL_PARAMS / SMALL_MODEL_PARAMS
    )
    log_lr = math.log(SMALL_MODEL_LR) + position * math.log(LARGE_MODEL_LR / SMALL_MODEL_LR)
    return float(f"{math.exp(log_lr):.2g}")


def epochs_for(n_train: int) -> int:
    """3 passes over small data, 2 over mid-sized, 1 over large (more data, fewer passes)."""
    if n_train <= 2000:
        return 3
    if n_train <= 10_000:
        return 2
    return 1


def steps_per_epoch(n_examples: int, effective_batch: int) -> int:
    return max(1, math.ceil(n_examples / effective_batch))


def protocol_7b_recipe() -> QLoRARecipe:
    """The seed guides' 7B recipe (r=16, lr 2e-4, q/k/v/o, 2 epochs), for comparisons only."""
    return QLoRARecipe(
        learning_rate=LARGE_MODEL_LR,
        target_modules=list(ATTENTION_MODULES),
        epochs=2,
        batch_size=8,
        grad_accum=2,
        rationale=["The 7B recipe from the seed guides, unscaled (for comparison)."],
    )


def choose_recipe(
    model_params: int,
    n_train: int,
    n_labels: int | None,
    max_train_minutes: float,
    seconds_per_step_estimate: float | None,
) -> QLoRARecipe:
    """A QLoRA recipe for this model size, training-set size, label count and time cap.

    `seconds_per_step_estimate` is the measured (or guessed) time of one optimizer step at
    the recipe's effective batch size; without it the time cap is not planned for and only
    the arm's wall-clock stop protects it.
    """
    if model_params <= 0:
        raise ValueError("model_params must be positive")
    if n_train <= 0:
        raise ValueError("n_train must be positive")
    why: list[str] = []
    size = _fmt_params(model_params)

    lr = learning_rate_for(model_params)
    if model_params <= SMALL_MODEL_PARAMS:
        why.append(
            f"learning_rate {lr:g}: small model ({size}); 2e-4 (the 7B recipe) left the 135M "
            "proxy at 8% on Banking77, 1e-3 reached 65.5%."
        )
    elif model_params >= LARGE_MODEL_PARAMS:
        why.append(f"learning_rate {lr:g}: the QLoRA paper's value for 7B+ models ({size}).")
    else:
        why.append(
            f"learning_rate {lr:g}: {size} lies between the 1B (1e-3) and 7B (2e-4) anchors; "
            "interpolated on a log scale."
        )

    target: str | list[str]
    if model_params < ALL_LINEAR_BELOW_PARAMS:
        target = "all-linear"
        why.append(
            "target_modules all-linear: a small model has little capacity per layer, so "
            "adapters on the MLP as well as attention (QLoRA paper: all layers matter)."
        )
    else:
        target = list(ATTENTION_MODULES)
        why.append(
            "target_modules q/k/v/o: the protocol default; on a large model it keeps the "
            "step time and adapter size down."
        )

    why.append("rank 16, alpha 32, dropout 0.05: the protocol's LoRA shape (scale alpha/r = 2).")

    # Small data: smaller optimizer steps give more updates per epoch; a tiny model at a
    # high learning rate tolerates the extra gradient noise. Larger data can afford 16.
    if model_params < ALL_LINEAR_BELOW_PARAMS:
        batch_size, grad_accum = 8, (1 if n_train < 512 else 2)
    else:
        batch_size, grad_accum = 4, (2 if n_train < 512 else 4)
    effective = batch_size * grad_accum
    why.append(
        f"batch {batch_size} x {grad_accum} accumulation = {effective}: "
        + ("more updates per epoch on small data." if n_train < 512 else "stable gradients.")
    )

    epochs = epochs_for(n_train)
    why.append(f"epochs {epochs}: chosen for {n_train} training examples.")

    max_examples: int | None = None
    used = n_train
    planned_steps = epochs * steps_per_epoch(used, effective)
    estimated_seconds: float | None = None
    if seconds_per_step_estimate is not None and seconds_per_step_estimate > 0:
        budget_seconds = max_train_minutes * 60.0 * TIME_CAP_PLANNING_SHARE
        budget_steps = max(1, int(budget_seconds // seconds_per_step_estimate))
        if planned_steps > budget_steps:
            floor = min(n_train, max(MIN_TRAIN_EXAMPLES, MIN_EXAMPLES_PER_LABEL * (n_labels or 0)))
            chosen_epochs = 1
            for candidate in range(epochs, 0, -1):
                fits = (budget_steps // candidate) * effective
                if fits >= floor:
                    chosen_epochs = candidate
                    break
            fits = max(effective, (budget_steps // chosen_epochs) * effective)
            used = min(n_train, fits)
            max_examples = used if used < n_train else None
            planned_steps = chosen_epochs * steps_per_epoch(used, effective)
            if chosen_epochs == epochs:
                why.append(
                    f"time cap {max_train_minutes:g} min at ~{seconds_per_step_estimate:.2g} "
                    f"s/step: training on {used} of {n_train} examples to keep {epochs} "
                    "epochs (fewer examples beat an under-trained run)."
                )
            else:
                why.append(
                    f"time cap {max_train_minutes:g} min at ~{seconds_per_step_estimate:.2g} "
                    f"s/step: {chosen_epochs} epoch(s) on {used} of {n_train} examples; fewer "
                    f"examples would drop below {floor}."
                )
            epochs = chosen_epochs
        estimated_seconds = planned_steps * seconds_per_step_estimate
        why.append(
            f"plan: {planned_steps} steps, ~{estimated_seconds / 60:.1f} min of "
            f"{max_train_minutes:g} min cap."
        )
    else:
        why.append(
            f"plan: {planned_steps} steps; no step-time estimate, so the "
            f"{max_train_minutes:g} min wall-clock stop is the only time guard."
        )

    per_epoch = steps_per_epoch(used, effective)
    # Validate about twice per epoch (and at each epoch end, in the arm), at least every 5
    # steps: early stopping needs several points, but each pass costs forward time.
    eval_every = max(5, per_epoch // 2)
    patience = 3 if planned_steps <= 60 else 2
    why.append(
        f"validation every {eval_every} steps and per epoch; stop after {patience} without "
        "improvement and keep the best adapter."
    )
    warmup = 0.1
    why.append("warmup 10% then linear decay: a high learning rate needs a gentle start.")

    return QLoRARecipe(
        rank=16,
        alpha=32,
        dropout=0.05,
        learning_rate=lr,
        target_modules=target,
        epochs=epochs,
        batch_size=batch_size,
        grad_accum=grad_accum,
        max_seq_len=512,
        early_stopping_patience=patience,
        eval_every_steps=eval_every,
        warmup_ratio=warmup,
        max_train_examples=max_examples,
        estimated_steps=planned_steps,
        estimated_seconds=estimated_seconds,
        rationale=why,
    )
