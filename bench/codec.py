"""CPU per ledger event: ``ledger.decode_event`` and ``ledger.fold``, against ``orjson.loads``.

Every processor decodes every ledger record it reads, and the materializer folds each one, so
these two are on the hot path of the whole service. The baseline in the same invocation is the
floor of any decoder: ``orjson.loads`` of the same bytes. Printed: CPU microseconds per event
(best of ``--rounds``, process time) and the ratio to that floor.

    python bench/codec.py [--jobs 25000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import orjson

import ledger


def history(job: str) -> list[ledger.Event]:
    """One job's usual life: submit, attach, validate, a failed attempt, a retry, success, delivery."""
    url = "https://example.com/a"
    return [
        ledger.JobSubmitted(job_id=job, event_id=f"{job}/s", at=1.0, source="edge-0", url=url,
                            headers={"accept": "text/html"}, timeout_s=10.0),
        ledger.ClientAttached(job_id=job, event_id=f"{job}/c", at=1.5, source="edge-1", pod="edge-1"),
        ledger.JobValidated(job_id=job, event_id=f"{job}/validated", at=2.0, source="validator",
                            attempt=1, url=url, formats=("html", "markdown")),
        ledger.AttemptStarted(job_id=job, event_id=f"{job}/a1/start", at=3.0, source="scraper", attempt=1),
        ledger.AttemptFailed(job_id=job, event_id=f"{job}/a1/outcome", at=3.5, source="scraper",
                             attempt=1, code="timeout", message="timed out", retryable=True),
        ledger.RetryScheduled(job_id=job, event_id=f"{job}/a2/retry", at=3.6, source="scraper",
                              attempt=2, url=url, not_before=5.0),
        ledger.ScrapeSucceeded(job_id=job, event_id=f"{job}/a2/outcome", at=6.0, source="scraper",
                               attempt=2, url=url, final_url=url, http_status=200,
                               headers={"content-type": "text/html"}, elapsed_ms=12.5,
                               body_bytes=1000, body_partition=3, body_offset=99),
        ledger.ResultDelivered(job_id=job, event_id=f"{job}/d", at=7.0, source="edge-0", pod="edge-0"),
    ]


def best(fn: Callable[[], object], rounds: int) -> float:
    """The least process time of ``rounds`` runs of ``fn`` (the noise on this machine is additive)."""
    times = []
    for _ in range(rounds):
        began = time.process_time()
        fn()
        times.append(time.process_time() - began)
    return min(times)


def fold_every(events: list[ledger.Event]) -> None:
    states: dict[str, ledger.JobState] = {}
    for event in events:
        states[event.job_id] = ledger.fold(states.get(event.job_id), event)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=25_000, help="jobs of 8 events each")
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    events = [e for j in range(args.jobs) for e in history(f"job{j:08d}")]
    raw = [ledger.encode_event(e) for e in events]
    decoded = [ledger.decode_event(r) for r in raw]
    assert decoded == events, "decode(encode(e)) must give e back"
    per = 1e6 / len(raw)
    floor = best(lambda: [orjson.loads(r) for r in raw], args.rounds) * per
    decode = best(lambda: [ledger.decode_event(r) for r in raw], args.rounds) * per
    fold = best(lambda: fold_every(decoded), args.rounds) * per
    print(f"{len(raw)} events, best of {args.rounds}, CPU µs per event")
    print(f"{'step':<22}{'µs/event':>10}{'x orjson.loads':>16}")
    for name, value in (("orjson.loads (floor)", floor), ("ledger.decode_event", decode),
                        ("ledger.fold", fold)):
        print(f"{name:<22}{value:>10.2f}{value / floor:>16.1f}")


if __name__ == "__main__":
    main()
