"""The bus on NATS JetStream (``pip install rxsse[nats]``): :class:`NatsBroker`, one stream of
events for many server processes on one JetStream stream."""

from ._broker import NatsBroker

__all__ = ["NatsBroker"]
