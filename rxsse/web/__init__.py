"""The web layer: controllers and routes on an aiohttp app, ``setup(app, ...)``.

Routing and parameter binding, the request pipeline of a route (admission, guards, the
handler, its result), CORS, what each route promises (its contract) and the API documents made
from it, the Prometheus counters.
"""

from ._cors import CORS
from ._docs import Docs
from ._routing import controller, delete, get, post, put, setup, sse
from ._views import Guard, Limits

__all__ = [
    "CORS",
    "Docs",
    "Guard",
    "Limits",
    "controller",
    "delete",
    "get",
    "post",
    "put",
    "setup",
    "sse",
]
