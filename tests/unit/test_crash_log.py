"""The decisions the scraper and the processors take from the tries counted in the ledger."""

from __future__ import annotations

import pytest

import ledger
from processors._crashes import CrashLog
from scrapeledger import faults
from scrapeledger.errors import ConfigError, InjectedFault

JOB = "job-aaaaaaaaaaaaaaaaaaaaa"


def started(attempt: int, *, solo: bool = False) -> ledger.AttemptStarted:
    return ledger.AttemptStarted(job_id=JOB, event_id=ledger.new_event_id(), at=1.0, source="s",
                                 attempt=attempt,
                            solo=solo)


def plan(log: CrashLog, attempt: int = 1) -> str:
    return log.plan(JOB, attempt, max_crashes=2)


def test_an_attempt_runs_normally_until_two_process_deaths_then_alone_then_is_dead_lettered() -> None:
    log = CrashLog()
    assert plan(log) == "run"
    log.add(started(1))
    assert plan(log) == "run"  # one death with many attempts in flight blames nobody
    log.add(started(1))
    assert plan(log) == "solo"
    log.add(started(1, solo=True))
    assert plan(log) == "solo"
    log.add(started(1, solo=True))
    assert plan(log) == "dead"
    assert plan(log, attempt=2) == "run"  # counts are per attempt


@pytest.mark.parametrize(
    "outcome",
    [
        ledger.ScrapeSucceeded(job_id=JOB, event_id=ledger.outcome_id(JOB, 1), at=1, source="s", attempt=1,
                               url="u",
                          final_url="u", http_status=200, headers={}, elapsed_ms=1, body_bytes=0),
        ledger.JobFailed(job_id=JOB, event_id=ledger.outcome_id(JOB, 1), at=1, source="s", attempt=1,
                         code="http_404",
                    message="m"),
        ledger.JobDeadLettered(job_id=JOB, event_id=ledger.outcome_id(JOB, 1), at=1, source="s", attempt=1,
                          code="timeout", message="m"),
        ledger.RetryScheduled(job_id=JOB, event_id=ledger.retry_id(JOB, 2), at=1, source="s", attempt=2,
                              url="u",
                         not_before=1),
    ],
    ids=lambda e: e.TYPE,
)
def test_an_attempt_whose_outcome_is_recorded_is_not_fetched_again(outcome: ledger.Event) -> None:
    log = CrashLog()
    for _ in range(5):
        log.add(started(1))
    log.add(outcome)
    assert plan(log) == "skip"
    assert log.unfinished == 0


def test_an_attempt_failed_alone_does_not_finish_an_attempt() -> None:
    # AttemptFailed is written before its RetryScheduled; without the retry the attempt must run
    # again, or the job would wait forever for a retry nobody scheduled
    log = CrashLog()
    log.add(ledger.AttemptFailed(job_id=JOB, event_id=ledger.outcome_id(JOB, 1), at=1, source="s", attempt=1,
                            code="timeout", message="m", retryable=True))
    assert plan(log) == "run"


def test_processing_failures_keep_the_highest_count_per_record() -> None:
    log = CrashLog()
    for n in (1, 3, 2):
        log.add(ledger.ProcessingFailed(job_id=JOB, event_id=f"{JOB}/v/f{n}", at=1, source="v",
                                   processor="validator", partition=2, offset=7, failures=n, error="boom"))
    assert log.failures[("validator", 2, 7)] == 3
    assert log.failures[("state", 2, 7)] == 0


def test_fault_rules_are_parsed_and_bad_ones_are_named() -> None:
    assert faults.parse("validator:raise:/boom, scraper:kill:/die") == (
        faults.Fault("validator", "raise", "/boom"),
        faults.Fault("scraper", "kill", "/die"),
    )
    for bad in ("edge:raise:/x", "validator:explode:/x", "validator:raise:", "nonsense"):
        with pytest.raises(ConfigError, match="SCRAPELEDGER_FAULTS"):
            faults.parse(bad)


def test_a_fault_fires_only_for_its_component_and_url() -> None:
    spec = "validator:raise:/boom"
    faults.check(spec, "validator", "http://x/fine")
    faults.check(spec, "scraper", "http://x/boom")
    faults.check("", "validator", "http://x/boom")
    with pytest.raises(InjectedFault):
        faults.check(spec, "validator", "http://x/boom")


def test_a_trigger_written_again_after_its_outcome_is_not_fetched_again() -> None:
    from processors.scraper import scrape_trigger

    log = CrashLog()
    validated = ledger.JobValidated(job_id=JOB, event_id=f"{JOB}/validated", at=1, source="v", attempt=1,
                                    url="u")
    succeeded = ledger.ScrapeSucceeded(job_id=JOB, event_id=ledger.outcome_id(JOB, 1), at=2, source="s",
                                       attempt=1,
                                  url="u", final_url="u", http_status=200, headers={}, elapsed_ms=1,
                                  body_bytes=0)
    assert scrape_trigger(ledger.encode_event(validated), log) == validated
    assert plan(log) == "run"
    assert scrape_trigger(ledger.encode_event(succeeded), log) is None
    # a restarted validator writes the same JobValidated again, after the outcome
    assert scrape_trigger(ledger.encode_event(validated), log) == validated
    assert plan(log) == "skip"


def test_finished_attempts_are_remembered_up_to_a_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    import processors._crashes as crashes

    monkeypatch.setattr(crashes, "FINISHED_KEPT", 3)
    log = CrashLog()
    for n in range(1, 6):
        log.add(ledger.JobFailed(job_id=JOB, event_id=ledger.outcome_id(JOB, n), at=1, source="s", attempt=n,
                            code="http_404", message="m"))
    assert list(log.finished) == [(JOB, 3), (JOB, 4), (JOB, 5)]


def test_no_attempt_of_a_cancelled_job_runs_any_more() -> None:
    log = CrashLog()
    log.add(started(1))
    log.add(ledger.JobCancelled(job_id=JOB, event_id="c", at=1.0, source="edge-a"))
    assert plan(log, 1) == "skip"
    assert plan(log, 2) == "skip"  # a retry scheduled before the cancel
    assert log.is_cancelled(JOB) and not log.is_cancelled("another-job-xxxxxxxxxxx")
