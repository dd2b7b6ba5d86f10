"""The layers stay layers: what importing one package drags in, checked in a fresh interpreter.

``ledger`` is the pure domain model every process (and ``replay``, and the tests) loads; it may
use the standard library and orjson, nothing else, so a tool that only reads events does not pay
for pydantic or a Kafka client, and the domain cannot grow a dependency on them by accident.
``scrapeledger.errors`` is imported by every layer, so it must be as cheap.

Each rule is one row of :data:`RULES`: an import statement, and the modules it must not load.
A new rule is a new row. Each statement runs in a fresh ``sys.executable`` subprocess, because
this test process has long since imported everything.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("pydantic", "pydantic_settings", "quixstreams", "confluent_kafka", "httpx", "tornado")
"""Third-party packages the domain layer must never load (settings, Kafka, HTTP, the edge)."""

RULES: dict[str, tuple[str, ...]] = {
    "import ledger": HEAVY,
    "import scrapeledger.errors": ("pydantic", "pydantic_settings"),
    # replay is the operator's package, above both (static check: test_no_replay_below.py)
    "import processors.validator, processors.scraper, processors.materializer, ws_edge": ("replay",),
}
"""``import statement -> top-level modules that must not be in sys.modules after it``."""


PROBE = "import sys\nprint(*sorted({name.partition('.')[0] for name in sys.modules}))"
"""Run after the import under test: every top-level package then in ``sys.modules``."""


def loaded_after(import_stmt: str) -> set[str]:
    """The top-level names in ``sys.modules`` of a fresh interpreter after ``import_stmt``."""
    done = subprocess.run([sys.executable, "-c", f"{import_stmt}\n{PROBE}"],
                          capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode == 0, f"{import_stmt!r} failed:\n{done.stderr}"
    return set(done.stdout.split())


@pytest.mark.parametrize(("import_stmt", "forbidden"), RULES.items(), ids=list(RULES))
def test_an_import_loads_none_of_the_forbidden_modules(import_stmt: str, forbidden: tuple[str, ...]) -> None:
    assert loaded_after(import_stmt) & set(forbidden) == set()


def test_the_probe_sees_what_an_import_loads() -> None:
    """Guards the test itself: a probe that saw nothing would pass every rule."""
    assert {"ledger", "orjson"} <= loaded_after("import ledger")
    assert "pydantic" in loaded_after("import scrapeledger.settings")


def test_the_moved_names_are_the_same_objects() -> None:
    """The ledger owns its errors; ``scrapeledger.errors`` names the same classes, and
    ``scrapeledger.Settings`` still resolves (on first use)."""
    import ledger
    import scrapeledger
    import scrapeledger.errors
    from scrapeledger.settings import Settings

    for name in ("ScrapeledgerError", "EventError", "MalformedEventError", "UnknownEventTypeError",
                 "UnsupportedVersionError", "InvalidTransitionError"):
        assert getattr(scrapeledger.errors, name) is getattr(ledger, name)
    assert scrapeledger.Settings is Settings
