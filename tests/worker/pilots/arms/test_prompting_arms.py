"""The prompting arms end to end on tiny real data, with the real SmolLM2 and MiniLM."""

from __future__ import annotations

from typing import Any

import pytest

from app.domain.metrics import aligned_predictions, evaluate, quality_statistics
from app.domain.records import PilotData, Progress
from app.domain.samples.schemas import Document, Example, PilotTask
from tests.model_fixtures import read_banking77
from worker.pilots.arms import fewshot, rag

pytestmark = pytest.mark.slow

INTENTS = ("card_acceptance", "pin_blocked", "exchange_charge", "top_up_limits")


def banking_data(n_train_per_label: int = 6, n_test: int = 12) -> PilotData:
    train = [e for e in read_banking77("train") if e.target in INTENTS]
    test = [e for e in read_banking77("test") if e.target in INTENTS]
    per_label = {
        label: [e for e in train if e.target == label][:n_train_per_label] for label in INTENTS
    }
    return PilotData(
        task=PilotTask.classification,
        train=[e for label in INTENTS for e in per_label[label]],
        validation=[],
        test=test[::5][:n_test],
        labels=sorted(INTENTS),
    )


def accuracy(data: PilotData, result: Any) -> float:
    predictions = aligned_predictions(result.predictions, len(data.test))
    stats = quality_statistics(
        data.task, predictions, [e.target for e in data.test], labels=data.labels
    )
    return evaluate(stats["accuracy"], len(data.test))


def test_fewshot_on_banking77(resources: Any) -> None:
    data = banking_data()
    events: list[Progress] = []
    config = fewshot.FewShotConfig(k=4, batch_size=12)
    result = fewshot.run(config, resources, data, events.append)
    assert result.arm == "fewshot"
    assert sorted(p.index for p in result.predictions) == list(range(len(data.test)))
    assert all(p.prompt_tokens > 0 and p.latency_ms > 0 for p in result.predictions)
    assert all("\n" not in p.prediction for p in result.predictions)
    assert result.recipe["k_used"] == 4 and result.recipe["labels_listed"]
    assert events[-1] == Progress("generating", len(data.test), len(data.test), 0.0)
    # the four shots cover the four labels (stratified), chosen the same way every time
    again = fewshot.run(config, resources, PilotData(**{**data.__dict__, "test": data.test[:1]}))
    assert again.recipe["shot_lines"] == result.recipe["shot_lines"]
    assert 0.0 <= accuracy(data, result) <= 1.0


def test_rag_over_training_examples_finds_same_label_shots(resources: Any) -> None:
    data = banking_data()
    result = rag.run(rag.RagConfig(top_k=4, batch_size=12), resources, data)
    assert result.recipe["mode"] == "examples"
    assert result.retrieval_recall_at_k is None  # no gold documents in this mode
    assert result.recipe["label_hit_at_k"] >= 0.8
    # Nearest neighbours as shots: the model mostly copies the right label (4 easy intents).
    assert accuracy(data, result) >= 0.5


def test_rag_over_documents_reports_recall(resources: Any) -> None:
    documents = [
        Document(doc_id="returns", title="Returns", text="Items can be returned within 45 days."),
        Document(
            doc_id="hours", title="Opening hours", text="The shop opens at 9 and closes at 17."
        ),
        Document(
            doc_id="parking", title="Parking", text="Parking is free for the first two hours."
        ),
    ]
    train = [Example(input="How long is parking free?", target="two hours", doc_id="parking")]
    test = [
        Example(
            input="Within how many days can I return an item?", target="45 days", doc_id="returns"
        ),
        Example(input="When does the shop close?", target="17", doc_id="hours"),
    ]
    data = PilotData(task=PilotTask.qa, train=train, validation=[], test=test, documents=documents)
    result = rag.run(rag.RagConfig(top_k=1, batch_size=2, format_shots=1), resources, data)
    assert result.recipe["mode"] == "documents"
    assert result.retrieval_recall_at_k == 1.0
    assert "45" in result.predictions[0].prediction


def test_rag_uses_example_contexts_when_no_documents(resources: Any) -> None:
    context = "The museum's night tour starts at 21:00 on Fridays."
    data = PilotData(
        task=PilotTask.qa,
        train=[
            Example(input="Is the museum open on Mondays?", target="no", context="Closed Mondays.")
        ],
        validation=[],
        test=[Example(input="When does the night tour start?", target="21:00", context=context)],
    )
    documents = rag.corpus_documents(data)
    assert len(documents) == 2
    result = rag.run(rag.RagConfig(top_k=1, batch_size=1, format_shots=0), resources, data)
    assert result.retrieval_recall_at_k == 1.0


def test_passages_are_budgeted_by_tokens_best_first(tokenizer: Any) -> None:
    from worker.pilots.arms.rag import fit_prompts, passages_within
    from worker.pilots.retrieval import Hit

    passages = [f"Passage {n}: " + "word " * 40 for n in range(4)]
    sizes = [len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in passages]
    assert passages_within(tokenizer, passages, None) == 4
    assert passages_within(tokenizer, passages, sizes[0] + sizes[1]) == 2
    assert passages_within(tokenizer, passages, sizes[0] + sizes[1] - 1) == 1
    assert passages_within(tokenizer, passages, 1) == 1  # the best passage always counts
    hits = [
        [Hit(id=str(n), text=p, score=1.0 - n / 10, position=n) for n, p in enumerate(passages)]
    ]
    query = [Example(input="Which passage is first?", target="")]
    kwargs: dict[str, Any] = {"mode": "documents", "train": [], "tokenizer": tokenizer}
    prompts, used = fit_prompts(
        PilotTask.qa, query, hits, budget=4096, max_passage_tokens=2 * max(sizes), **kwargs
    )
    assert used == [2]
    assert "[2] Passage 1" in prompts[0].text and "Passage 2" not in prompts[0].text
    # The window still bounds the whole prompt under a generous passage budget.
    _, unbounded = fit_prompts(PilotTask.qa, query, hits, budget=4096, **kwargs)
    _, windowed = fit_prompts(
        PilotTask.qa, query, hits, budget=sum(sizes[:3]), max_passage_tokens=10_000, **kwargs
    )
    assert unbounded == [4] and windowed[0] < 3
