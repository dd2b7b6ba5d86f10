"""The validator's request checks (no broker: ``check_request`` is pure)."""

from __future__ import annotations

import pytest

import ledger as L
from processors.fetch import Rejection
from processors.validator import check_request


def submitted(**fields: object) -> L.JobSubmitted:
    return L.JobSubmitted(job_id="job-aaaaaaaaaaaaaaaaaaaaa", event_id="e", at=1, source="edge-a",
                          **{"url": "https://example.org/", **fields})  # type: ignore[arg-type]


@pytest.mark.parametrize("proxy", ["http://proxy:3128", "https://user:pw@proxy:443"])
def test_http_proxies_are_accepted(proxy: str) -> None:
    assert check_request(submitted(proxy=proxy), allow_private=False) == "https://example.org/"


@pytest.mark.parametrize("proxy", ["socks5://proxy:1080", "ftp://proxy", "proxy:3128", "http://"])
def test_proxies_the_fetcher_cannot_use_are_rejected_up_front(proxy: str) -> None:
    # a socks5 proxy used to pass here and then fail every fetch attempt as invalid_proxy
    with pytest.raises(Rejection) as rejected:
        check_request(submitted(proxy=proxy), allow_private=False)
    assert rejected.value.code == "invalid_options"
