"""Gatewatch gateway: OpenAI-compatible proxy with governance, redaction and event emission."""
