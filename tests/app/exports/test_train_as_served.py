"""Train as served: the bundle's train_trl.py, the pilot and a server tokenise alike.

For each family teams deploy (Llama-3.x, Mistral, Gemma-2, Qwen2.5, Phi-3; tokenizers built
offline in `chat_families`), the ids TRL 1.16 trains on from the bundle's script equal the
pilot's QLoRA arm's ids, start with the ids a server computes for the prompt (the template
rendered, tokenised without added special tokens, as vLLM's chat endpoint does), hold the
family's BOS exactly once and end with its end-of-turn token.
"""

from __future__ import annotations

import copy
import importlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

from app.domain import chat_encoding
from app.exports.bundle import build_bundle
from tests.app.exports.chat_families import FAMILIES, FAMILY_NAMES, tokenizer_for
from tests.factories.bundles import classification_data, inputs
from worker.pilots.arms.qlora.data import encode_example

MAX_LEN = 512


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("bundle") / "b"
    build_bundle(inputs(classification_data())).write_to(folder)
    return folder


def load(folder: Path, name: str) -> ModuleType:
    sys.path.insert(0, str(folder))
    try:
        sys.modules.pop(name, None)
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(folder))


@pytest.fixture(scope="module")
def train_trl(bundle: Path) -> Iterator[ModuleType]:
    sys.modules.pop("pilot_encoding", None)
    module = load(bundle / "finetune", "train_trl")
    yield module
    sys.modules.pop("train_trl", None)
    sys.modules.pop("pilot_encoding", None)


def trl_prepared(rows: list[dict[str, Any]], tokenizer: Any, tmp_path: Path) -> list[dict]:
    """The rows as TRL 1.16's SFTTrainer prepares them for training (its own code)."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    args = SFTConfig(output_dir=str(tmp_path), max_length=MAX_LEN, report_to=[], use_cpu=True)
    trainer = SimpleNamespace(_tokenizer=tokenizer, completion_only_loss=True, chat_template=None)
    prepared = SFTTrainer._prepare_dataset(
        trainer,  # type: ignore[arg-type]
        Dataset.from_list(rows),
        tokenizer,
        args,
        False,
        None,
        "train",
    )
    return list(prepared)


def served_prompt_ids(tokenizer: Any, messages: list[dict[str, str]]) -> list[int]:
    """What vLLM's chat endpoint computes: the template rendered, no special tokens added.
    A template without a system role is sent the folded messages (client.py --fold-system)."""
    try:
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    except Exception:
        folded = chat_encoding.fold_system(messages)
        text = tokenizer.apply_chat_template(folded, tokenize=False, add_generation_prompt=True)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


@pytest.mark.parametrize("family_name", FAMILY_NAMES)
def test_training_ids_are_the_pilots_and_the_served_prompts(
    family_name: str, train_trl: ModuleType, bundle: Path, tmp_path: Path
) -> None:
    family = next(f for f in FAMILIES if f.name == family_name)
    tokenizer = tokenizer_for(family_name)
    data = classification_data()
    path = bundle / "data" / "train.chat.jsonl"
    chats = [json.loads(line)["messages"] for line in path.read_text().splitlines()]
    prepared = trl_prepared(train_trl.training_rows(path, tokenizer, MAX_LEN), tokenizer, tmp_path)
    assert len(prepared) == len(data.train) == len(chats)
    bos = tokenizer.convert_tokens_to_ids(family.bos) if family.bos else None
    end = tokenizer.convert_tokens_to_ids(family.end_of_turn)
    for row, example, chat in zip(prepared, data.train, chats, strict=True):
        pilot = encode_example(tokenizer, data.task, example, max_seq_len=MAX_LEN)
        assert row["input_ids"] == pilot.input_ids, family_name
        assert row["labels"] == pilot.labels, family_name
        served = served_prompt_ids(tokenizer, chat[:-1])
        assert row["input_ids"][: len(served)] == served, family_name
        # The loss starts right after the served prompt and ends on the end-of-turn token.
        first = next(i for i, label in enumerate(row["labels"]) if label != -100)
        assert first == len(served), family_name
        assert row["input_ids"][-1] == end and row["labels"][-1] == end, family_name
        assert row["input_ids"].count(bos) == (1 if bos is not None else 0), family_name
        if bos is not None:
            assert row["input_ids"][0] == bos


def test_a_tokenizer_without_a_chat_template_is_a_clear_error(train_trl: ModuleType) -> None:
    base = copy.deepcopy(tokenizer_for("llama-3.1"))  # a base model's: no chat template
    base.chat_template = None
    base.name_or_path = "org/base-model"
    messages = [{"role": "user", "content": "hi"}]
    with pytest.raises(chat_encoding.ChatTemplateMissing, match="org/base-model has no chat"):
        chat_encoding.encode_chat(base, messages, "x", max_seq_len=MAX_LEN)
    with pytest.raises(train_trl.ChatTemplateMissing, match="instruct"):
        train_trl.encode_chat(base, messages, "x", max_seq_len=MAX_LEN)


def test_the_system_message_is_folded_only_where_the_template_has_no_system_role() -> None:
    messages = [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]
    for family in FAMILIES:
        kept = chat_encoding.chat_messages(tokenizer_for(family.name), messages)
        expected = [{"role": "user", "content": "S\n\nU"}] if family.name == "gemma-2" else messages
        assert kept == expected, family.name
