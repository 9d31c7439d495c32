"""rxsse's pytest plugin: fixtures that serve an app on a real socket, for tests of your own
streams. Installed with rxsse (the ``pytest11`` entry point ``rxsse``); its fixtures run on
pytest-asyncio, which ``pip install 'rxsse[testing]'`` brings.

Fixtures:
    sse_server: ``server = await sse_server(app)`` serves ``app`` the way ``web.run_app``
        does (see :func:`rxsse.testing.serve`) and returns its
        :class:`~rxsse.testing.LiveServer`, a client included; shut down after the test.
    live_subscriptions: a :class:`~rxsse.testing.LiveSubscriptions`, to check disposal.

An ``async def`` test that requests one of them (itself or through its own fixtures) runs on
pytest-asyncio's event loop without any ``asyncio_mode`` setting and without a marker: the
plugin marks it ``asyncio``, as pytest-asyncio's auto mode would, and no other test (anyio's
and trio's tests stay theirs). Disable the plugin with ``-p no:rxsse``.

Example:
    >>> async def test_ticks_count_up(sse_server):  # doctest: +SKIP
    ...     server = await sse_server(create_app())
    ...     async with server.events("/ticks") as reader:
    ...         assert len(await reader.take(3)) == 3
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
from collections.abc import AsyncIterator, Callable, Generator
from typing import TYPE_CHECKING, Any, Final, NoReturn, Protocol

import pytest

# (rxsse itself is imported only when a fixture runs: a plugin loads before coverage
# starts measuring, and for every test run, rxsse's or not.)
if TYPE_CHECKING:
    from aiohttp import web
    from pluggy import Result

    from ._server import LiveServer, LiveSubscriptions

__all__ = ["ServeApp", "live_subscriptions", "sse_server"]

#: The fixtures that make an ``async def`` test run on pytest-asyncio's loop.
FIXTURES: Final = frozenset({"sse_server", "live_subscriptions"})

_HAS_PYTEST_ASYNCIO: Final = importlib.util.find_spec("pytest_asyncio") is not None


class ServeApp(Protocol):
    """What ``sse_server`` is: ``await sse_server(app, **runner_options)``."""

    async def __call__(self, app: web.Application, **runner_options: Any) -> LiveServer:
        """Serve ``app`` (``runner_options`` go to ``web.AppRunner``) until the test ends."""
        ...


def _async_fixture(function: Callable[..., Any]) -> Any:
    """``pytest_asyncio.fixture``; without pytest-asyncio, a fixture that says what to install
    (rxsse may be installed without its ``testing`` extra: the plugin still loads)."""
    if _HAS_PYTEST_ASYNCIO:
        import pytest_asyncio

        return pytest_asyncio.fixture(function)

    def missing() -> NoReturn:
        pytest.fail(
            f"rxsse's {function.__name__} fixture runs on pytest-asyncio: "
            "pip install 'rxsse[testing]'"
        )

    missing.__doc__ = function.__doc__
    return pytest.fixture(name=function.__name__)(missing)


@_async_fixture
async def sse_server() -> AsyncIterator[ServeApp]:
    """``server = await sse_server(app)``: ``app`` served on a free loopback port as
    ``web.run_app`` serves it, with a client (:class:`~rxsse.testing.LiveServer`); every app
    served is shut down after the test (as on SIGTERM: its open streams end)."""
    from ._server import serve

    async with contextlib.AsyncExitStack() as servers:

        async def start(app: web.Application, **runner_options: Any) -> LiveServer:
            return await servers.enter_async_context(serve(app, **runner_options))

        yield start


@pytest.fixture
def live_subscriptions() -> LiveSubscriptions:
    """A :class:`~rxsse.testing.LiveSubscriptions`: ``track()`` a source, check ``live``."""
    from ._server import LiveSubscriptions

    return LiveSubscriptions()


# Innermost of the wrappers (trylast): the mark is on the item when pytest-asyncio's own
# wrapper looks for it, and turns the coroutine into a test it runs.
@pytest.hookimpl(hookwrapper=True, trylast=True)
def pytest_pycollect_makeitem(
    collector: pytest.Module | pytest.Class, name: str, obj: object
) -> Generator[None, Result[Any], None]:
    """Mark ``asyncio`` the coroutine tests that request an rxsse fixture."""
    outcome = yield
    result = outcome.get_result()
    for item in result if isinstance(result, list) else [result]:
        if (
            isinstance(item, pytest.Function)
            and inspect.iscoroutinefunction(item.obj)
            and not FIXTURES.isdisjoint(item.fixturenames)
            and item.get_closest_marker("asyncio") is None
        ):
            item.add_marker(pytest.mark.asyncio)
