"""validate_url: the static checks on a job's URL, and the normalized form the scraper fetches."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from processors.fetch import Rejection, validate_url


@pytest.mark.parametrize(
    ("url", "normalized"),
    [
        ("http://example.com", "http://example.com"),
        ("HTTP://Example.COM/Path?q=1", "http://example.com/Path?q=1"),
        ("https://example.com:443/a", "https://example.com/a"),
        ("http://example.com:80/a", "http://example.com/a"),
        ("http://example.com:8080/a", "http://example.com:8080/a"),
        ("http://example.com/a#section", "http://example.com/a"),
        ("  http://example.com/a  ", "http://example.com/a"),
        ("http://bücher.de/straße", "http://xn--bcher-kva.de/stra%C3%9Fe"),
        ("http://example.com/a b", "http://example.com/a%20b"),
        ("http://127.0.0.1:8000/", "http://127.0.0.1:8000/"),
        ("http://[0:0::1]:8000/", "http://[::1]:8000/"),
        ("http://my_host.example.com/", "http://my_host.example.com/"),
        ("http://example.com./", "http://example.com./"),
    ],
)
def test_valid_urls_come_back_normalized(url: str, normalized: str) -> None:
    assert validate_url(url) == normalized


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("ftp://example.org/file", "unsupported_scheme"),
        ("file:///etc/passwd", "unsupported_scheme"),
        ("gopher://example.org:70/", "unsupported_scheme"),
        ("javascript:alert(1)", "unsupported_scheme"),
        ("example.com/path", "invalid_url"),
        ("//example.com/path", "invalid_url"),
        ("http://", "invalid_url"),
        ("http:///path", "invalid_url"),
        ("", "invalid_url"),
        ("http://exa mple.com/", "invalid_url"),
        ("http://example.com:0/", "invalid_url"),
        ("http://example.com:65536/", "invalid_url"),
        ("http://example.com:http/", "invalid_url"),
        ("http://-bad-.example.com/", "invalid_url"),
        ("http://a..b.com/", "invalid_url"),
        ("http://" + "a" * 64 + ".com/", "invalid_url"),
        ("http://example.com/\x00", "invalid_url"),
        ("http://example.com/\r\nHost: evil", "invalid_url"),
        ("http://[fe80::1%25eth0]/", "invalid_url"),
        # legacy IPv4 spellings that resolvers map to 127.0.0.1: refused, never guessed at
        ("http://127.1/", "invalid_url"),
        ("http://2130706433/", "invalid_url"),
        ("http://0x7f.0.0.1/", "invalid_url"),
        ("http://0177.0.0.1/", "invalid_url"),
        ("http://127.000.000.001/", "invalid_url"),
        ("http://user:pass@example.com/", "credentials_in_url"),
        ("http://example.com@evil.example/", "credentials_in_url"),
        ("http://example.com\\@evil.example/", "credentials_in_url"),
    ],
)
def test_bad_urls_are_rejected_with_a_code(url: str, code: str) -> None:
    with pytest.raises(Rejection) as info:
        validate_url(url)
    assert info.value.code == code
    assert info.value.message


@pytest.mark.parametrize("value", [None, 42, b"http://example.com/", ["http://example.com/"]])
def test_non_strings_are_invalid(value: object) -> None:
    with pytest.raises(Rejection) as info:
        validate_url(value)
    assert info.value.code == "invalid_url"


def test_length_limit() -> None:
    base = "http://example.com/"
    assert validate_url(base + "a" * (2048 - len(base))) == base + "a" * (2048 - len(base))
    with pytest.raises(Rejection) as info:
        validate_url(base + "a" * (2049 - len(base)))
    assert info.value.code == "url_too_long"
    with pytest.raises(Rejection) as info:
        validate_url(base + "a" * 100, max_length=50)
    assert info.value.code == "url_too_long"


def test_length_counts_the_normalized_form() -> None:
    # every space becomes %20: 3x longer once normalized
    with pytest.raises(Rejection) as info:
        validate_url("http://example.com/" + " x" * 400, max_length=1000)
    assert info.value.code == "url_too_long"


def test_ip_literals_are_not_range_checked_here() -> None:
    # the address policy belongs to check_address, so the caller can pass allow_private
    assert validate_url("http://169.254.169.254/latest/meta-data/") == "http://169.254.169.254/latest/meta-data/"


@given(st.text(max_size=300))
def test_validate_url_only_ever_raises_rejection(text: str) -> None:
    with contextlib.suppress(Rejection):
        validate_url(text)


_hosts = st.from_regex(r"[a-z][a-z0-9-]{0,20}[a-z0-9](\.[a-z][a-z0-9]{0,10}){1,3}", fullmatch=True)
_segments = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=8)
_paths = st.lists(_segments, max_size=4)


@given(st.sampled_from(["http", "https", "HTTP"]), _hosts, st.none() | st.integers(1, 65535), _paths)
def test_normalization_is_idempotent(scheme: str, host: str, port: int | None, path: list[str]) -> None:
    url = f"{scheme}://{host}" + (f":{port}" if port else "") + "/" + "/".join(path)
    try:
        once = validate_url(url)
    except Rejection:
        return
    assert validate_url(once) == once
    assert once.startswith(("http://", "https://"))
