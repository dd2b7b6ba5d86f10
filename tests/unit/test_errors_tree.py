"""The exception tree drawn in ``scrapeledger.errors``' docstring is the real one.

Every error class of the project derives from ``ScrapeledgerError``; the docstring draws them all
as an indented diagram, one line per class. This test reads that diagram and checks it against
the classes: each drawn class exists where the line says (a bare name in ``scrapeledger.errors``,
or ``ledger`` when marked so; ``module.Name`` in that module, ``scrapeledger.`` left out), its
parent in the drawing is its base class, and no error class of the project is left out.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from dataclasses import dataclass

import scrapeledger.errors
from scrapeledger.errors import ScrapeledgerError

PACKAGES = ("ledger", "scrapeledger", "processors", "ws_edge", "replay", "deploy")
_LINE = re.compile(r"^    (?P<indent>(?:    )*)(?P<name>[A-Za-z_][\w.]*)  +(?P<text>\S.*)$")


@dataclass(frozen=True)
class Drawn:
    path: str
    """As drawn: ``Name`` or ``module.Name``."""
    parent: str | None
    text: str


def drawn_tree() -> list[Drawn]:
    doc = scrapeledger.errors.__doc__ or ""
    block = doc.split("The whole tree, and when each class is raised::\n\n", 1)[1]
    out: list[Drawn] = []
    stack: list[str] = []
    for line in block.rstrip().splitlines():
        match = _LINE.match(line)
        assert match, f"not a line of the tree: {line!r}"
        depth = len(match["indent"]) // 4
        assert depth <= len(stack), f"{match['name']} is indented past its parent"
        del stack[depth:]
        out.append(Drawn(match["name"], stack[-1] if stack else None, match["text"]))
        stack.append(match["name"])
    return out


def project_errors() -> set[type[BaseException]]:
    for top in PACKAGES:
        package = importlib.import_module(top)
        for info in pkgutil.walk_packages(package.__path__, top + "."):
            importlib.import_module(info.name)
    found: set[type[BaseException]] = set()
    todo: list[type[BaseException]] = [ScrapeledgerError]
    while todo:
        cls = todo.pop()
        if cls.__module__.partition(".")[0] in PACKAGES:
            found.add(cls)
        todo.extend(cls.__subclasses__())
    return found


def resolve(drawn: Drawn) -> type[BaseException]:
    module, _, name = drawn.path.rpartition(".")
    if not module:
        module = "ledger" if drawn.text.startswith("(ledger)") else "scrapeledger.errors"
    elif module.partition(".")[0] not in PACKAGES:
        module = f"scrapeledger.{module}"
    cls = getattr(importlib.import_module(module), name)
    assert isinstance(cls, type) and issubclass(cls, ScrapeledgerError), drawn.path
    return cls


def test_the_drawn_tree_is_the_class_tree() -> None:
    drawn = drawn_tree()
    classes = {d.path: resolve(d) for d in drawn}
    assert len(set(classes.values())) == len(drawn), "a class is drawn twice"
    assert drawn[0].path == "ScrapeledgerError" and drawn[0].parent is None
    for d in drawn[1:]:
        assert d.parent is not None
        assert classes[d.parent] in classes[d.path].__bases__, f"{d.path} is not a {d.parent}"


def test_every_error_class_of_the_project_is_drawn() -> None:
    drawn = {resolve(d) for d in drawn_tree()}
    missing = sorted(f"{cls.__module__}.{cls.__qualname__}" for cls in project_errors() - drawn)
    assert missing == [], "add these to the tree in scrapeledger/errors.py"
