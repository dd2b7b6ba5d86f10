"""The scraper's fetch engine: asyncio only, no Kafka.

``validate_url`` and :meth:`AddressGuard.check_literal` (over ``check_address``) are the static
checks the validator runs; ``resolve_and_check`` adds DNS; :class:`Fetcher` performs a job's GET
with limits, redirects, proxies and the SSRF guard, and turns every outcome into
:class:`FetchOk` or :class:`FetchError`; ``backoff_delay`` says when to try again. See
docs/scraper.md for the error codes.
"""

from ._backoff import backoff_delay
from ._classify import classify, classify_exception, classify_response, retry_after_seconds
from ._errors import Rejection, ResolutionError
from ._fetcher import Fetcher
from ._guard import AddressGuard, check_address, resolve_and_check
from ._models import FetchError, FetchOk, FetchRequest
from ._urls import parse_proxy, validate_url

__all__ = [
    "AddressGuard",
    "FetchError",
    "FetchOk",
    "FetchRequest",
    "Fetcher",
    "Rejection",
    "ResolutionError",
    "backoff_delay",
    "check_address",
    "classify",
    "classify_exception",
    "classify_response",
    "parse_proxy",
    "resolve_and_check",
    "retry_after_seconds",
    "validate_url",
]
