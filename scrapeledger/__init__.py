"""Scrapeledger: shared configuration, errors, topics and the local Kafka runtime.

``Settings`` is loaded on first use (PEP 562 ``__getattr__``), not at ``import scrapeledger``:
it pulls in pydantic, and every layer imports something from this package (``errors`` at the
least), including ``ledger``-only tools that never read a setting.
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
