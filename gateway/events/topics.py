"""Kafka client settings from ``KafkaConfig`` and topic creation (shared by the emitter and the CLI)."""

from __future__ import annotations

import logging
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, for_code
from aiokafka.helpers import create_ssl_context

from schemas.config import KafkaConfig

log = logging.getLogger(__name__)


def client_kwargs(kafka: KafkaConfig) -> dict[str, Any]:
    """Connection settings common to producer, consumer and admin client."""
    if not kafka.bootstrap_servers:
        raise ValueError("kafka.bootstrap_servers is not set (the embedded default fills it in at start)")
    kw: dict[str, Any] = {
        "bootstrap_servers": kafka.bootstrap_servers,
        "client_id": kafka.client_id,
        "request_timeout_ms": kafka.request_timeout_ms,
        "security_protocol": kafka.security_protocol,
    }
    if kafka.security_protocol in ("SSL", "SASL_SSL"):
        kw["ssl_context"] = create_ssl_context()
    if kafka.sasl_mechanism:
        kw.update(
            sasl_mechanism=kafka.sasl_mechanism,
            sasl_plain_username=kafka.sasl_username,
            sasl_plain_password=kafka.sasl_password,
        )
    return kw


async def ensure_topic(kafka: KafkaConfig, topic: str | None = None) -> bool:
    """Create ``topic`` (default ``kafka.topic``) with ``kafka.partitions`` partitions if it is missing.

    Returns True when it was created. Raises aiokafka errors (connection, authorization, ...)."""
    name = topic or kafka.topic
    admin = AIOKafkaAdminClient(**client_kwargs(kafka))
    await admin.start()
    try:
        if name in await admin.list_topics():
            return False
        resp = await admin.create_topics([NewTopic(name, kafka.partitions, kafka.replication_factor)])
        for _topic, code, message in resp.topic_errors:
            if code == TopicAlreadyExistsError.errno:
                return False
            if code:
                raise for_code(code)(f"could not create topic {name}: {message}")
        log.info("created topic %s (%d partitions)", name, kafka.partitions)
        return True
    finally:
        await admin.close()
