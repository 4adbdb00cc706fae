"""Contracts shared by the gateway and the consumers: event model, topics, warehouse migrations."""
