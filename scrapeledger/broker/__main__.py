"""``python -m scrapeledger.broker``: the broker without the Typer CLI (see :mod:`._foreground`)."""

import sys

from ._foreground import _main

if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
