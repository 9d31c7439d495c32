"""The event bus's brokers: :class:`~rxsse.brokers.memory.MemoryBroker` for one process (the
default) and :class:`~rxsse.brokers.redis.RedisBroker` for several (``pip install
rxsse[redis]``). What a broker must do is :class:`rxsse.broker.Broker`."""
