"""Logs carry a job-id prefix, never the whole id, and URLs without query strings or user info."""

from __future__ import annotations

import asyncio
import io
import logging
import socket

import pytest

import ledger
from scrapeledger.errors import ScrapeledgerError
from scrapeledger.redact import RedactingFilter, install, job_ref, scrub, url_ref
from ws_edge import Client

pytestmark = pytest.mark.timeout(30)


def test_job_ref_is_a_short_prefix() -> None:
    job_id = ledger.new_job_id()
    ref = job_ref(job_id)
    assert job_id.startswith(ref.rstrip(".")) and job_id not in ref and len(ref.rstrip(".")) == 8
    assert job_ref(None) == "-"


@pytest.mark.parametrize(
    ("url", "ref"),
    [
        ("https://u:pw@example.org:8443/a/b?token=1#frag", "https://example.org:8443/a/b"),
        ("http://example.org/?api_key=k", "http://example.org/"),
        ("ws://127.0.0.1:3001/ws?api_key=k", "ws://127.0.0.1:3001/ws"),
        ("user:pw@proxy:3128", "proxy:3128"),
        ("", "-"),
        ("not a url?x=1", "not a url"),
    ],
)
def test_url_ref_keeps_scheme_host_port_and_path_only(url: str, ref: str) -> None:
    assert url_ref(url) == ref


def test_scrub_cleans_free_text() -> None:
    job_id = "AbCdEfGhIjKlMnOpQrStUv"
    text = f"GET http://a:b@h/p?q=secret for {job_id}/a1/outcome (hex 0123456789abcdef012345 kept)"
    assert scrub(text) == "GET http://h/p for AbCdEfGh.../a1/outcome (hex 0123456789abcdef012345 kept)"


def test_the_filter_cleans_every_logger_and_tracebacks() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    install(handler)
    install(handler)  # idempotent
    assert sum(isinstance(f, RedactingFilter) for f in handler.filters) == 1
    logger = logging.getLogger("some.library")
    logger.addHandler(handler)
    logger.propagate = False
    job_id = ledger.new_job_id()
    while job_id.lower() == job_id or job_id.upper() == job_id:  # both cases, as the filter needs
        job_id = ledger.new_job_id()
    try:
        logger.warning("HTTP Request: GET %s %s", "http://h/x?api_key=KEY1", job_id)
        try:
            raise ValueError(f"failed on http://u:PASS@h/y?k=KEY2 for job {job_id}")
        except ValueError:
            logger.exception("boom")
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    out = stream.getvalue()
    for leaked in ("KEY1", "KEY2", "PASS", job_id):
        assert leaked not in out
    assert "http://h/x" in out and job_ref(job_id) in out and "ValueError" in out


def test_the_client_logs_its_server_without_the_query(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = f"ws://127.0.0.1:{port}/?api_key=KEY3"

    async def main() -> None:
        async with Client(server, connect_timeout=0.5, max_reconnect_s=0.3):
            pass

    caplog.set_level(logging.INFO, logger="ws_edge")
    with pytest.raises(ScrapeledgerError) as info:
        asyncio.run(main())
    assert "KEY3" not in str(info.value)
    assert caplog.records and all("KEY3" not in r.getMessage() for r in caplog.records)
    assert any(f"127.0.0.1:{port}/" in r.getMessage() for r in caplog.records)
