"""Quix Streams processors over the ledger: validator, scraper and state materializer.

Each module exposes a pure step function (unit-tested without a broker), ``build(settings)`` that
wires it into a Quix Streams application, and ``main(settings)``.
"""

from ._app import Out, Processor

__all__ = ["Out", "Processor"]
