"""``rxsse.redis`` is :mod:`rxsse.brokers.redis`, under the name earlier releases used."""

from .brokers.redis import RedisBroker

__all__ = ["RedisBroker"]
