"""The emitter's connection to the broker: one producer per connection attempt, the topic ensured, the
offset watch consulted (did the broker come back without what it acknowledged?), and the broker-up
state as a gauge and a log line per change. Kept apart from the delivery loop so that loop reads as
the ordering rules it keeps (emitter.py)."""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from gateway.config import EmitterConfig
from gateway.events import metrics as m
from gateway.events.delivery import close_producer, producer_kwargs
from gateway.events.recovery import OffsetWatch
from gateway.events.topics import ensure_topic
from schemas.config import KafkaConfig

log = logging.getLogger(__name__)


class Connector:
    def __init__(self, kafka: KafkaConfig, cfg: EmitterConfig, watch: OffsetWatch | None) -> None:
        self._kafka = kafka
        self._cfg = cfg
        self._watch = watch
        self._producer_kwargs = producer_kwargs(kafka, cfg)
        self.timeout = kafka.request_timeout_ms / 1000 + 1.0  # one delivery or connection attempt
        self._up: bool | None = None

    async def connect(self) -> AIOKafkaProducer | None:
        """A started producer, or None (logged once per outage) when the broker did not answer in time."""
        producer = AIOKafkaProducer(**self._producer_kwargs)
        try:
            async with asyncio.timeout(self.timeout):
                await producer.start()
                await self._ensure_topic()
                await producer.partitions_for(self._kafka.topic)
            if self._watch is not None:
                await self._watch.poll()  # did the broker come back without what it acknowledged?
        except (KafkaError, OSError, TimeoutError) as exc:
            m.DELIVERY_ERRORS.labels(type(exc).__name__).inc()
            if self._up is not False:
                log.warning("broker %s unreachable (%s), spooling; retry every %.1fs",
                            self._kafka.bootstrap_servers, type(exc).__name__, self._cfg.retry_interval_s)
            self.set_up(False)
            await close_producer(producer, abandon=True)
            return None
        self.set_up(True)
        return producer

    async def _ensure_topic(self) -> None:
        try:
            await ensure_topic(self._kafka)
        except KafkaError as exc:
            if exc.retriable:
                raise
            log.warning("could not ensure topic %s (%s); relying on the broker", self._kafka.topic, exc)

    def set_up(self, up: bool) -> None:
        if up and self._up is not True:
            log.info("connected to broker %s", self._kafka.bootstrap_servers)
        self._up = up
        m.BROKER_UP.set(1 if up else 0)
