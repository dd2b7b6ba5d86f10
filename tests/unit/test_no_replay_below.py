"""``replay`` is the operator's package, above the processors and the edge: they never import it.

The readers all three share live below them, in ``scrapeledger.reader``; expiry lives with the
materializer (``processors.expiry``). Checked here statically - no import statement names
``replay``, not even one inside a function that only runs in ``main()`` - and at run time by a
row of ``test_layering.RULES`` (loading every processor and the edge leaves ``replay`` unloaded).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.support.procs import ROOT


def _imported(path: Path) -> set[str]:
    """The absolute module names ``path`` imports (relative imports stay inside its package)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("package", ["processors", "ws_edge"])
def test_no_module_below_replay_imports_it(package: str) -> None:
    offenders = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        names = sorted(n for n in _imported(path) if n == "replay" or n.startswith("replay."))
        if names:
            offenders[str(path.relative_to(ROOT))] = names
    assert offenders == {}

