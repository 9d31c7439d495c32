"""Optional speed-ups (``pip install rxsse[speed]``)."""

from __future__ import annotations

import asyncio
import importlib


def use_uvloop() -> bool:
    """Make new event loops uvloop ones, if uvloop is installed; return whether it is.

    Call it before the loop is created (before ``web.run_app``). uvloop's faster transports
    help every stream; nothing in rxsse depends on it.

    Example:
        >>> rxsse.use_uvloop()  # doctest: +SKIP
        True
    """
    try:
        uvloop = importlib.import_module("uvloop")  # optional: no type stubs needed
    except ImportError:
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True
