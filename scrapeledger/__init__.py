"""Scrapeledger's shared package: the plumbing every component uses, and the top layer.

Plumbing (above ``ledger``, below ``processors``, ``ws_edge`` and ``replay``): ``settings``,
``errors`` (the whole exception tree), ``topics``, the Kafka ``clients``, ``reader`` (reading the
ledger back), ``delivery`` (the result route to the edge pod) and ``partitioner``, ``outage``,
``observability``, ``vault``, ``redact``, ``clusters``, ``children``, ``faults``; the local Kafka
launcher ``broker/`` (dev and test only). On top of every layer, imported by nothing: ``cli``
(the ``scrapeledger`` command), with the two commands only it imports, ``supervisor``
(``scrapeledger up``) and ``submit`` (the client command).

``Settings`` is loaded on first use (PEP 562 ``__getattr__``), not at ``import scrapeledger``:
it pulls in pydantic, and every layer above ``ledger`` imports something from this package
(``errors`` at the least), including tools that only need the ledger's types and never read a
setting.
"""

from typing import TYPE_CHECKING, Any

from .errors import ScrapeledgerError

if TYPE_CHECKING:
    from .settings import Settings

__version__ = "0.1.0"

__all__ = ["ScrapeledgerError", "Settings", "__version__"]


def __getattr__(name: str) -> Any:
    """``scrapeledger.Settings`` on first use; any other unknown name is an AttributeError (which
    also lets ``from scrapeledger import topics`` fall through to importing the submodule)."""
    if name == "Settings":
        from .settings import Settings

        globals()["Settings"] = Settings
        return Settings
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
