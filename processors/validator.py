"""Validator: ``JobSubmitted`` -> ``JobValidated`` or ``JobRejected``, once per job.

A job whose id comes from an idempotency key may be submitted more than once (a client that lost
its answer submits again, on any pod). Only the first ``JobSubmitted`` of such a job is
validated: the validator keeps "this keyed job was submitted" in its Quix Streams state store
(RocksDB, backed by a changelog topic, so it survives restarts and moves with the partition), and
later submits of the job produce nothing, so no second run ever starts. Unkeyed jobs have random
ids, are submitted once, and never touch the store.

Static checks only (scheme, length, host syntax, an IP-literal host in a forbidden range, the
options' schema), so the validator never blocks on the network. The scraper re-checks every
address it actually connects to, including each redirect hop, because DNS can change between
validation and fetch.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from typing import Any, Protocol
from urllib.parse import urlsplit

import ledger
from processors.fetch import AddressGuard, Rejection, parse_proxy, validate_url
from scrapeledger import faults, topics
from scrapeledger.errors import CredentialsUnreadableError, EventError
from scrapeledger.observability import EVENTS, POISON
from scrapeledger.redact import job_ref
from scrapeledger.settings import Settings
from scrapeledger.vault import Vault

from ._app import Out, Processor, Skip, out_key

log = logging.getLogger(__name__)

MAX_TIMEOUT_S = 120.0
MAX_HEADERS = 50


# RFC 9110 5.1 token (a field name) and 5.5 field value: visible ASCII, obs-text (latin-1
# 0x80-0xFF), space and tab inside; anything else cannot be sent, so it would only fail every
# attempt as a retryable fetch error and end dead-lettered
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_FIELD_VALUE = re.compile(r"^[\x20\x09\x21-\x7e\x80-\xff]*$")


def check_header(name: str, value: str) -> None:
    """Refuse a request header that HTTP cannot carry (``invalid_options``)."""
    if not _TOKEN.match(name):
        raise Rejection("invalid_options", f"header name {name!r} is not an HTTP token (RFC 9110)")
    if not _FIELD_VALUE.match(value):
        raise Rejection(
            "invalid_options",
            f"header {name!r}: the value has characters HTTP cannot carry (control characters "
            "or characters beyond latin-1)",
        )


def check_request(
    event: ledger.FetchSpec, *, allow_private: bool, trusted_proxies: frozenset[str] = frozenset()
) -> str:
    """Validate a job's request; return the normalized URL or raise :class:`Rejection`.

    A per-job proxy is an address the scraper connects to, so its host gets the same
    normalization and the same address check as the URL's (``blocked_address``); the
    operator's own proxies (``trusted_proxies``, normalized) are exempt, as in the fetcher.
    """
    url: str = validate_url(event.url)
    guard = AddressGuard(allow_private=allow_private)  # IP literals only: no lookups here
    guard.check_literal(urlsplit(url).hostname or "")
    if event.timeout_s is not None and not 0 < event.timeout_s <= MAX_TIMEOUT_S:
        raise Rejection("invalid_options", f"timeout_s must be in (0, {MAX_TIMEOUT_S:g}]")
    if len(event.headers) > MAX_HEADERS:
        raise Rejection("invalid_options", f"at most {MAX_HEADERS} headers")
    for name, value in event.headers.items():
        check_header(name, value)
    if event.proxy is not None:
        try:
            # the fetch engine speaks HTTP proxies only: a socks5:// proxy would fail every attempt
            proxy = parse_proxy(event.proxy)
        except Rejection as rej:
            raise Rejection(
                "invalid_options", f"proxy must be an http:// or https:// URL: {rej.message}"
            ) from None
        if str(proxy) not in trusted_proxies:
            guard.check_literal(proxy.host)
    return url


def check_formats(formats: tuple[str, ...]) -> tuple[str, ...]:
    """The requested output formats, deduplicated in canonical order; unknown or none at all is
    ``invalid_options`` (the scraper would otherwise have to guess what the client meant)."""
    known = ", ".join(ledger.FORMATS)
    if not formats:
        raise Rejection("invalid_options", f"formats must name at least one of: {known}")
    unknown = sorted({f for f in formats if f not in ledger.FORMATS})
    if unknown:
        names = ", ".join(repr(f[:40]) for f in unknown[:5])
        raise Rejection("invalid_options", f"unknown format {names}: formats are any of {known}")
    return tuple(f for f in ledger.FORMATS if f in formats)


def trusted_proxies(settings: Settings) -> frozenset[str]:
    """The operator's proxies (``SCRAPER_PROXIES``) in normalized form."""
    return frozenset(str(parse_proxy(p)) for p in settings.scraper_proxies)


SUBMITTED_KEY = "submitted"


class SeenStore(Protocol):
    """The part of Quix Streams' per-key ``State`` the validator uses."""

    def get(self, key: str, default: Any = None) -> Any: ...
    def set(self, key: str, value: Any) -> None: ...


def submit_to_validate(raw: bytes, state: SeenStore | None) -> ledger.JobSubmitted | Skip:
    """The ``JobSubmitted`` in one ledger record that the validator must check, or :class:`Skip`:
    any other event, bytes that do not decode (poison: the materializer dead-letters them), or a
    keyed job's later submit. ``state`` is the job's state store: a keyed job's first submit is
    marked there, here, so only that one is ever validated."""
    if not ledger.may_be(raw, (ledger.JobSubmitted,)):
        return Skip()
    try:
        event = ledger.decode_event(raw)
    except EventError as exc:
        log.warning("skipping undecodable ledger record: %s", exc)
        return Skip(undecodable=True)
    if not isinstance(event, ledger.JobSubmitted):
        return Skip()
    if event.idempotency_digest is not None and state is not None:
        if state.get(SUBMITTED_KEY):
            log.info("job %s submitted again (idempotency key): not validated twice", job_ref(event.job_id))
            return Skip()
        state.set(SUBMITTED_KEY, True)
    return event


def validate(
    event: ledger.JobSubmitted, settings: Settings, vault: Vault, trusted: frozenset[str] = frozenset()
) -> list[Out]:
    """The validator's verdict on one submit: ``JobValidated`` or ``JobRejected``.

    ``trusted`` is :func:`trusted_proxies` of ``settings``, computed once by the caller. The
    request's sealed credentials are opened to be checked like every other header (and the
    proxy with its user info), then sealed again for ``JobValidated``: under the newest key,
    and also when a record carries credentials in clear (written before sealing existed)."""
    common: dict[str, Any] = {"job_id": event.job_id, "event_id": f"{event.job_id}/validated",
                              "at": ledger.now(), "source": settings.pod_name}
    try:
        try:
            headers, proxy = vault.open(event.job_id, event.headers, event.proxy, event.sealed)
        except CredentialsUnreadableError as exc:
            raise Rejection("credentials_unreadable", str(exc)) from None
        url = check_request(
            dataclasses.replace(event, headers=headers, proxy=proxy, sealed=None),
            allow_private=settings.scraper_allow_private, trusted_proxies=trusted,
        )
        formats = check_formats(event.formats)
        request = vault.seal(event.job_id, headers, proxy)
    except Rejection as rej:
        log.info("job %s rejected: %s (%s)", job_ref(event.job_id), rej.code, rej.message)
        out: ledger.Event = ledger.JobRejected(**common, code=rej.code, message=rej.message)
    else:
        log.debug("job %s validated", job_ref(event.job_id))
        out = ledger.JobValidated(
            **common, attempt=1, url=url, headers=request.headers, timeout_s=event.timeout_s,
            proxy=request.proxy, sealed=request.sealed, formats=formats,
        )
    return [Out(topics.LEDGER, event.job_id, ledger.encode_event(out))]


def validate_step(
    raw: bytes, settings: Settings, vault: Vault, trusted: frozenset[str] = frozenset(),
    state: SeenStore | None = None,
) -> list[Out]:
    """One ledger record in, the validator's events out. Total: never raises on bad input.

    :func:`submit_to_validate` picks the submit (``state``: the job's state store, needed for
    keyed submits: the first one wins, and is marked there), :func:`validate` judges it. No
    I/O, no metrics, no fault point (its only effect is that mark in ``state``): the pipeline
    runs the same two stages through :func:`instrumented_step`, which adds the metrics and the
    fault point."""
    event = submit_to_validate(raw, state)
    if isinstance(event, Skip):
        return list(event.outs)
    return validate(event, settings, vault, trusted)


# --- app wiring: the step, counted and with its fault point --------------------------------


def instrumented_step(
    raw: bytes, settings: Settings, vault: Vault, trusted: frozenset[str], state: SeenStore | None
) -> list[Out]:
    """:func:`validate_step` as the pipeline runs it: counted in the metrics, and with the
    ``validator`` fault point (``SCRAPELEDGER_FAULTS``) between picking a submit (a keyed
    job's first submit is marked in ``state`` by then) and judging it, before any output."""
    EVENTS.labels("validator").inc()
    event = submit_to_validate(raw, state)
    if isinstance(event, Skip):
        if event.undecodable:
            POISON.labels("validator").inc()
        return list(event.outs)
    faults.check(settings.faults, "validator", event.url)
    return validate(event, settings, vault, trusted)


def build(settings: Settings) -> Processor:
    """The validator's processor, not started (no broker is asked yet; the key store is read)."""
    trusted = trusted_proxies(settings)
    vault = Vault.from_settings(settings)

    def topology(proc: Processor) -> None:
        sdf = proc.app.dataframe(proc.topic(topics.LEDGER))
        sdf = sdf.apply(
            lambda raw, state: instrumented_step(raw, settings, vault, trusted, state), stateful=True,
            expand=True,
        )
        sdf.to_topic(proc.route, key=out_key)

    return Processor(settings, "validator", stateful=True).define(topology)


def main(settings: Settings | None = None) -> None:
    build(settings or Settings()).run()
