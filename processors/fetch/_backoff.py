"""How long to wait before the next attempt of a retryable failure (attempt retry, told whole in
``processors/_attempt_retry.py``).

Full jitter (a uniform draw between 0 and the capped exponential step) rather than decorrelated
jitter: decorrelated jitter needs the previous delay, and the scraper keeps only the attempt
number in the ledger (a crash must never reset the attempt count), so a stateless formula fits.
The random spread is what stops a burst of jobs that failed together from retrying together.
"""

from __future__ import annotations

import random

RETRY_AFTER_CAP_S = 300.0
"""Longest wait a server's ``Retry-After`` can impose; past this the job should rather fail."""

_MAX_EXPONENT = 62


def backoff_delay(
    attempt: int,
    *,
    base_s: float,
    cap_s: float,
    retry_after_s: float | None = None,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1 for the first failure).

    Without ``retry_after_s``: uniform in ``[0, min(cap_s, base_s * 2 ** (attempt - 1))]``.
    With it (a 429 or 503 that said when to come back): at least ``retry_after_s`` - plus up to
    10% jitter so clients told the same instant do not all return at once - and never more than
    ``max(cap_s, RETRY_AFTER_CAP_S)``, so a hostile header cannot park a job for a day.
    ``rng`` makes the draw reproducible in tests.
    """
    draw = (rng or random).random()
    exponent = min(max(attempt, 1) - 1, _MAX_EXPONENT)
    step = min(cap_s, base_s * (2.0**exponent))
    delay = max(0.0, step) * draw
    if retry_after_s is not None and retry_after_s > 0:
        ceiling = max(cap_s, RETRY_AFTER_CAP_S)
        delay = min(max(delay, retry_after_s * (1.0 + 0.1 * draw)), ceiling)
    return delay
