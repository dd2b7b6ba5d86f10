"""Fault injection: make one component fail on chosen jobs, to exercise the failure paths.

The recovery code for "a record that crashes a processor" and "a fetch that kills the scraper"
only runs when something actually fails, so the tests (and anyone checking a deployment) need a
way to make it fail on purpose, through the real processes and the real broker. ``SCRAPELEDGER_FAULTS``
holds comma-separated ``component:action:match`` rules: when ``component`` (``validator``,
``state`` or ``scraper``) handles a job whose URL contains ``match``, it either raises
:class:`~scrapeledger.errors.InjectedFault` (``raise``) or SIGKILLs its own process (``kill``).
Empty, the default, means no faults; the check is then one tuple test.
"""

from __future__ import annotations

import functools
import os
import signal
from dataclasses import dataclass
from typing import Literal

from .errors import ConfigError, InjectedFault

COMPONENTS = frozenset({"validator", "state", "scraper"})


@dataclass(frozen=True, slots=True)
class Fault:
    component: str
    action: Literal["raise", "kill"]
    match: str


@functools.cache
def parse(spec: str) -> tuple[Fault, ...]:
    """The rules in a ``SCRAPELEDGER_FAULTS`` value; :class:`ConfigError` names a bad one."""
    faults = []
    for rule in filter(None, (r.strip() for r in spec.split(","))):
        component, _, rest = rule.partition(":")
        action, _, match = rest.partition(":")
        if component not in COMPONENTS or action not in ("raise", "kill") or not match:
            raise ConfigError(
                f"bad SCRAPELEDGER_FAULTS rule {rule!r}: want component:raise|kill:url-substring "
                f"with component one of {', '.join(sorted(COMPONENTS))}"
            )
        faults.append(Fault(component, "raise" if action == "raise" else "kill", match))
    return tuple(faults)


def check(spec: str, component: str, url: str) -> None:
    """Fail as the rules say if ``component`` is handling ``url``; otherwise do nothing."""
    if not spec:
        return
    for fault in parse(spec):
        if fault.component == component and fault.match in url:
            if fault.action == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            raise InjectedFault(f"injected fault in {component} for {url}")
