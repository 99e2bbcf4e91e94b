"""Every pilot metric, in one place (the web app imports these too; never copy them).

Quality metrics are kept as *statistics over item indices* rather than single numbers, so
the bootstrap can resample the same test items for every arm (a paired comparison):
a statistic takes a matrix of item indices, one resample per row, and returns one value
per row. Mean-type metrics (accuracy, EM, token F1, ROUGE-L, ...) are means of per-item
score vectors; macro-F1 is not a mean of items, so it is recomputed on each resample.
"""

from __future__ import annotations

import json
import re
import string
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.domain.records import MetricValue, Prediction
from app.domain.samples.schemas import PilotTask

# (index matrix: resamples x items) -> one value per resample
Statistic = Callable[[np.ndarray], np.ndarray]

LABEL_UNMATCHED = "label_unmatched"


# --------------------------------------------------------------------------- classification


def normalize_label(text: str) -> str:
    """Lowercase; underscores, hyphens and runs of spaces become one space; edge punctuation off."""
    text = text.strip().lower()
    text = re.sub(r"[\s_\-]+", " ", text)
    return text.strip(" .,:;!?\"'`*()[]{}")


# A lead-in some models write before the label ("Label: refund", "The answer is: refund"),
# matched on the normalised line as whole words, so "classic" or "labels" is not one.
_LABEL_LEAD_IN = re.compile(r"^(?:the )?(?:predicted )?(?:label|answer|category|class)(?: is)?\b:?")


def _names_label(line: str, label: str) -> bool:
    """The normalised line is the label, or starts with it followed by a word boundary."""
    if not label or not line.startswith(label):
        return False
    return re.match(r"\w", line[len(label) :]) is None


def match_label(prediction: str, labels: Sequence[str]) -> str | None:
    """The label a free-text prediction names, or None.

    The first non-empty line, normalised, names a label when it is the label or starts with
    it as whole words ("card arrival is late" names "card arrival"; "cardinal" does not name
    "card", nor "Notable" "no"); the longest such label wins. A line that names none is read
    again past a lead-in such as "Label:" or "The answer is:".
    """
    lines = [line for line in prediction.strip().splitlines() if line.strip()]
    if not lines:
        return None
    first = normalize_label(lines[0])
    by_norm = {normalize_label(label): label for label in labels}
    candidates = [first]
    lead_in = _LABEL_LEAD_IN.match(first)
    if lead_in:
        candidates.append(normalize_label(first[lead_in.end() :]))
    for line in candidates:
        named = [norm for norm in by_norm if _names_label(line, norm)]
        if named:
            return by_norm[max(named, key=len)]
    return None


def label_ids(
    predictions: Sequence[str], targets: Sequence[str], labels: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Integer ids for gold and predicted labels; an unmatched prediction is -1."""
    vocabulary = list(dict.fromkeys([*labels, *targets]))  # gold labels always have an id
    position = {label: i for i, label in enumerate(vocabulary)}
    gold = np.array([position[target] for target in targets], dtype=np.int64)
    predicted = []
    for text in predictions:
        label = match_label(text, vocabulary)
        predicted.append(position[label] if label is not None else -1)
    return gold, np.array(predicted, dtype=np.int64)


def label_match_metrics(
    task: PilotTask, predictions: Sequence[str], targets: Sequence[str], labels: Sequence[str]
) -> list[MetricValue]:
    """`label_unmatched`: the share of a classification arm's predictions that name no label.

    They count as wrong in accuracy already; the rate says how much of an arm's error is
    answering off the label set rather than choosing the wrong label."""
    if task is not PilotTask.classification or not predictions:
        return []
    _, predicted = label_ids(predictions, targets, labels)
    return [MetricValue(LABEL_UNMATCHED, float((predicted < 0).mean()))]


def macro_f1_value(gold: np.ndarray, predicted: np.ndarray) -> float:
    """Macro-F1 over the labels present in gold or prediction (sklearn's convention).

    An unmatched prediction (-1) counts as a miss for its gold label and as no label.
    """
    if gold.size == 0:
        return 0.0
    size = int(max(gold.max(), predicted.max(initial=-1))) + 1
    hits = gold[predicted == gold]
    tp = np.bincount(hits, minlength=size).astype(float)
    gold_count = np.bincount(gold, minlength=size).astype(float)
    pred_count = np.bincount(predicted[predicted >= 0], minlength=size).astype(float)
    present = (gold_count + pred_count) > 0
    f1 = 2 * tp[present] / (gold_count[present] + pred_count[present])
    return float(f1.mean())


def macro_f1_statistic(gold: np.ndarray, predicted: np.ndarray) -> Statistic:
    def statistic(indices: np.ndarray) -> np.ndarray:
        return np.array([macro_f1_value(gold[row], predicted[row]) for row in indices])

    return statistic


# --------------------------------------------------------------------------- QA / extraction


def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lowercase, no punctuation, no articles, single spaces."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def exact_match(prediction: str, target: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(target))


def token_f1(prediction: str, target: str) -> float:
    """SQuAD token F1: overlap of normalised tokens (as a multiset)."""
    predicted = normalize_answer(prediction).split()
    gold = normalize_answer(target).split()
    if not predicted or not gold:
        return float(predicted == gold)
    common = Counter(predicted) & Counter(gold)
    overlap = sum(common.values())
    if overlap == 0:
        return 0.0
    precision = overlap / len(predicted)
    recall = overlap / len(gold)
    return 2 * precision * recall / (precision + recall)


# --------------------------------------------------------------------------- structured output

_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL | re.IGNORECASE)


def parse_json_output(text: str) -> Any | None:
    """The JSON value in a model output, or None.

    A Markdown code fence around the JSON is accepted (models add one unprompted, and any
    consumer would strip it); anything else around the JSON makes it invalid.
    """
    stripped = text.strip()
    fenced = _FENCE.match(stripped)
    if fenced:
        stripped = fenced.group(1)
    try:
        value = json.loads(stripped)
    except (json.JSONDecodeError, ValueError):
        return None
    return value if isinstance(value, dict | list) else None


def flatten_fields(value: Any, prefix: str = "") -> Counter[tuple[str, str]]:
    """(path, normalised scalar) pairs; list items share their parent's path (a multiset)."""
    pairs: Counter[tuple[str, str]] = Counter()
    if isinstance(value, dict):
        for key, item in value.items():
            pairs.update(flatten_fields(item, f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(value, list):
        for item in value:
            pairs.update(flatten_fields(item, f"{prefix}[]"))
    else:
        scalar = json.dumps(value) if not isinstance(value, str) else value
        pairs[(prefix, " ".join(scalar.lower().split()))] += 1
    return pairs


def json_valid(prediction: str) -> float:
    return float(parse_json_output(prediction) is not None)


def field_f1(prediction: str, target: str) -> float:
    """F1 between the (field path, value) pairs of prediction and target JSON."""
    gold_value = parse_json_output(target)
    gold = flatten_fields(gold_value) if gold_value is not None else Counter()
    predicted_value = parse_json_output(prediction)
    predicted = flatten_fields(predicted_value) if predicted_value is not None else Counter()
    if not gold and not predicted:
        return 1.0 if predicted_value is not None else 0.0
    overlap = sum((gold & predicted).values())
    if overlap == 0:
        return 0.0
    precision = overlap / sum(predicted.values())
    recall = overlap / sum(gold.values())
    return 2 * precision * recall / (precision + recall)


def targets_are_json(targets: Sequence[str]) -> bool:
    return bool(targets) and all(parse_json_output(target) is not None for target in targets)


# --------------------------------------------------------------------------- generation


# Han ideographs and kana: words are not separated by spaces in Chinese and Japanese, so
# each character is a token (as character-level ROUGE for these languages counts them).
_UNSPACED = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
# Otherwise a token is a run of Unicode letters and digits; "_" separates words as a space does.
_ROUGE_TOKEN = re.compile(f"[{_UNSPACED}]|[^\\W_{_UNSPACED}]+")


def _rouge_tokens(text: str) -> list[str]:
    return _ROUGE_TOKEN.findall(text.lower())


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Longest common subsequence length, O(len(a) * len(b)) time, O(len(b)) memory."""
    if not a or not b:
        return 0
    previous = [0] * (len(b) + 1)
    for token in a:
        current = [0]
        for j, other in enumerate(b, start=1):
            if token == other:
                current.append(previous[j - 1] + 1)
            else:
                current.append(max(previous[j], current[j - 1]))
        previous = current
    return previous[-1]


def rouge_l(prediction: str, target: str) -> float:
    """ROUGE-L F1 (beta = 1, as rouge-score reports it) over lowercase Unicode word tokens.

    Two texts without a word between them ("", "?!") score 1 only when they are the same
    text: no tokens is no evidence of agreement."""
    predicted = _rouge_tokens(prediction)
    gold = _rouge_tokens(target)
    if not predicted and not gold:
        return float(prediction.strip() == target.strip())
    lcs = lcs_length(predicted, gold)
    if lcs == 0:
        return 0.0
    precision = lcs / len(predicted)
    recall = lcs / len(gold)
    return 2 * precision * recall / (precision + recall)


def embedding_similarity(
    embedder: Any, predictions: Sequence[str], targets: Sequence[str]
) -> np.ndarray:
    """Per-item cosine similarity of MiniLM embeddings (normalised, so a dot product)."""
    if not predictions:
        return np.zeros(0)
    vectors = embedder.encode(
        [*predictions, *targets],
        normalize_embeddings=True,
        convert_to_numpy=True,
        show_progress_bar=False,
    )
    left, right = vectors[: len(predictions)], vectors[len(predictions) :]
    return np.asarray((left * right).sum(axis=1), dtype=float)


# --------------------------------------------------------------------------- per task


def mean_statistic(scores: np.ndarray) -> Statistic:
    def statistic(indices: np.ndarray) -> np.ndarray:
        return np.asarray(scores[indices].mean(axis=1), dtype=float)

    return statistic


def evaluate(statistic: Statistic, n_items: int) -> float:
    """A statistic on the full test set (the point estimate)."""
    return float(statistic(np.arange(n_items)[None, :])[0])


def quality_statistics(
    task: PilotTask,
    predictions: Sequence[str],
    targets: Sequence[str],
    *,
    labels: Sequence[str] = (),
    embedder: Any = None,
    alternatives: Sequence[Sequence[str]] | None = None,
) -> dict[str, Statistic]:
    """Quality metrics for one arm, keyed by name, as bootstrappable statistics.

    `alternatives` holds each target's other gold answers (SQuAD keeps several per
    question); exact match and token F1 score the best of the target and its alternatives,
    as the SQuAD v1.1 evaluation script does."""
    if len(predictions) != len(targets):
        raise ValueError("one prediction per target is required")
    if alternatives is not None and len(alternatives) != len(targets):
        raise ValueError("one sequence of alternatives per target is required")
    if task is PilotTask.classification:
        gold, predicted = label_ids(predictions, targets, labels)
        return {
            "accuracy": mean_statistic((gold == predicted).astype(float)),
            "macro_f1": macro_f1_statistic(gold, predicted),
        }
    pairs = list(zip(predictions, targets, strict=True))
    stats: dict[str, Statistic] = {}
    if task is PilotTask.generation:
        stats["rouge_l"] = mean_statistic(np.array([rouge_l(p, t) for p, t in pairs]))
        if embedder is not None:
            similarity = embedding_similarity(embedder, predictions, targets)
            stats["embedding_similarity"] = mean_statistic(similarity)
        return stats
    if task is PilotTask.extraction and targets_are_json(targets):
        stats["json_valid"] = mean_statistic(np.array([json_valid(p) for p, _ in pairs]))
        stats["field_f1"] = mean_statistic(np.array([field_f1(p, t) for p, t in pairs]))
    golds = [
        (t, *others) for t, others in zip(targets, alternatives or [()] * len(targets), strict=True)
    ]
    scored = list(zip(predictions, golds, strict=True))
    stats["exact_match"] = mean_statistic(
        np.array([max(exact_match(p, g) for g in gs) for p, gs in scored])
    )
    stats["token_f1"] = mean_statistic(
        np.array([max(token_f1(p, g) for g in gs) for p, gs in scored])
    )
    return stats


def aligned_predictions(predictions: Sequence[Prediction], n_test: int) -> list[str]:
    """Prediction texts in test order; a missing item counts as an empty answer."""
    texts = [""] * n_test
    for prediction in predictions:
        if 0 <= prediction.index < n_test:
            texts[prediction.index] = prediction.prediction
    return texts


# --------------------------------------------------------------------------- operations


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=float), q)) if values else 0.0


@dataclass(frozen=True)
class PriceRow:
    name: str
    input_per_million: float  # USD per 1M prompt tokens
    output_per_million: float  # USD per 1M output tokens


def cost_per_1k_queries(prompt_tokens: float, output_tokens: float, price: PriceRow) -> float:
    """USD for 1,000 queries at these mean tokens per query."""
    per_query = (
        prompt_tokens * price.input_per_million + output_tokens * price.output_per_million
    ) / 1_000_000
    return per_query * 1000


def operational_metrics(
    predictions: Sequence[Prediction], price: PriceRow | None = None
) -> list[MetricValue]:
    """Latency p50/p95, tokens per query and (with a price row) cost per 1k queries."""
    if not predictions:
        return []
    latencies = [p.latency_ms for p in predictions]
    prompt = float(np.mean([p.prompt_tokens for p in predictions]))
    output = float(np.mean([p.output_tokens for p in predictions]))
    values = [
        MetricValue("latency_p50_ms", percentile(latencies, 50)),
        MetricValue("latency_p95_ms", percentile(latencies, 95)),
        MetricValue("prompt_tokens_per_query", prompt),
        MetricValue("output_tokens_per_query", output),
    ]
    if price is not None:
        values.append(MetricValue("cost_per_1k_usd", cost_per_1k_queries(prompt, output, price)))
    return values
