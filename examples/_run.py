"""Command line shared by the examples: ``python -m examples.NAME [--host H] [--port P]``."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable

from aiohttp import web

import rxsse


def main(create_app: Callable[[], web.Application], description: str) -> None:
    """Parse ``--host``/``--port`` and serve the app built by ``create_app`` until Ctrl-C."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    loop = "uvloop" if rxsse.use_uvloop() else "asyncio"
    print(f"{description}: http://{args.host}:{args.port}/ ({loop})", flush=True)
    web.run_app(create_app(), host=args.host, port=args.port, print=None)
