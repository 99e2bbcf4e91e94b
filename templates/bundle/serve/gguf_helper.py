"""Checks and the Ollama Modelfile for serve/make_gguf.sh (llama.cpp's GGUF hand-off).

    python serve/gguf_helper.py check --base-model PATH_OR_HUB_ID --llama-cpp LLAMA_CPP_DIR
    python serve/gguf_helper.py modelfile --model MERGED_DIR --gguf model.gguf --out Modelfile

`check` refuses, before any weights are merged, a base whose architecture llama.cpp's
converter does not know and (unless --no-ollama) a chat template whose family this script
cannot write as an Ollama TEMPLATE; a refusal says why, instead of leaving a broken file.
`modelfile` writes the Modelfile from the merged model's own chat template: its family's
TEMPLATE, the default system message the template inserts, the family's end-of-turn tokens
as stop strings, and the pilot's greedy decoding and newline stop (serve/prompt.json).
Needs Python 3.11+ and transformers (for a hub id; a local folder needs nothing else).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class OllamaFamily:
    name: str
    markers: tuple[str, ...]  # all of them appear in the family's chat template
    template: str  # Ollama's Go template, as the family's chat template renders a chat
    stops: tuple[str, ...]  # the tokens that end an assistant turn
    # Markers of a look-alike family with other rules (Llama-2's <<SYS>> block uses [INST] too).
    absent: tuple[str, ...] = ()


# Each TEMPLATE renders what the family's chat template renders for a system message, user
# and assistant turns and the generation prompt. The BOS is not written: llama.cpp adds it
# from the GGUF's own tokenizer settings, as the converter recorded them.
CHATML = OllamaFamily(
    "chatml (Qwen, SmolLM)",
    ("<|im_start|>", "<|im_end|>"),
    "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n"
    "{{ end }}<|im_start|>assistant\n",
    ("<|im_end|>", "<|im_start|>"),
)
LLAMA3 = OllamaFamily(
    "llama-3",
    ("<|start_header_id|>", "<|eot_id|>"),
    "{{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n"
    "{{ .Content }}<|eot_id|>{{ end }}<|start_header_id|>assistant<|end_header_id|>\n\n",
    ("<|eot_id|>", "<|start_header_id|>"),
)
# Mistral's template has no system turn: the system message goes before the last user
# message (v0.3), which is what Ollama's $.System is there for.
MISTRAL = OllamaFamily(
    "mistral",
    ("[INST]", "[/INST]"),
    '{{- range $i, $_ := .Messages }}{{- if eq .Role "user" }}[INST] '
    "{{ if and $.System (eq (len (slice $.Messages $i)) 1) }}{{ $.System }}\n\n{{ end }}"
    '{{ .Content }}[/INST]{{- else if eq .Role "assistant" }} {{ .Content }}</s>'
    "{{- end }}{{- end }}",
    ("</s>", "[INST]", "[/INST]"),
    absent=("<<SYS>>",),
)
# Gemma's template refuses a system role: the system message goes at the head of the first
# user message, as the pilot's client does with --fold-system (and train_trl.py when it
# trains such a model). The first user message is the first or the second message.
GEMMA = OllamaFamily(
    "gemma",
    ("<start_of_turn>", "<end_of_turn>"),
    '{{- range $i, $_ := .Messages }}{{- if eq .Role "user" }}<start_of_turn>user\n'
    "{{ if and $.System (le $i 1) }}{{ $.System }}\n\n{{ end }}{{ .Content }}<end_of_turn>\n"
    '{{- else if eq .Role "assistant" }}<start_of_turn>model\n{{ .Content }}<end_of_turn>\n'
    "{{- end }}{{- end }}<start_of_turn>model\n",
    ("<end_of_turn>", "<start_of_turn>"),
)
PHI3 = OllamaFamily(
    "phi-3",
    ("<|user|>", "<|assistant|>", "<|end|>"),
    "{{- range .Messages }}<|{{ .Role }}|>\n{{ .Content }}<|end|>\n{{ end }}<|assistant|>\n",
    ("<|end|>", "<|user|>", "<|assistant|>"),
)
# The first stop of each is the token that closes its assistant turn.
FAMILIES = (CHATML, LLAMA3, MISTRAL, GEMMA, PHI3)
# A ChatML template that writes a system message of its own when the chat has none (SmolLM2,
# Qwen2.5): Ollama's SYSTEM does the same.
_DEFAULT_SYSTEM = re.compile(r"<\|im_start\|>system(?:\\n|\n)([^'\"{}<]+)<\|im_end\|>")


class Refused(Exception):
    """What this script will not write, and why."""


def family_of(chat_template: str) -> OllamaFamily:
    for family in FAMILIES:
        markers = all(marker in chat_template for marker in family.markers)
        if markers and not any(marker in chat_template for marker in family.absent):
            return family
    names = ", ".join(f.name for f in FAMILIES)
    raise Refused(
        "the model's chat template is none of the families this script writes an Ollama "
        f"TEMPLATE for ({names}); a hand-written TEMPLATE would be a guess, so no Modelfile. "
        "The GGUF itself carries the chat template: llama.cpp's server uses it as it is "
        "(run with OLLAMA=0)"
    )


def default_system(chat_template: str, family: OllamaFamily) -> str | None:
    if family is not CHATML:
        return None
    found = _DEFAULT_SYSTEM.search(chat_template)
    return found.group(1).strip() if found else None


def _quoted(text: str) -> str:
    """A Modelfile string: triple quotes keep newlines real (Ollama does not unescape "\\n")."""
    if '"""' in text:
        raise Refused(f"cannot quote {text!r} in a Modelfile")
    return f'"""{text}"""'


def modelfile(chat_template: str, gguf: str, stop: list[str], adapter: str | None = None) -> str:
    family = family_of(chat_template)
    lines = [
        f"# Ollama: the pilot's fine-tuned model as GGUF, chat format {family.name}.",
        "#   ollama create pilot -f Modelfile && ollama run pilot",
        f"FROM ./{gguf}",
    ]
    if adapter:
        lines.append(f"ADAPTER ./{adapter}")
    lines.append(f"TEMPLATE {_quoted(family.template)}")
    system = default_system(chat_template, family)
    if system:
        lines.append(f"SYSTEM {_quoted(system)}")
    lines.append("PARAMETER temperature 0")
    for token in family.stops:
        lines.append(f'PARAMETER stop "{token}"')
    for text in stop:  # the pilot's own stop rule (a newline for labels and short answers)
        lines.append(f"PARAMETER stop {_quoted(text)}")
    return "\n".join(lines) + "\n"


def chat_template_of(model: str) -> str:
    """The chat template of a local model folder (chat_template.jinja or tokenizer_config
    .json), else of a hub id through transformers."""
    folder = Path(model)
    if folder.is_dir():
        jinja = folder / "chat_template.jinja"
        if jinja.is_file():
            return jinja.read_text(encoding="utf-8")
        config = folder / "tokenizer_config.json"
        if config.is_file():
            template = json.loads(config.read_text(encoding="utf-8")).get("chat_template")
            if isinstance(template, str):
                return template
        raise Refused(f"{model} has no chat template (chat_template.jinja, tokenizer_config)")
    from transformers import AutoTokenizer

    template = AutoTokenizer.from_pretrained(model).chat_template
    if not isinstance(template, str):
        raise Refused(f"{model} has no chat template: use the model's instruct variant")
    return template


def architecture_of(model: str) -> str:
    folder = Path(model)
    if folder.is_dir():
        config: dict[str, Any] = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    else:
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(model).to_dict()
    architectures = config.get("architectures") or []
    if not architectures:
        raise Refused(f"{model}'s config.json names no architecture")
    return str(architectures[0])


def check_architecture(architecture: str, llama_cpp: Path) -> None:
    """Refuses an architecture that llama.cpp's converter has no class for."""
    converter = llama_cpp / "convert_hf_to_gguf.py"
    if not converter.is_file():
        raise Refused(f"{converter} not found: LLAMA_CPP must be a llama.cpp source tree")
    sys.path[:0] = [str(llama_cpp), str(llama_cpp / "gguf-py")]
    import convert_hf_to_gguf  # type: ignore[import-not-found]

    try:
        convert_hf_to_gguf.get_model_class(architecture)
    except NotImplementedError:
        raise Refused(
            f"llama.cpp at {llama_cpp} cannot convert the architecture {architecture}: no GGUF "
            "hand-off for this model (serve it with vLLM: serve/serve.sh)"
        ) from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="refuse what cannot be converted or templated")
    check.add_argument("--base-model", required=True)
    check.add_argument("--llama-cpp", type=Path, required=True)
    check.add_argument("--no-ollama", action="store_true", help="skip the chat template check")
    write = commands.add_parser("modelfile", help="write the Ollama Modelfile")
    write.add_argument("--model", required=True, help="the merged model's folder")
    write.add_argument("--gguf", required=True, help="the GGUF's file name, beside the Modelfile")
    write.add_argument("--adapter", help="a GGUF LoRA's file name, beside the Modelfile")
    write.add_argument("--prompt", type=Path, default=HERE / "prompt.json")
    write.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        if args.command == "check":
            architecture = architecture_of(args.base_model)
            check_architecture(architecture, args.llama_cpp)
            family = None if args.no_ollama else family_of(chat_template_of(args.base_model))
            chat_format = family.name if family else "not checked"
            print(f"architecture {architecture}: convertible; chat format: {chat_format}")
        else:
            stop = json.loads(args.prompt.read_text(encoding="utf-8")).get("stop", [])
            text = modelfile(chat_template_of(args.model), args.gguf, stop, args.adapter)
            args.out.write_text(text, encoding="utf-8")
            print(f"Modelfile written to {args.out}")
    except Refused as refused:
        print(f"refused: {refused}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
