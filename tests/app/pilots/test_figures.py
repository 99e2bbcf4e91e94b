"""The metric and sample of a pilot's stored split, read for its arms' figures."""

from __future__ import annotations

from app.db import session_scope
from app.domain.arm_figures import scored_sample
from app.domain.records import PilotData
from app.domain.samples.schemas import Example, PilotTask
from app.pilots import execution
from app.pilots.figures import split_sample
from app.pilots.models import Pilot
from tests.app.reports.factory import DEFAULT_ARMS, claim_for_test, start_for_test
from tests.factories.assessments import scored_assessment


def test_the_stored_splits_passages_group_its_questions_as_the_arms_intervals_do(client) -> None:
    client.signup()
    pilot_id = start_for_test(scored_assessment(client), DEFAULT_ARMS[:1])
    # Questions on one passage carry no named group: it is derived from the passage, on
    # reading back as on scoring.
    test = [
        Example(input=f"q{i}", target="an answer", context=f"passage {i // 4}") for i in range(12)
    ]
    data = PilotData(task=PilotTask.qa, train=[], validation=[], test=test)
    with session_scope() as session:
        pilot = session.get(Pilot, pilot_id)
        assert pilot is not None
        assert split_sample(session, pilot=pilot) is None  # before the preparation
        lease = claim_for_test(session, pilot_id)
        execution.store_split(
            session, pilot_id=pilot_id, lease=lease, data=data, caps=[], warnings=[]
        )
    with session_scope() as session:
        pilot = session.get(Pilot, pilot_id)
        assert pilot is not None
        stored = split_sample(session, pilot=pilot)
    assert stored == scored_sample(PilotTask.qa, test)
    assert stored is not None and (stored.metric, stored.n_items, stored.n_groups) == (
        "token_f1",
        12,
        3,
    )
