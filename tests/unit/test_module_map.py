"""docs/architecture.md opens with a module map; it names every module of the five packages and
the deploy tooling, and nothing that is gone, so a reader can trust it as the index of the code."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("ledger", "scrapeledger", "processors", "ws_edge", "replay", "deploy")


def _mapped() -> set[str]:
    text = (ROOT / "docs" / "architecture.md").read_text()
    section = text.split("## Module map", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^- `([\w/]+\.py)`: \S", section, flags=re.M))


def test_the_module_map_names_every_module_and_only_those() -> None:
    modules = {str(p.relative_to(ROOT)) for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    mapped = _mapped()
    assert len(mapped) > 60  # the section was found and read
    assert sorted(modules - mapped) == [], "modules missing from the map in docs/architecture.md"
    assert sorted(mapped - modules) == [], "the map names modules that no longer exist"


def test_each_line_is_the_modules_own_summary() -> None:
    """A module's line in the map is the first paragraph of its docstring (double backticks
    shown as single ones), so the map changes when the module says something new."""
    text = (ROOT / "docs" / "architecture.md").read_text().split("## Module map", 1)[1].split("\n## ", 1)[0]
    lines = dict(re.findall(r"^- `([\w/]+\.py)`: (.+)$", text, flags=re.M))
    stale = {}
    for path, line in lines.items():
        doc = ast.get_docstring(ast.parse((ROOT / path).read_text())) or ""
        summary = doc.strip().split("\n\n")[0].replace("\n", " ").replace("``", "`")
        if line != summary:
            stale[path] = summary
    assert stale == {}, "regenerate these lines of the module map from the modules' docstrings"
