"""`python -m nodes.pe --config FILE` (or flags): see nodes.pe.server."""

import asyncio
import sys

from nodes.pe.server import run

if __name__ == "__main__":
    sys.exit(asyncio.run(run()))
