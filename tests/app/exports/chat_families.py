"""Tokenizers of the model families teams deploy, built offline from their published configs.

Each family's special tokens, BOS rule (whether the tokenizer adds a BOS when asked for
special tokens) and chat template are written here as data, as the models' tokenizer
configs publish them (templates shortened to the branches a single-turn chat reaches). The
vocabulary is a small byte-level BPE trained on the spot: token ids differ from the real
models', but everything that decides how a conversation is tokenised (the template, the
special tokens, the BOS post-processor) is the family's. Nothing comes from a model hub.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

LLAMA3_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    " + message['content'] | trim + '<|eot_id|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}"
    "{% endif %}"
)
# Mistral-7B-Instruct-v0.3: the system message goes before the last user message.
MISTRAL_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}{%- set system_message = messages[0]['content'] %}"
    "{%- set loop_messages = messages[1:] %}{%- else %}{%- set loop_messages = messages %}"
    "{%- endif %}{{- bos_token }}{%- for message in loop_messages %}"
    "{%- if message['role'] == 'user' %}"
    "{%- if loop.last and system_message is defined %}"
    "{{- '[INST] ' + system_message + '\n\n' + message['content'] + '[/INST]' }}"
    "{%- else %}{{- '[INST] ' + message['content'] + '[/INST]' }}{%- endif %}"
    "{%- elif message['role'] == 'assistant' %}"
    "{{- ' ' + message['content'] | trim + eos_token }}"
    "{%- else %}{{- raise_exception('Only user and assistant roles are supported!') }}"
    "{%- endif %}{%- endfor %}"
)
GEMMA2_TEMPLATE = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}"
    "{{ raise_exception('System role not supported') }}{% endif %}"
    "{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{% endif %}{% if (message['role'] == 'assistant') %}{% set role = 'model' %}"
    "{% else %}{% set role = message['role'] %}{% endif %}"
    "{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}"
)
QWEN25_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}"
    "{{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}"
    "{%- else %}{{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. "
    "You are a helpful assistant.<|im_end|>\n' }}{%- endif %}"
    "{%- for message in messages %}{%- if message.role != 'system' %}"
    "{{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}"
    "{%- endif %}{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}"
    "{%- endif %}"
)
PHI3_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{'<|system|>\n' + message['content'] + '<|end|>\n'}}"
    "{% elif message['role'] == 'user' %}{{'<|user|>\n' + message['content'] + '<|end|>\n'}}"
    "{% elif message['role'] == 'assistant' %}"
    "{{'<|assistant|>\n' + message['content'] + '<|end|>\n'}}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}"
)


@dataclass(frozen=True)
class Family:
    name: str
    bos: str | None  # the BOS the tokenizer adds with add_special_tokens=True
    eos: str
    end_of_turn: str  # the token that closes the assistant's turn
    specials: tuple[str, ...]
    template: str


FAMILIES = (
    Family(
        "llama-3.1",
        "<|begin_of_text|>",
        "<|eot_id|>",
        "<|eot_id|>",
        (
            "<|begin_of_text|>",
            "<|end_of_text|>",
            "<|start_header_id|>",
            "<|end_header_id|>",
            "<|eot_id|>",
        ),
        LLAMA3_TEMPLATE,
    ),
    Family("mistral-v0.3", "<s>", "</s>", "</s>", ("<unk>", "<s>", "</s>"), MISTRAL_TEMPLATE),
    Family(
        "gemma-2",
        "<bos>",
        "<eos>",
        "<end_of_turn>",
        ("<pad>", "<eos>", "<bos>", "<start_of_turn>", "<end_of_turn>"),
        GEMMA2_TEMPLATE,
    ),
    Family(
        "qwen2.5",
        None,
        "<|im_end|>",
        "<|im_end|>",
        ("<|endoftext|>", "<|im_start|>", "<|im_end|>"),
        QWEN25_TEMPLATE,
    ),
    Family(
        "phi-3",
        "<s>",
        "<|endoftext|>",
        "<|end|>",
        (
            "<unk>",
            "<s>",
            "</s>",
            "<|endoftext|>",
            "<|system|>",
            "<|user|>",
            "<|assistant|>",
            "<|end|>",
        ),
        PHI3_TEMPLATE,
    ),
)
FAMILY_NAMES = [family.name for family in FAMILIES]

CORPUS = [
    "Classify the user's text. Reply with the label only. Possible labels: billing, refund.",
    "message about billing card arrival refund where is my card I was charged twice",
    "Answer the question briefly. Reply with the answer only. Question: what is the fee?",
    "system user assistant model You are a helpful assistant.",
] * 4


@cache
def tokenizer_for(name: str) -> PreTrainedTokenizerFast:
    family = next(f for f in FAMILIES if f.name == name)
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=list(family.specials),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(CORPUS, trainer)
    if family.bos is not None:
        # How Llama-3, Mistral, Gemma and Phi-3 tokenizers add their BOS: a post-processor
        # that runs whenever add_special_tokens is true.
        bos_id = backend.token_to_id(family.bos)
        backend.post_processor = processors.TemplateProcessing(
            single=f"{family.bos} $A",
            pair=f"{family.bos} $A $B",
            special_tokens=[(family.bos, bos_id)],
        )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token=family.bos, eos_token=family.eos
    )
    tokenizer.add_special_tokens(
        {
            "additional_special_tokens": [
                t for t in family.specials if t not in (family.bos, family.eos)
            ]
        }
    )
    tokenizer.chat_template = family.template
    tokenizer.name_or_path = name
    return tokenizer
