"""schemathesis against ``/openapi.json`` on a live stack: for every operation, a bounded number
of generated requests (valid ones, then invalid ones), none answered with a server error, every
answer matching the schema (status, content type, body), invalid input refused with a 4xx.

Short form: ``EXAMPLES`` requests per operation and mode. The stack runs the materializer and the
validator (keyed submits and cancels are answered by the materializer) but no scraper: the
generated jobs are recorded, never fetched.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from tests.support.stack import Stack

EXAMPLES = 20


@pytest.mark.timeout(600)
def test_every_operation_answers_within_its_schema(stack: Stack) -> None:
    for component in ("state", "validator"):
        stack.start(component)
    base = stack.edge().replace("ws://", "http://").rstrip("/")
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 7  # the HTTP API's 5, the dashboard's list and counters
    for operation in operations:
        raw = operation.definition.raw
        takes_input = bool(raw.get("parameters") or raw.get("requestBody"))
        # an operation without input (GET /v1/stats) has no invalid request to make
        modes = [GenerationMode.POSITIVE, *([GenerationMode.NEGATIVE] if takes_input else [])]
        for mode in modes:

            @given(case=operation.as_strategy(generation_mode=mode), data=st.data())
            @settings(max_examples=EXAMPLES, deadline=None, database=None,
                      phases=[Phase.explicit, Phase.generate],
                      suppress_health_check=list(HealthCheck))
            def check(case: schemathesis.Case, data: st.DataObject) -> None:
                case.call_and_validate(base_url=base, timeout=30)

            check()
