"""A fast, deterministic token count for summaries and warnings.

Counts words and punctuation marks. Subword tokenizers (BPE, SentencePiece) split rare
words into several pieces, so real counts run somewhat higher (roughly 1.2–1.5× for English
prose, more for code or other languages); this is for comparing examples and spotting long
ones, not for billing. The pilot measures real prompt tokens with the model's tokenizer.
"""

from __future__ import annotations

import re

_TOKEN = re.compile(r"\w+|[^\w\s]")


def approx_tokens(text: str) -> int:
    return len(_TOKEN.findall(text))
