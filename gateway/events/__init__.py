"""Event emission: bounded queue -> Kafka (aiokafka, acks=all) with an append-only disk spool on failure."""

from gateway.events.emitter import EventEmitter
from gateway.events.spool import Spool
from gateway.events.topics import ensure_topic

__all__ = ["EventEmitter", "Spool", "ensure_topic"]
