"""Where the app layer's wrappers count and fail around the pure steps (no broker).

The steps themselves (``materialize_step``, ``validate_step``) neither count nor fail on
purpose; ``instrumented_step`` adds both, and the place of the fault point is behaviour: the
give-up path of ``_on_processing_error`` skips the record and keeps what the step already
wrote to the state store, so the materializer must fail before folding and the validator after
marking a keyed job's first submit.
"""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import REGISTRY

import ledger
from processors import materializer, validator
from scrapeledger.errors import InjectedFault
from scrapeledger.settings import Settings
from scrapeledger.vault import Vault, new_key

JOB = "ZmF1bHRwb2ludHNqb2JpZGVudA"


class DictState:
    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def set(self, key: str, value: Any) -> None:
        self.data[key] = value


def submit(url: str, **fields: Any) -> bytes:
    return ledger.encode_event(ledger.JobSubmitted(job_id=JOB, event_id="s", at=1.0, source="edge-a",
                                                   url=url, **fields))


def counted(name: str, processor: str) -> float:
    return REGISTRY.get_sample_value(f"{name}_total", {"processor": processor}) or 0.0


def test_the_materializer_fails_before_it_folds_anything() -> None:
    state = DictState()
    with pytest.raises(InjectedFault):
        materializer.instrumented_step(submit("http://x/boom"), JOB, state, "m", "state:raise:boom")
    assert state.data == {}
    # another URL passes, and the wrapper writes what the pure step writes
    wrapped = materializer.instrumented_step(submit("http://x/fine"), JOB, state, "m", "state:raise:boom")
    assert wrapped == materializer.materialize_step(submit("http://x/fine"), JOB, DictState(), "m")


def test_the_validator_fails_after_marking_a_keyed_submit() -> None:
    settings = Settings(faults="validator:raise:boom")
    vault = Vault([new_key()])
    store = DictState()
    with pytest.raises(InjectedFault):
        validator.instrumented_step(submit("http://x/boom", idempotency_digest="d"), settings, vault,
                                    frozenset(), store)
    assert store.data == {validator.SUBMITTED_KEY: True}
    # a keyed job's later submit is skipped before the fault point: nothing raises
    assert validator.instrumented_step(submit("http://x/boom", idempotency_digest="d"), settings,
                                       vault, frozenset(), store) == []


def test_the_wrappers_count_records_and_poison_the_steps_do_not() -> None:
    events, poison = counted("scrapeledger_events_processed", "state"), \
        counted("scrapeledger_poison_records", "state")
    materializer.materialize_step(b"\x00not json", "k", DictState(), "m")
    assert (counted("scrapeledger_events_processed", "state"),
            counted("scrapeledger_poison_records", "state")) == (events, poison)
    materializer.instrumented_step(b"\x00not json", "k", DictState(), "m", "")
    assert (counted("scrapeledger_events_processed", "state"),
            counted("scrapeledger_poison_records", "state")) == (events + 1, poison + 1)

    events = counted("scrapeledger_events_processed", "validator")
    poison = counted("scrapeledger_poison_records", "validator")
    vault = Vault([new_key()])
    bad = b'{"type":"JobSubmitted", broken'
    assert validator.validate_step(bad, Settings(), vault) == []
    assert validator.instrumented_step(bad, Settings(), vault, frozenset(), None) == []
    assert (counted("scrapeledger_events_processed", "validator"),
            counted("scrapeledger_poison_records", "validator")) == (events + 1, poison + 1)
