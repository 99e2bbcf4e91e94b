"""The bundle's files from typed inputs: data formats, generated code, Axolotl config, pins."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import yaml

from app.domain import metrics, prompts
from app.domain.records import PilotData
from app.domain.samples.schemas import Document, Example, PilotTask
from app.exports import codegen
from app.exports.bundle import (
    DATASETS_PIN,
    TRL_PIN,
    Bundle,
    build_bundle,
)
from tests.conftest import REPO
from tests.factories.bundles import LABELS, classification_data, inputs


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    qa = PilotData(
        PilotTask.qa,
        [Example(input=f"q{i}?", target=f"a{i}", context=f"Passage {i % 4}.") for i in range(8)],
        [],
        [Example(input="q9?", target="a9", context="Passage 1.")],
    )
    folder = tmp_path_factory.mktemp("bundles")
    build_bundle(inputs(classification_data())).write_to(folder / "classification")
    build_bundle(inputs(qa, option="rag", option_label="RAG", primary_metric="token_f1")).write_to(
        folder / "qa"
    )
    return folder


def chat_lines(folder: Path) -> Iterator[tuple[Path, dict]]:
    for path in sorted(folder.rglob("*.chat.jsonl")):
        for line in path.read_text().splitlines():
            yield path, json.loads(line)


def test_every_chat_line_is_openai_fine_tuning_format(bundle_dir: Path) -> None:
    count = 0
    for path, row in chat_lines(bundle_dir):
        assert set(row) == {"messages"}, path
        messages = row["messages"]
        assert [m["role"] for m in messages] == ["system", "user", "assistant"], path
        for message in messages:
            assert set(message) == {"role", "content"}
            assert isinstance(message["content"], str) and message["content"].strip()
        count += 1
    assert count == (24 + 3 + 9) + (8 + 1)  # every example of both bundles, test included


def test_the_chat_prompt_is_the_pilots_short_prompt(bundle_dir: Path) -> None:
    data = classification_data()
    rows = (bundle_dir / "classification" / "data" / "train.chat.jsonl").read_text().splitlines()
    first = json.loads(rows[0])["messages"]
    assert first[:-1] == prompts.short_messages(data.task, data.train[0])
    assert first[-1] == {"role": "assistant", "content": data.train[0].target}
    test = (bundle_dir / "classification" / "data" / "test" / "README.md").read_text()
    assert "do not train on this" in test.lower()


def load(folder: Path, name: str) -> ModuleType:
    sys.path.insert(0, str(folder))
    try:
        sys.modules.pop(name, None)
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(folder))


CASES = {
    PilotTask.classification: (
        ["billing", "Card arrival\nmore", "refund!", "nothing", "card_arrival"],
        ["billing", "card arrival", "billing", "refund", "card arrival"],
    ),
    PilotTask.qa: (["The Eiffel tower", "paris", ""], ["Eiffel Tower", "Paris, France", "x"]),
    PilotTask.extraction: (
        ['```json\n{"a": 1, "b": [2, 3]}\n```', '{"a": 2}', "nope"],
        ['{"a": 1, "b": [2, 3]}', '{"a": 1}', '{"c": true}'],
    ),
    PilotTask.generation: (["the cat sat on the mat", "a b c"], ["the cat is on a mat", "c b a"]),
}


@pytest.mark.parametrize("task", list(CASES), ids=str)
def test_generated_metrics_equal_the_pilots(bundle_dir: Path, task: PilotTask) -> None:
    generated = load(bundle_dir / "classification" / "serve", "pilot_metrics")
    predictions, targets = CASES[task]
    ours = metrics.quality_statistics(task, predictions, targets, labels=LABELS)
    theirs = generated.quality_statistics(
        generated.PilotTask(task.value), predictions, targets, labels=LABELS
    )
    assert ours.keys() == theirs.keys()
    indices = np.random.default_rng(0).integers(0, len(targets), size=(50, len(targets)))
    for name in ours:
        assert np.allclose(ours[name](indices), theirs[name](indices)), name
        assert metrics.evaluate(ours[name], len(targets)) == generated.evaluate(
            theirs[name], len(targets)
        )


def test_generated_prompts_equal_the_pilots(bundle_dir: Path) -> None:
    generated = load(bundle_dir / "classification" / "serve", "pilot_prompts")
    shot = Example(input="where is my card", target="card arrival", instruction="Be brief.")
    query = Example(input="refund please", target="", instruction="Be brief.")
    for task in PilotTask:
        ours = prompts.build_messages(
            task, query, shots=[shot], contexts=["p1", "p2"], labels=LABELS, shot_contexts=[["s"]]
        )
        theirs = generated.build_messages(
            generated.PilotTask(task.value),
            generated.Example(**query.model_dump(exclude={"line"})),
            shots=[generated.Example(**shot.model_dump(exclude={"line"}))],
            contexts=["p1", "p2"],
            labels=LABELS,
            shot_contexts=[["s"]],
        )
        assert ours == theirs
        assert (
            generated.DEFAULT_MAX_NEW_TOKENS[generated.PilotTask(task.value)]
            == (prompts.DEFAULT_MAX_NEW_TOKENS[task])
        )


def test_generated_chunking_equals_the_pilots(bundle_dir: Path, embedder_tokenizer) -> None:  # type: ignore[no-untyped-def]
    from app.domain import chunking

    generated = load(bundle_dir / "qa" / "rag", "pilot_chunking")
    text = " ".join(f"word{i}" for i in range(700))
    documents = [Document(doc_id="d1", title="Title", text=text)]
    ours = chunking.chunk_documents(documents, embedder_tokenizer, chunk_tokens=50, overlap=10)
    theirs = generated.chunk_documents(
        [generated.Document("d1", "Title", text)], embedder_tokenizer, chunk_tokens=50, overlap=10
    )
    assert [(c.doc_id, c.text) for c in ours] == [(c.doc_id, c.text) for c in theirs]
    assert len(ours) > 5


@pytest.fixture(scope="module")
def embedder_tokenizer():  # type: ignore[no-untyped-def]
    from transformers import AutoTokenizer

    from worker.model_store import default_embedder_path

    return AutoTokenizer.from_pretrained(default_embedder_path())


def test_generated_and_copied_scripts_pass_ruff(bundle_dir: Path) -> None:
    """Undefined names and syntax errors in what a user runs fail here, not on their GPU."""
    ruff = Path(sys.executable).parent / "ruff"
    done = subprocess.run(
        [str(ruff), "check", "--no-cache", "--isolated", "--select", "E9,F", str(bundle_dir)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(list(bundle_dir.rglob("*.py"))) >= 2 * 6


def test_codegen_names_what_is_missing() -> None:
    with pytest.raises(KeyError, match="no_such_metric"):
        codegen.definitions(metrics, ["token_f1", "no_such_metric"])


def test_the_manifest_never_holds_an_api_key(bundle_dir: Path) -> None:
    manifest = (bundle_dir / "classification" / "MANIFEST.json").read_text()
    assert "sk-never-here" not in manifest and "api_key" not in manifest
    for path in bundle_dir.rglob("*"):
        if path.is_file():
            assert b"sk-never-here" not in path.read_bytes(), path


def test_missing_parts_are_said(bundle_dir: Path) -> None:
    readme = (bundle_dir / "classification" / "README.md").read_text()
    assert "adapter/: not included: the qlora arm failed" in readme
    assert not (bundle_dir / "classification" / "adapter").exists()
    assert not (bundle_dir / "classification" / "serve" / "serve.sh").exists()
    prompt = json.loads((bundle_dir / "classification" / "serve" / "prompt.json").read_text())
    assert prompt["arm"] == "fewshot" and len(prompt["shots"]) == 4  # no adapter: few-shot


def test_pins_match_what_is_tested() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert f"trl=={TRL_PIN}" in pyproject["project"]["optional-dependencies"]["dev"]
    assert metadata.version("trl") == TRL_PIN
    assert metadata.version("datasets") == DATASETS_PIN


def test_the_gpu_memory_estimate_is_the_rubrics(bundle_dir: Path) -> None:
    from app.domain.scoring.costs import memory_estimate

    readme = (bundle_dir / "classification" / "finetune" / "README.md").read_text()
    assert f"about {memory_estimate(8.0).qlora_gb} GB" in readme
    recipe = json.loads((bundle_dir / "classification" / "finetune" / "recipe.json").read_text())
    assert recipe["recipes"]["target"]["learning_rate"] == 2e-4  # choose_recipe at 8B
    assert recipe["recipes"]["pilot"]["learning_rate"] == 1e-3


# --------------------------------------------------------------------------- Axolotl

AXOLOTL_VERSION = "0.19.0"  # the newest release for Python 3.11
AXOLOTL_DIR = REPO / "var" / "tools" / f"axolotl-{AXOLOTL_VERSION}"
# Keys of Axolotl's config reference (docs/config-reference.qmd) the bundle writes.
AXOLOTL_DOCUMENTED_KEYS = {
    "base_model", "load_in_4bit", "adapter", "lora_r", "lora_alpha", "lora_dropout",
    "lora_target_linear", "lora_target_modules", "sequence_len", "micro_batch_size",
    "gradient_accumulation_steps", "num_epochs", "learning_rate", "optimizer", "weight_decay",
    "max_grad_norm", "lr_scheduler", "warmup_ratio", "seed", "chat_template", "datasets",
    "test_datasets", "val_set_size", "eval_steps", "save_steps", "early_stopping_patience",
    "load_best_model_at_end", "train_on_inputs", "bf16", "output_dir",
}  # fmt: skip


def axolotl_schema() -> tuple[type, type] | None:
    """Axolotl's own config model, from an install or from its wheel (no dependencies: the
    package itself needs CUDA-only wheels and other transformers releases than PathPilot)."""
    if not AXOLOTL_DIR.exists():
        wheels = AXOLOTL_DIR.parent / "wheels"
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(wheels),
             f"axolotl=={AXOLOTL_VERSION}"],
            capture_output=True, timeout=180, check=False,
        )  # fmt: skip
        found = sorted(wheels.glob(f"axolotl-{AXOLOTL_VERSION}-*.whl"))
        if found:
            with zipfile.ZipFile(found[0]) as wheel:
                wheel.extractall(AXOLOTL_DIR)
    sys.path.insert(0, str(AXOLOTL_DIR))
    try:
        config = importlib.import_module("axolotl.utils.schemas.config")
        datasets = importlib.import_module("axolotl.utils.schemas.datasets")
    except ImportError:
        return None
    finally:
        sys.path.remove(str(AXOLOTL_DIR))
    return config.AxolotlInputConfig, datasets.SFTDataset


def test_axolotl_config(bundle_dir: Path, record_property) -> None:  # type: ignore[no-untyped-def]
    text = (bundle_dir / "classification" / "finetune" / "axolotl.yaml").read_text()
    config = yaml.safe_load(text)
    config["base_model"] = "HuggingFaceTB/SmolLM2-135M-Instruct"
    schema = axolotl_schema()
    if schema is None:
        record_property("axolotl_check", "documented keys")
        print("axolotl check: documented keys (Axolotl's schema is not importable)")
        assert set(config) <= AXOLOTL_DOCUMENTED_KEYS, set(config) - AXOLOTL_DOCUMENTED_KEYS
        return
    model, dataset = schema
    record_property("axolotl_check", f"Axolotl {AXOLOTL_VERSION} AxolotlInputConfig")
    print(f"axolotl check: Axolotl {AXOLOTL_VERSION}'s own AxolotlInputConfig validation")
    assert set(config) <= set(model.model_fields), set(config) - set(model.model_fields)
    # As axolotl.utils.config.validate_config does: datasets become SFTDataset, then validate.
    for key in ("datasets", "test_datasets"):
        config[key] = [dataset(**entry) for entry in config.get(key, [])]
    validated = model.model_validate(config)
    assert validated.adapter == "qlora" and validated.load_in_4bit
    assert validated.learning_rate == 2e-4 and validated.lora_r == 16
    assert validated.micro_batch_size == 4 and validated.gradient_accumulation_steps == 2


def test_a_bundle_zips_with_its_listing(tmp_path: Path) -> None:
    bundle: Bundle = build_bundle(inputs(classification_data()))
    target = bundle.write_to(tmp_path / "b.zip")
    assert sorted(zipfile.ZipFile(target).namelist()) == bundle.listing()
    with pytest.raises(FileExistsError):
        bundle.write_to(tmp_path)  # not empty


@pytest.mark.parametrize("task", list(CASES), ids=str)
def test_the_client_scores_as_the_pilot_does(bundle_dir: Path, task: PilotTask) -> None:
    """serve/client.py's figures and intervals are the pilot's (same resamples, same seed)."""
    from app.domain.bootstrap import bootstrap_metric, resample_indices

    serve = bundle_dir / "classification" / "serve"
    sys.path.insert(0, str(serve))
    try:
        for name in ("client", "pilot_metrics", "pilot_prompts"):
            sys.modules.pop(name, None)
        client = importlib.import_module("client")
    finally:
        sys.path.remove(str(serve))
    predictions, targets = CASES[task]
    scored = client.score(task.value, predictions, targets, labels=LABELS, seed=13)
    ours = metrics.quality_statistics(task, predictions, targets, labels=LABELS)
    assert scored.keys() == ours.keys()
    indices = resample_indices(len(targets), seed=13)
    for name, statistic in ours.items():
        interval = bootstrap_metric(statistic, len(targets), indices=indices)
        assert scored[name] == {
            "value": interval.value,
            "ci_low": interval.low,
            "ci_high": interval.high,
        }, name


def test_document_ids_that_are_not_file_names_stay_inside_the_bundle(tmp_path: Path) -> None:
    """SQuAD ids are article titles with '/paragraph-N'; a crafted id may hold '..'."""
    odd = ["Super Bowl 50/paragraph-2", "../../etc/passwd", "plain-id", "plain-id.txt"]
    data = PilotData(
        PilotTask.qa,
        [
            Example(input=f"q{i}", target="a", context=f"passage {i}", doc_id=d)
            for i, d in enumerate(odd)
        ],
        [],
        [Example(input="q", target="a", context="passage 0", doc_id=odd[0])],
        documents=[Document(doc_id=d, title="", text=f"passage {i}") for i, d in enumerate(odd)],
    )
    bundle = build_bundle(inputs(data, option="rag", option_label="RAG"))
    documents = [n for n in bundle.listing() if n.startswith("rag/documents/")]
    assert all(".." not in n.split("/") and n.count("/") == 2 for n in documents), documents
    ids = json.loads(bundle.files["rag/documents/.doc_ids.json"])
    assert sorted(ids.values()) == sorted(odd) and ids["plain-id.txt"] == "plain-id"
    target = bundle.write_to(tmp_path / "b")
    assert sorted(p.name for p in (target / "rag" / "documents").iterdir()) == sorted(
        n.rsplit("/", 1)[1] for n in documents
    )
    with pytest.raises(ValueError, match="unsafe"):
        Bundle(files={"../x": b""}, missing=[])
