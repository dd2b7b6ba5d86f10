"""Scrapeledger: shared configuration, errors, topics and the local Kafka runtime."""

from .errors import ScrapeledgerError
from .settings import Settings

__version__ = "0.1.0"

__all__ = ["ScrapeledgerError", "Settings", "__version__"]
