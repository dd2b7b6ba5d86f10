"""The layers stay layers: what importing one package drags in, checked in a fresh interpreter.

``ledger`` is the pure domain model every process (and ``replay``, and the tests) loads; it may
use the standard library and orjson, nothing else, so a tool that only reads events does not pay
for pydantic or a Kafka client, and the domain cannot grow a dependency on them by accident.
``scrapeledger.errors`` is imported by every layer, so it must be as cheap.

Each rule is one row of :data:`RULES`: an import statement, and the modules it must not load.
A new rule is a new row. Each statement runs in a fresh ``sys.executable`` subprocess, because
this test process has long since imported everything.

The second half reads the import graph as written (every ``import`` statement, lazy ones inside
functions included) and pins the layers: ``ledger`` on the standard library and orjson alone;
``processors`` and ``ws_edge`` never reaching up into ``replay`` (its readers live in
``scrapeledger.reader``, its expiry in ``processors.expiry``); and the CLI modules on top, imported
by nothing. The layer map itself is drawn in docs/architecture.md.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("pydantic", "pydantic_settings", "quixstreams", "confluent_kafka", "httpx", "tornado")
"""Third-party packages the domain layer must never load (settings, Kafka, HTTP, the edge)."""

RULES: dict[str, tuple[str, ...]] = {
    "import ledger": HEAVY,
    "import scrapeledger.errors": ("pydantic", "pydantic_settings"),
    # replay is the operator's package, above both (and the static rules below)
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


# --- the import graph as written: every import statement, including the lazy ones in functions ---

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("ledger", "scrapeledger", "processors", "ws_edge", "replay", "deploy")
CLI = {"scrapeledger.cli", "replay.cli"}
"""The top layer: the Typer commands. Everything else is below it and never imports it."""


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every module ``path`` imports, absolute, at any depth (a lazy import counts too)."""
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


MODULES = {_module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def _importers_of(prefixes: tuple[str, ...], among: dict[str, Path]) -> dict[str, list[str]]:
    def under(module: str) -> bool:
        return any(module == p or module.startswith(f"{p}.") for p in prefixes)

    hits = {name: sorted(i for i in imports_of(path) if under(i)) for name, path in among.items()}
    return {name: found for name, found in hits.items() if found}


def test_the_graph_reader_sees_imports() -> None:
    """Guards the static rules: they pass vacuously if the reader finds nothing."""
    assert "ledger" in imports_of(ROOT / "processors" / "validator.py")
    assert any(i.startswith("replay.") for i in imports_of(ROOT / "replay" / "cli.py"))  # relative imports
    assert len(MODULES) > 60


def test_the_ledger_imports_only_the_standard_library_and_orjson() -> None:
    allowed = set(sys.stdlib_module_names) | {"orjson", "ledger"}
    outside = {name: sorted(i for i in imports_of(path) if i.partition(".")[0] not in allowed)
               for name, path in MODULES.items() if name.partition(".")[0] == "ledger"}
    assert {name: found for name, found in outside.items() if found} == {}


def test_processors_and_the_edge_never_import_replay() -> None:
    below = {n: p for n, p in MODULES.items() if n.partition(".")[0] in ("processors", "ws_edge")}
    assert _importers_of(("replay",), below) == {}


def test_nothing_below_the_cli_imports_the_cli() -> None:
    below = {n: p for n, p in MODULES.items() if n not in CLI}
    assert _importers_of(tuple(CLI), below) == {}
