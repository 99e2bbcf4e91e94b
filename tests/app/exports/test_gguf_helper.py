"""serve/gguf_helper.py: the Modelfile's chat format and stops come from the chat template,
and what it cannot convert or template is refused with a reason, not written broken."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from app.domain.chat_encoding import END_OF_TURN_TOKENS, completion_text
from app.exports.bundle import SCRIPTS_DIR
from tests.app.exports.chat_families import FAMILIES, FAMILY_NAMES, tokenizer_for
from tests.conftest import REPO

HELPER = SCRIPTS_DIR / "serve" / "gguf_helper.py"
LLAMA_CPP = REPO / ".venv-llamacpp" / "llama.cpp"
# Zephyr's turns close with </s> after <|user|> / <|assistant|>: no family the helper writes.
ZEPHYR_TEMPLATE = (
    "{% for message in messages %}{{ '<|' + message['role'] + '|>\n' + message['content'] "
    "+ eos_token }}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)
LLAMA2_TEMPLATE = "{{ bos_token + '[INST] <<SYS>>\\n' + system + '\\n<</SYS>>\\n\\n' }}[/INST]"


def load_helper() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gguf_helper", HELPER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gguf_helper"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


helper = load_helper()


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_each_familys_modelfile_stops_at_the_token_that_closes_its_turn(name: str) -> None:
    family = next(f for f in FAMILIES if f.name == name)
    tokenizer = tokenizer_for(name)
    messages = [{"role": "system", "content": "Label it."}, {"role": "user", "content": "hi"}]
    # What the served model must generate after the prompt, as the pilot trained it.
    turn = completion_text(tokenizer, messages, "greeting")
    chosen = helper.family_of(tokenizer.chat_template)
    assert turn.endswith(chosen.stops[0]), (turn, chosen.stops)
    assert chosen.stops[0] == family.end_of_turn
    assert chosen.stops[0] in (*END_OF_TURN_TOKENS, "</s>")
    text = helper.modelfile(tokenizer.chat_template, "model.gguf", ["\n"])
    assert text.splitlines()[2] == "FROM ./model.gguf"
    assert f'PARAMETER stop "{family.end_of_turn}"' in text
    assert 'PARAMETER stop """\n"""' in text  # a real newline: Ollama does not unescape "\n"
    assert "PARAMETER temperature 0" in text
    if name == "qwen2.5":  # the default system message the template writes
        assert 'SYSTEM """You are Qwen, created by Alibaba Cloud.' in text
    else:
        assert "SYSTEM" not in text


def test_smollm2s_own_template_is_chatml_with_its_default_system(llm_dir: Path) -> None:
    template = helper.chat_template_of(str(llm_dir))
    text = helper.modelfile(template, "model.gguf", [])
    assert helper.family_of(template) is helper.CHATML
    assert 'SYSTEM """You are a helpful AI assistant named SmolLM, trained by Hugging Face"""' in (
        text
    )
    assert "<|im_start|>assistant\n" in text and 'PARAMETER stop """' not in text


@pytest.mark.parametrize("template", [ZEPHYR_TEMPLATE, LLAMA2_TEMPLATE])
def test_a_chat_format_it_cannot_write_is_refused_with_the_reason(
    template: str, tmp_path: Path
) -> None:
    with pytest.raises(helper.Refused, match="none of the families"):
        helper.modelfile(template, "model.gguf", [])
    model = tmp_path / "merged"
    model.mkdir()
    (model / "tokenizer_config.json").write_text(json.dumps({"chat_template": template}))
    prompt = tmp_path / "prompt.json"
    prompt.write_text('{"stop": []}')
    out = tmp_path / "Modelfile"
    done = subprocess.run(
        [sys.executable, str(HELPER), "modelfile", "--model", str(model), "--gguf", "m.gguf",
         "--prompt", str(prompt), "--out", str(out)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 2 and "refused:" in done.stderr and "OLLAMA=0" in done.stderr
    assert not out.exists()


@pytest.mark.skipif(not LLAMA_CPP.is_dir(), reason="no .venv-llamacpp: run `make llamacpp`")
def test_check_refuses_an_architecture_llama_cpp_cannot_convert(
    llm_dir: Path, tmp_path: Path
) -> None:
    def check(model: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(HELPER), "check", "--base-model", str(model),
             "--llama-cpp", str(LLAMA_CPP)],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip

    fine = check(llm_dir)
    assert fine.returncode == 0, fine.stderr[-2000:]
    assert "LlamaForCausalLM: convertible; chat format: chatml" in fine.stdout
    odd = tmp_path / "odd"
    odd.mkdir()
    config = json.loads((llm_dir / "config.json").read_text())
    (odd / "config.json").write_text(json.dumps(config | {"architectures": ["PilotNetForLM"]}))
    refused = check(odd)
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert "cannot convert the architecture PilotNetForLM" in refused.stderr
