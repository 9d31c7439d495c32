"""How the Redis broker connects: to one server (``redis://``, ``rediss://``, ``unix://``), to
the primary that Redis Sentinel names (``redis+sentinel://``), found again after a failover, or
to a Redis Cluster (``redis+cluster://``).

A Sentinel URL lists the sentinels and names the service:
``redis+sentinel://[[user]:password@]host:port[,host:port...]/service[/db]``, the password
being the data nodes' (``?sentinel_password=`` for sentinels that have one of their own). Each
new connection asks the sentinels where the primary is, so after a failover the broker's
reconnects (its reader's backoff, the next round trip of emits) reach the promoted replica, and
the epochs' fence sees a server that is not the one the data was written on.

A Cluster URL lists some of its nodes (any one that answers will do):
``redis+cluster://[[user]:password@]host:port[,host:port...]``. All of a prefix's keys share
its hash tag, so they live in one slot, served by one primary at a time: the scripts run there,
and after a failover the client's next command finds the replica that took the slot over.
"""

from __future__ import annotations

from typing import Any, Final, TypeAlias
from urllib.parse import parse_qs, unquote, urlsplit

import redis
from redis.asyncio import Redis, RedisCluster
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff

#: The scheme of a URL that names a Sentinel-managed primary.
SENTINEL_SCHEME = "redis+sentinel"
#: The scheme of a URL that names nodes of a Redis Cluster.
CLUSTER_SCHEME = "redis+cluster"
# redis-py before 6 retries a cluster's commands with a count of its own (6 reads `retry`).
_NO_CLUSTER_RETRIES: Final[dict[str, Any]] = (
    {"cluster_error_retry_attempts": 0} if int(redis.__version__.split(".")[0]) < 6 else {}
)
#: A client of one server (or Sentinel's primary), or of a cluster.
Client: TypeAlias = "Redis | RedisCluster"


def connect(url: str, timeout: float) -> Client:
    """A client for ``url``, answering with text, with ``timeout`` seconds for each read and
    connect, and no retries of its own (re-sending an emit could publish it twice).

    Raises:
        ValueError: a Sentinel URL without sentinels or service name, a Cluster URL
            without nodes.
    """
    options: dict[str, Any] = {
        "decode_responses": True,
        "retry": Retry(NoBackoff(), 0),
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
    }
    if url.startswith(f"{CLUSTER_SCHEME}://"):
        return _cluster(url, timeout)
    if not url.startswith(f"{SENTINEL_SCHEME}://"):
        return Redis.from_url(url, **options)
    parts = urlsplit(url)
    username, password, sentinels = _hosts(parts.netloc)
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
        username=username,
        password=password,
    )
    return primary


def _cluster(url: str, timeout: float) -> RedisCluster:
    username, password, nodes = _hosts(urlsplit(url).netloc)
    if not nodes:
        raise ValueError(
            f"a Cluster URL names some of its nodes: "
            f"{CLUSTER_SCHEME}://host:port[,host:port...], not {url!r}"
        )
    return RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in nodes],
        decode_responses=True,
        username=username,
        password=password,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        # No retries of a command (an emit sent twice could publish twice); a redirect to the
        # slot's new primary (MOVED) is followed, which sends nothing twice.
        retry=Retry(NoBackoff(), 0),
        **_NO_CLUSTER_RETRIES,
    )


def _hosts(netloc: str) -> tuple[str | None, str | None, list[tuple[str, int]]]:
    """``[[user]:password@]host:port[,host:port...]`` as user, password, addresses."""
    credentials, _, hosts = netloc.rpartition("@")
    username, _, password = credentials.partition(":")
    addresses = [_address(host) for host in hosts.split(",") if host]
    return unquote(username) or None, unquote(password) or None, addresses


async def disconnect(client: Client) -> None:
    """Close ``client``'s connections, and those to its sentinels (a Sentinel URL's): they are
    not the client's own, and would otherwise be closed only when collected."""
    await client.aclose()
    pool = getattr(client, "connection_pool", None)  # (a cluster's client has one per node)
    sentinels = getattr(pool, "sentinel_manager", None)
    for sentinel in getattr(sentinels, "sentinels", ()):
        await sentinel.aclose()


def _address(host: str) -> tuple[str, int]:
    name, _, port = host.rpartition(":")
    if not name or not port.isdigit():
        raise ValueError(f"a host is host:port, not {host!r}")
    return name, int(port)
