"""The validator's request checks (no broker: ``check_request`` is pure)."""

from __future__ import annotations

import pytest

import ledger
from processors.fetch import Rejection
from processors.validator import check_request


def submitted(**fields: object) -> ledger.JobSubmitted:
    return ledger.JobSubmitted(job_id="job-aaaaaaaaaaaaaaaaaaaaa", at=1, source="edge-a",
                          **{"event_id": "e", "url": "https://example.org/", **fields})  # type: ignore[arg-type]


@pytest.mark.parametrize("proxy", ["http://proxy:3128", "https://user:pw@proxy:443"])
def test_http_proxies_are_accepted(proxy: str) -> None:
    assert check_request(submitted(proxy=proxy), allow_private=False) == "https://example.org/"


@pytest.mark.parametrize("proxy", ["socks5://proxy:1080", "ftp://proxy", "proxy:3128", "http://"])
def test_proxies_the_fetcher_cannot_use_are_rejected_up_front(proxy: str) -> None:
    # a socks5 proxy used to pass here and then fail every fetch attempt as invalid_proxy
    with pytest.raises(Rejection) as rejected:
        check_request(submitted(proxy=proxy), allow_private=False)
    assert rejected.value.code == "invalid_options"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("x\tb", "v"), ("x b", "v"), ("x:b", "v"), ("", "v"), ("x(y)", "v"), ("caf\u00e9", "v"),
        ("x", "a\x00b"), ("x", "a\x0bb"), ("x", "a\x0cb"), ("x", "a\rb"), ("x", "a\nb"),
        ("x", "\u20ac 5"), ("x", "snow \u2603"),
    ],
)
def test_headers_http_cannot_carry_are_rejected_up_front(name: str, value: str) -> None:
    # these passed and then failed three times as a retryable fetch_error, ending dead_lettered
    with pytest.raises(Rejection) as rejected:
        check_request(submitted(headers={name: value}), allow_private=False)
    assert rejected.value.code == "invalid_options"


@pytest.mark.parametrize(
    ("name", "value"),
    [("Accept", "text/html, */*;q=0.8"), ("X-Token", ""), ("User-Agent", "a b\tc"),
     ("X-Latin", "caf\u00e9"), ("x-y_z.1~", "!#$%&'*+-.^_`|~")],
)
def test_ordinary_headers_pass(name: str, value: str) -> None:
    assert check_request(submitted(headers={name: value}), allow_private=False) == "https://example.org/"


def _validate(**fields: object) -> ledger.Event:
    from processors.validator import validate_step
    from scrapeledger.settings import Settings
    from scrapeledger.vault import Vault, new_key

    [out] = validate_step(ledger.encode_event(submitted(**fields)), Settings(), Vault([new_key()]))
    return ledger.decode_event(out.value)


@pytest.mark.parametrize(
    ("formats", "named"),
    [(("html", "pdf"), "'pdf'"), (("Markdown",), "'Markdown'"),
     (("screenshot", "json"), "'json', 'screenshot'")],
)
def test_an_unknown_format_is_rejected_with_the_names_and_the_choices(formats: tuple[str, ...],
                                                                      named: str) -> None:
    event = _validate(formats=formats)
    assert isinstance(event, ledger.JobRejected) and event.code == "invalid_options"
    assert named in event.message
    assert "html, markdown, text, links, metadata" in event.message


def test_no_formats_at_all_is_rejected() -> None:
    event = _validate(formats=())
    assert isinstance(event, ledger.JobRejected) and event.code == "invalid_options"
    assert "at least one" in event.message


def test_formats_are_deduplicated_into_canonical_order() -> None:
    event = _validate(formats=("links", "markdown", "links", "html"))
    assert isinstance(event, ledger.JobValidated)
    assert event.formats == ("html", "markdown", "links")
    assert isinstance(_validate(), ledger.JobValidated) and _validate().formats == ("html",)


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8000/", "http://localhost:8000/", "http://LOCALHOST./x", "http://app.localhost/"]
)
def test_local_targets_are_rejected_alike_and_the_refusal_names_the_switch(url: str) -> None:
    # 127.0.0.1 was rejected here while localhost passed, to fail later in the scraper as
    # "failed" with "resolves to 127.0.0.1 is not a public address"; neither said how to allow it
    with pytest.raises(Rejection) as rejected:
        check_request(submitted(url=url), allow_private=False)
    assert rejected.value.code == "blocked_address"
    assert "127.0.0.1" in rejected.value.message
    assert "not a public address" in rejected.value.message
    assert rejected.value.message.endswith(
        "(set SCRAPER_ALLOW_PRIVATE=1 to allow loopback and private targets)"
    )


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000/", "http://localhost:8000/"])
def test_allow_private_passes_local_targets(url: str) -> None:
    assert check_request(submitted(url=url), allow_private=True) == url


class _Store:
    def __init__(self) -> None:
        self.data: dict[str, object] = {}

    def get(self, key: str, default: object = None) -> object:
        return self.data.get(key, default)

    def set(self, key: str, value: object) -> None:
        self.data[key] = value


def test_a_keyed_job_is_validated_once_however_often_it_is_submitted() -> None:
    from processors.validator import validate_step
    from scrapeledger.settings import Settings
    from scrapeledger.vault import Vault, new_key

    settings = Settings(pod_name="v")
    vault = Vault([new_key()])
    store = _Store()
    first = submitted(event_id="j/s/1", idempotency_digest="d")
    again = submitted(event_id="j/s/2", idempotency_digest="d", url="http://other.example/")
    assert len(validate_step(ledger.encode_event(first), settings, vault, state=store)) == 1
    assert validate_step(ledger.encode_event(again), settings, vault, state=store) == []
    # unkeyed jobs are submitted once and never use the store
    plain = _Store()
    assert len(validate_step(ledger.encode_event(submitted()), settings, vault, state=plain)) == 1
    assert plain.data == {}
