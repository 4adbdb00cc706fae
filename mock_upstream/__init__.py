"""An OpenAI-compatible mock server: the embedded default upstream, the gateway tests' fault injector and the
benchmarks' target.

Endpoints (all deterministic for a given model + prompt; token counts from ``text.TOKEN_RE``):
``POST /v1/chat/completions``, ``/v1/completions``, ``/v1/embeddings``, ``/v1/responses`` (stream or not),
``GET /v1/models``, ``/v1/models/{id}``, ``/healthz``; test hooks ``GET /mock/stats``, ``POST /mock/reset``.

Request headers: ``x-request-id`` (echoed), ``x-mock-fault`` (see ``faults``), ``x-mock-latency-ms``
(overrides the configured latency), ``x-mock-tokens`` (natural reply length).

Speed: no middlewares, no pydantic, orjson, nothing logged per request, and chat replies cached per raw
body (they are a pure function of it). A small non-streamed chat request costs ~1.26x the CPU instructions of
a bare aiohttp handler (callgrind, 2000 requests).

Wiring the CLI::

    add_cli_arguments(parser)          # --host --port --latency-ms --ttft-ms --tokens-per-s ...
    run_from_args(args)                # == run(config_from_args(args), args.host, args.port)
"""

from mock_upstream.app import create_app
from mock_upstream.config import MockConfig, add_cli_arguments, config_from_args
from mock_upstream.server import MockUpstream, run, run_from_args, serve
from mock_upstream.state import MockState
from mock_upstream.text import TOKEN_RE, count_tokens

__all__ = [
    "TOKEN_RE",
    "MockConfig",
    "MockState",
    "MockUpstream",
    "add_cli_arguments",
    "config_from_args",
    "count_tokens",
    "create_app",
    "run",
    "run_from_args",
    "serve",
]
