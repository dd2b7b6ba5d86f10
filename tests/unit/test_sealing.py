"""Credentials through each component, without a broker: edge seals, validator checks and
re-seals, scraper opens (or fails for good), redrive re-seals under the newest key.

The end-to-end check over every topic and every log is tests/integration/test_secrets.py.
"""

from __future__ import annotations

import asyncio

import pytest

import ledger
from processors._crashes import CrashLog
from processors.fetch import FetchError
from processors.scraper import FetchSink, outcome_events
from processors.validator import validate_step
from replay import redrive_events, unreadable
from scrapeledger.settings import Settings
from scrapeledger.vault import Vault, new_key
from ws_edge import JobRequest
from ws_edge._server import Edge

pytestmark = pytest.mark.timeout(30)

JOB = "AbCdEfGhIjKlMnOpQrStUv"
SECRET = "Bearer tok-0123456789abcdef"
PROXY = "http://user:pw-0123456789@127.0.0.1:3128"


class Written:
    """The edge's Kafka side, recording what the edge writes."""

    def __init__(self) -> None:
        self.events: list[ledger.Event] = []

    async def append(self, event: ledger.Event) -> None:
        self.events.append(event)

    def append_nowait(self, event: ledger.Event) -> None:
        self.events.append(event)


class Sock:
    def __init__(self) -> None:
        self.jobs: set[str] = set()
        self.owner: str | None = None  # API keys off
        self.starting = 1  # the job frame was admitted (JobSocket counts it until submit runs)

    def send(self, frame: bytes) -> None:
        pass


def test_the_edge_writes_credentials_only_sealed() -> None:
    vault = Vault([new_key()])

    async def main() -> ledger.Event:
        edge = Edge(Settings(bootstrap_servers="127.0.0.1:1"), vault)
        edge.kafka.close(0)
        kafka = Written()
        edge.kafka = kafka  # type: ignore[assignment]
        req = JobRequest(url="http://x/", headers={"Authorization": SECRET, "Accept": "a"}, proxy=PROXY)
        await edge.submit(Sock(), req)  # type: ignore[arg-type]
        return kafka.events[0]

    event = asyncio.run(main())
    raw = ledger.encode_event(event)
    assert b"tok-0123456789abcdef" not in raw and b"pw-0123456789" not in raw
    assert isinstance(event, ledger.JobSubmitted)
    assert event.headers == {"Accept": "a"} and event.proxy == "http://127.0.0.1:3128"
    assert vault.open(event.job_id, event.headers, event.proxy, event.sealed) == (
        {"Accept": "a", "Authorization": SECRET}, PROXY,
    )


def submitted(vault: Vault, headers: dict[str, str], proxy: str | None = None) -> ledger.JobSubmitted:
    sealed = vault.seal(JOB, headers, proxy)
    return ledger.JobSubmitted(job_id=JOB, event_id=f"{JOB}/submitted", at=1.0, source="edge-a",
                          url="http://127.0.0.1:8000/", headers=sealed.headers, proxy=sealed.proxy,
                          sealed=sealed.sealed)


def validate(event: ledger.JobSubmitted, vault: Vault) -> ledger.Event:
    [out] = validate_step(ledger.encode_event(event), Settings(scraper_allow_private=True), vault)
    assert out.value is not None
    return ledger.decode_event(out.value)


def test_the_validator_checks_sealed_headers_and_passes_them_on_sealed() -> None:
    vault = Vault([new_key()])
    validated = validate(submitted(vault, {"Authorization": SECRET}, PROXY), vault)
    assert isinstance(validated, ledger.JobValidated) and validated.headers == {}
    assert b"tok-0123456789abcdef" not in ledger.encode_event(validated)
    assert vault.open(JOB, validated.headers, validated.proxy, validated.sealed) == (
        {"Authorization": SECRET}, PROXY,
    )
    bad = validate(submitted(vault, {"Authorization": "Bearer a\x00b"}), vault)
    assert isinstance(bad, ledger.JobRejected) and bad.code == "invalid_options"


def test_the_validator_rejects_credentials_it_cannot_open_and_seals_clear_ones() -> None:
    edge_vault, other = Vault([new_key()]), Vault([new_key()])
    rejected = validate(submitted(edge_vault, {"Cookie": "c=1"}), other)
    assert isinstance(rejected, ledger.JobRejected) and rejected.code == "credentials_unreadable"
    # a record with credentials in clear (written before sealing existed): sealed from here on
    legacy = ledger.JobSubmitted(job_id=JOB, event_id="s", at=1.0, source="e", url="http://127.0.0.1:8000/",
                            headers={"Cookie": "c=1"})
    validated = validate(legacy, other)
    assert isinstance(validated, ledger.JobValidated) and validated.headers == {}
    assert other.open(JOB, {}, None, validated.sealed) == ({"Cookie": "c=1"}, None)


def test_retries_carry_the_credentials_sealed() -> None:
    vault = Vault([new_key()])
    token = vault.seal(JOB, {"Authorization": SECRET}, None).sealed
    trigger = ledger.JobValidated(job_id=JOB, event_id="v", at=1.0, source="v", attempt=1, url="http://x/",
                             sealed=token)
    failed = FetchError("http_503", "HTTP 503", retryable=True, http_status=503)
    _, retry = outcome_events(trigger, failed, settings=Settings(), body_ref=None, body_inline=None)
    assert isinstance(retry, ledger.RetryScheduled) and retry.sealed == token


def test_the_scraper_fails_a_job_for_good_when_no_key_opens_its_credentials() -> None:
    """A retired key: a clear permanent failure (redrivable), not a crash loop or a poison record."""
    token = Vault([new_key()]).seal(JOB, {"Authorization": SECRET}, None).sealed
    trigger = ledger.JobValidated(job_id=JOB, event_id="v", at=1.0, source="v", attempt=1,
                             url="http://127.0.0.1:1/", sealed=token)
    sink = FetchSink(Settings(), CrashLog(), Vault([new_key()]))
    sink._fetcher = object()  # type: ignore[assignment]  # never reached: the open fails first
    result = asyncio.run(sink._fetch(trigger))
    assert isinstance(result, FetchError)
    assert (result.code, result.retryable) == ("credentials_unreadable", False)
    [event] = outcome_events(trigger, result, settings=Settings(), body_ref=None, body_inline=None)
    assert isinstance(event, ledger.JobFailed) and "not configured" in event.message


def test_a_redrive_reseals_under_the_newest_key_and_skips_jobs_whose_key_is_gone() -> None:
    old, new = new_key(), new_key()
    state = ledger.fold(None, submitted(Vault([old]), {"Authorization": SECRET}))
    [event] = redrive_events([state], source="r", reason="t", vault=Vault([new, old]))
    opened = Vault([new]).open(JOB, event.headers, event.proxy, event.sealed)
    assert opened == ({"Authorization": SECRET}, None)
    assert unreadable([state], Vault([new])) == [state]
    assert unreadable([state], Vault([new, old])) == []
