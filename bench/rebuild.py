"""``replay rebuild`` over a ledger of ``--events`` events: events/s of fold + write-back.

Fills a fresh ledger with synthetic but realistic job histories (submitted, validated, one
failed attempt and retry on every fifth job, succeeded, delivered), then times
``replay.rebuild``. The baseline, in the same run, is the bare read of the same records (no
decode, no fold): the ratio is what decoding and folding cost on top of Kafka.

    .venv/bin/python bench/rebuild.py --events 100000
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import ledger
from bench.e2e import broker
from replay import read_to_end, rebuild
from scrapeledger import topics
from scrapeledger.clients import make_producer
from scrapeledger.settings import Settings


def job_events(job: str) -> list[ledger.Event]:
    url = f"http://example.org/{job}"
    out: list[ledger.Event] = [
        ledger.JobSubmitted(job_id=job, event_id=f"{job}/submitted", at=1.0, source="edge-0", url=url),
        ledger.JobValidated(job_id=job, event_id=f"{job}/validated", at=1.1, source="v", attempt=1, url=url),
    ]
    attempt = 1
    if hash(job) % 5 == 0:
        out += [
            ledger.AttemptFailed(job_id=job, event_id=ledger.outcome_id(job, 1), at=1.2, source="s",
                                 attempt=1,
                            code="http_503", message="busy", retryable=True, http_status=503),
            ledger.RetryScheduled(job_id=job, event_id=ledger.retry_id(job, 2), at=1.2, source="s", attempt=2,
                             url=url, not_before=1.7),
        ]
        attempt = 2
    out += [
        ledger.ScrapeSucceeded(job_id=job, event_id=ledger.outcome_id(job, attempt), at=2.0, source="s",
                          attempt=attempt, url=url, final_url=url, http_status=200,
                          headers={"content-type": "text/html"}, elapsed_ms=12.0, body_bytes=47000,
                          body_partition=0, body_offset=1),
        ledger.ResultDelivered(job_id=job, event_id=f"{job}/d", at=2.1, source="edge-0", pod="edge-0"),
    ]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=100_000)
    args = ap.parse_args()
    with broker() as bootstrap:
        settings = Settings(bootstrap_servers=bootstrap, topic_prefix=f"rb-{uuid.uuid4().hex[:8]}-")
        topics.ensure_topics(settings)
        producer = make_producer(settings, **{"linger.ms": 50})
        n = 0
        while n < args.events:
            job = ledger.new_job_id()
            for e in job_events(job):
                producer.produce(settings.topic(topics.LEDGER), key=job, value=ledger.encode_event(e))
                n += 1
            producer.poll(0)
        producer.flush(120)
        t0 = time.perf_counter()
        read = sum(1 for _ in read_to_end(settings, settings.topic(topics.LEDGER)))
        bare = time.perf_counter() - t0
        result = rebuild(settings)
    print(f"ledger of {read} events, {result.jobs} jobs")
    print(f"{'run':<40}{'seconds':>9}{'events/s':>11}{'ratio':>7}")
    print(f"{'baseline: read the ledger, no decode':<40}{bare:>9.2f}{read / bare:>11,.0f}{1:>7.2f}")
    print(f"{'replay rebuild (decode, fold, write)':<40}{result.seconds:>9.2f}"
          f"{result.events_per_s:>11,.0f}{bare / result.seconds:>7.2f}")
    print(f"states written: {result.written}")


if __name__ == "__main__":
    main()
