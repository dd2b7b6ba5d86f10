"""Quix Streams processors over the ledger: validator, scraper and state materializer.

Each processor module (``validator``, ``scraper``, ``materializer``) exposes its step function
(no Kafka, no metrics, no fault points: unit-tested without a broker), ``build(settings)`` that
wires it into a Quix Streams application without touching the broker (``Processor.start()``
does the I/O), and ``main(settings)``.

``Out`` and ``Processor`` are loaded on first use: importing a module of this package that
needs no Quix Streams (``processors.expiry``, which ``replay`` re-exports; ``processors.fetch``)
does not pay for importing it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._app import Out, Processor

__all__ = ["Out", "Processor"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import _app

        return getattr(_app, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
