"""How the Redis broker connects: to one server (``redis://``, ``rediss://``, ``unix://``), or
to the primary that Redis Sentinel names (``redis+sentinel://``), found again after a failover.

A Sentinel URL lists the sentinels and names the service:
``redis+sentinel://[[user]:password@]host:port[,host:port...]/service[/db]``, the password
being the data nodes' (``?sentinel_password=`` for sentinels that have one of their own). Each
new connection asks the sentinels where the primary is, so after a failover the broker's
reconnects (its reader's backoff, the next round trip of emits) reach the promoted replica, and
the epochs' fence sees a server that is not the one the data was written on.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff

#: The scheme of a URL that names a Sentinel-managed primary.
SENTINEL_SCHEME = "redis+sentinel"


def connect(url: str, timeout: float) -> Redis:
    """A client for ``url``, answering with text, with ``timeout`` seconds for each read and
    connect, and no retries of its own (re-sending an emit could publish it twice).

    Raises:
        ValueError: a Sentinel URL without sentinels or service name.
    """
    options: dict[str, Any] = {
        "decode_responses": True,
        "retry": Retry(NoBackoff(), 0),
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
    }
    if not url.startswith(f"{SENTINEL_SCHEME}://"):
        return Redis.from_url(url, **options)
    parts = urlsplit(url)
    credentials, _, hosts = parts.netloc.rpartition("@")
    username, _, password = credentials.partition(":")
    sentinels = [_address(host) for host in hosts.split(",") if host]
    path = [unquote(segment) for segment in parts.path.split("/") if segment]
    if not sentinels or not path:
        raise ValueError(
            f"a Sentinel URL names its sentinels and service: "
            f"{SENTINEL_SCHEME}://host:port[,host:port...]/service[/db], not {url!r}"
        )
    service, db = path[0], int(path[1]) if len(path) > 1 else 0
    query = parse_qs(parts.query)
    sentinel_password = query.get("sentinel_password", [None])[0]
    sentinel = Sentinel(  # type: ignore[no-untyped-call]  # (redis-py leaves it untyped)
        sentinels,
        sentinel_kwargs={
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
            "password": sentinel_password,
        },
        **options,
    )
    primary: Redis = sentinel.master_for(
        service,
        redis_class=Redis,
        db=db,
        username=unquote(username) or None,
        password=unquote(password) or None,
    )
    return primary


async def disconnect(client: Redis) -> None:
    """Close ``client``'s connections, and those to its sentinels (a Sentinel URL's): they are
    not the client's own, and would otherwise be closed only when collected."""
    await client.aclose()
    sentinels = getattr(client.connection_pool, "sentinel_manager", None)
    for sentinel in getattr(sentinels, "sentinels", ()):
        await sentinel.aclose()


def _address(host: str) -> tuple[str, int]:
    name, _, port = host.rpartition(":")
    if not name or not port.isdigit():
        raise ValueError(f"a sentinel is host:port, not {host!r}")
    return name, int(port)
