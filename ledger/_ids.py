"""Job id syntax: what a client may send back in a ``resume`` frame."""

from __future__ import annotations

import re

_JOB_ID = re.compile(r"[A-Za-z0-9_-]{22,64}")


def is_valid_job_id(value: object) -> bool:
    """True for strings shaped like the ids :func:`new_job_id` makes (URL-safe, >= 128 bits)."""
    return isinstance(value, str) and _JOB_ID.fullmatch(value) is not None
