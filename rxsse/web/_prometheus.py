"""The counters as Prometheus metrics, through ``prometheus_client`` (``pip install
'rxsse[prometheus]'``): names, ``HELP`` and ``TYPE`` lines, ``_total`` suffixes and the text
format are the library's. The counters themselves (``rxsse.metrics(app)``, ``bus.metrics``)
need nothing installed."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any, Final

from ..bus._metrics import BusMetrics
from ..streaming._metrics import StreamMetrics

#: The Content-Type of the text exposition format.
CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
_GAUGES: Final = frozenset({"open_streams"})


class MetricsExporter:
    """Renders an app's stream counters (and a bus's) in the Prometheus text format.

    Raises:
        RuntimeError: when ``prometheus_client`` is not installed (at construction: ``setup``
            makes one, so a missing library is found at startup, not at the first scrape).
    """

    def __init__(self, streams: StreamMetrics, bus: BusMetrics | None = None) -> None:
        try:
            from prometheus_client import CollectorRegistry
        except ImportError as exc:
            raise RuntimeError(
                "serving metrics needs prometheus_client: pip install 'rxsse[prometheus]'"
            ) from exc
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(_Collector(streams, bus))

    def text(self) -> str:
        """The current values, as Prometheus text."""
        from prometheus_client import generate_latest

        return generate_latest(self._registry).decode()


class _Collector:
    """Reads the counters at each scrape (nothing is copied in between)."""

    def __init__(self, streams: StreamMetrics, bus: BusMetrics | None) -> None:
        # The help texts are read from the docstrings once, here, not at each scrape.
        self._groups: list[tuple[str, StreamMetrics | BusMetrics, dict[str, str]]] = [
            ("rxsse_", streams, _helps(StreamMetrics))
        ]
        if bus is not None:
            self._groups.append(("rxsse_bus_", bus, _helps(BusMetrics)))

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        for prefix, group, helps in self._groups:
            for item in dataclasses.fields(group):
                name, value = prefix + item.name, getattr(group, item.name)
                help_text = helps.get(item.name, item.name.replace("_", " "))
                if item.name in _GAUGES:
                    yield GaugeMetricFamily(name, help_text, value=value)
                elif isinstance(value, dict):
                    family = CounterMetricFamily(name, help_text, labels=["policy"])
                    for label, count in value.items():
                        family.add_metric([label], count)
                    yield family
                else:
                    yield CounterMetricFamily(name, help_text, value=value)


def _helps(kind: type) -> dict[str, str]:
    """The ``Attributes:`` of a counters class's docstring, by name: one source for the API
    documentation and the ``HELP`` lines."""
    helps: dict[str, str] = {}
    name = None
    for line in (kind.__doc__ or "").split("Attributes:", 1)[-1].splitlines():
        text = line.strip()
        head, colon, rest = text.partition(":")
        if (
            colon
            and line.startswith(" " * 8)
            and not line.startswith(" " * 12)
            and head.isidentifier()
        ):
            name = head
            helps[name] = rest.strip().replace("``", "")
        elif name is not None and text:
            helps[name] += " " + text.replace("``", "")
    return helps
