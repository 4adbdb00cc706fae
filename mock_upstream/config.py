"""``MockConfig`` and its command-line form (``gatewatch mock-upstream ...``)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, fields

DEFAULT_MODELS = ("gpt-4o-mini", "gpt-4o", "text-embedding-3-small", "mock-small", "mock-large")
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8090


@dataclass(frozen=True, slots=True)
class MockConfig:
    """Behaviour of the mock upstream. Every field has a CLI flag (``--latency-ms`` for ``latency_ms``)."""

    latency_ms: float = 0.0  # before the response starts (x-mock-latency-ms overrides it per request)
    ttft_ms: float = 0.0  # streams: before the first token event; non-stream: added to the latency
    tokens_per_s: float = 0.0  # streams are paced at this rate; 0 = as fast as possible
    completion_tokens: int = 16  # natural reply length; max_tokens & co. cut it ("length")
    error_rate: float = 0.0  # share of inference requests answered with error_status
    error_status: int = 500
    rate_limit_rate: float = 0.0  # share answered 429 with Retry-After
    retry_after_s: float = 1.0
    hang_rate: float = 0.0  # share accepted and never answered
    disconnect_rate: float = 0.0  # share dropped mid-stream (non-stream: closed without a response)
    seed: int = 0  # seed of the fault PRNG
    models: tuple[str, ...] = DEFAULT_MODELS  # what /v1/models lists (any model name is accepted)
    embedding_dimensions: int = 1536  # default when the request has no `dimensions`
    record_last: int = 1000  # request bodies + headers kept for /mock/stats (0 = none)

    def __post_init__(self) -> None:
        errors = [f"{name} must be >= 0" for name in _NON_NEGATIVE if getattr(self, name) < 0]
        errors += [f"{name} must be within [0, 1]" for name in _RATES if not 0 <= getattr(self, name) <= 1]
        if sum(getattr(self, name) for name in _RATES) > 1:
            errors.append("error_rate + rate_limit_rate + hang_rate + disconnect_rate must be <= 1")
        if not 400 <= self.error_status <= 599:
            errors.append("error_status must be an HTTP error status (400-599)")
        if self.completion_tokens < 1 or self.embedding_dimensions < 1:
            errors.append("completion_tokens and embedding_dimensions must be >= 1")
        if not self.models:
            errors.append("models must name at least one model")
        if errors:
            raise ValueError("invalid MockConfig: " + "; ".join(errors))

    @property
    def fault_rates(self) -> tuple[float, float, float, float]:
        return (self.error_rate, self.rate_limit_rate, self.hang_rate, self.disconnect_rate)


_RATES = ("error_rate", "rate_limit_rate", "hang_rate", "disconnect_rate")
_NON_NEGATIVE = ("latency_ms", "ttft_ms", "tokens_per_s", "retry_after_s", "record_last")
_METAVAR = {"tokens_per_s": "RATE", "retry_after_s": "SECONDS", "models": "ID,ID,...", "record_last": "N"}
_HELP = {
    "latency_ms": "base latency before each response starts (ms)",
    "ttft_ms": "time to first token (ms)",
    "tokens_per_s": "stream pacing in tokens per second (0 = as fast as possible)",
    "completion_tokens": "natural reply length in tokens",
    "error_rate": "share of requests answered with --error-status",
    "error_status": "status used by --error-rate",
    "rate_limit_rate": "share of requests answered 429 with Retry-After",
    "retry_after_s": "Retry-After sent with 429 (seconds)",
    "hang_rate": "share of requests accepted and never answered",
    "disconnect_rate": "share of requests dropped mid-stream",
    "seed": "seed of the fault PRNG",
    "models": "comma-separated model ids listed by /v1/models",
    "embedding_dimensions": "default embedding size",
    "record_last": "request bodies kept for /mock/stats",
}


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--host``, ``--port`` and one flag per ``MockConfig`` field to ``parser``."""
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"bind address (default {DEFAULT_HOST})")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    defaults = MockConfig()
    for f in fields(MockConfig):
        default = getattr(defaults, f.name)
        kind = _csv if f.name == "models" else type(default)
        shown = ",".join(default) if f.name == "models" else default
        parser.add_argument(
            "--" + f.name.replace("_", "-"),
            dest=f"mock_{f.name}",
            metavar=_METAVAR.get(f.name, f.name.rsplit("_", 1)[-1].upper()),
            type=kind,
            default=None,
            help=f"{_HELP[f.name]} (default {shown})",
        )


def config_from_args(args: argparse.Namespace) -> MockConfig:
    """The ``MockConfig`` for parsed arguments; flags left out keep the defaults. Raises ValueError."""
    given = {f.name: getattr(args, f"mock_{f.name}", None) for f in fields(MockConfig)}
    return MockConfig(**{name: value for name, value in given.items() if value is not None})


def _csv(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())
