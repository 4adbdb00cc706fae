"""Secrets never reach a log line: a filter on every handler of the process scrubs credentials from the
formatted message and from the traceback text before anything is written.

What it scrubs (the value, keeping the name so the line still says what was there):
- credential headers in any rendering (``'Authorization': 'Bearer ...'``, ``api-key=...``, ``Cookie: ...``,
  ``x-api-key``, ``proxy-authorization``, ``set-cookie``);
- bearer tokens anywhere (``Bearer <token>``);
- Gatewatch API keys (``gw-``) and console tokens (``gwc-``), and OpenAI-style keys (``sk-...``).

It is a second line of defence: the code logs no request (``Exchange`` has a repr without headers or
text, post-response failures name the step only); this catches what a library or a future change prints.
"""

from __future__ import annotations

import logging
import re

REDACTED = "[REDACTED]"
_HEADER = re.compile(
    r"""(?ix)
    (?P<name>\b(?:proxy-)?authorization|\bx-api-key|\bapi-key|\bapi_key|\bset-cookie|\bcookie)
    (?P<sep>['"]?\s*[:=]\s*['"]?)
    (?P<value>[^'"\r\n,}]+)
    """)
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}")
_KEYS = re.compile(r"\b(?:gwc?-|sk-(?:proj-)?)[A-Za-z0-9_-]{16,}")


def scrub(text: str) -> str:
    """``text`` with every credential value replaced by ``[REDACTED]``."""
    if not text:
        return text
    text = _HEADER.sub(lambda m: m["name"] + m["sep"] + REDACTED, text)
    text = _BEARER.sub(lambda m: m[1] + " " + REDACTED, text)
    return _KEYS.sub(REDACTED, text)


class SecretsFilter(logging.Filter):
    """Rewrites each record in place: message formatted and scrubbed, traceback text rendered and scrubbed."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string: keep the template only
            message = str(record.msg)
        record.msg, record.args = scrub(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
            record.exc_info = None  # the handler prints exc_text; it must not re-render the raw traceback
        if record.stack_info:
            record.stack_info = scrub(record.stack_info)
        return True


def install(logger: logging.Logger | None = None) -> None:
    """Add the filter to every handler of ``logger`` (the root logger by default), once each."""
    for handler in (logger or logging.getLogger()).handlers:
        if not any(isinstance(f, SecretsFilter) for f in handler.filters):
            handler.addFilter(SecretsFilter())
