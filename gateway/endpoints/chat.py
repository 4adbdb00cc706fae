"""POST /v1/chat/completions: a non-empty ``messages`` array of role-tagged messages."""

from __future__ import annotations

from typing import Any

from gateway.endpoints import texts
from gateway.endpoints.choices import ChoicesEndpoint
from gateway.endpoints.common import invalid, message
from gateway.endpoints.texts import TextRef


class ChatCompletions(ChoicesEndpoint):
    name = "chat.completions"
    path = "/chat/completions"
    items = "messages"
    items_limit = "max_messages"

    def validate(self, body: dict[str, Any]) -> None:
        msgs = body.get("messages")
        if not isinstance(msgs, list) or not msgs:
            raise invalid("'messages' is required and must be a non-empty array.", "messages")
        for i, m in enumerate(msgs):
            if not isinstance(m, dict) or not isinstance(m.get("role"), str):
                raise invalid(f"'messages[{i}]' must be an object with a string 'role'.", f"messages[{i}]")
            c = m.get("content")
            if c is not None and not isinstance(c, str | list):
                raise invalid(f"'messages[{i}].content' must be a string or an array of parts.",
                              f"messages[{i}].content")

    def request_texts(self, body: dict[str, Any]) -> list[TextRef]:
        refs = texts.identity(body)
        for m in body.get("messages") or ():
            if isinstance(m, dict):
                refs += texts.content(m, "content")
                refs += texts.calls(m)
        return refs

    def messages(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        return [message(str(m.get("role", "user")), m.get("content"), m.get("name"), m.get("tool_calls"))
                for m in body.get("messages") or () if isinstance(m, dict)]


CHAT = ChatCompletions()
