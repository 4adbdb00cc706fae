"""Odd and overlong request paths on a real console server (raw HTTP over a socket, so nothing is
normalised on the way): every answer is a 4xx in the API's error shape, never a 500, and leaks nothing
(no traceback, no file name, no echo of an overlong path). The page's files are still served."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from prometheus_client import CollectorRegistry

from consumers.console import TOKENS_FILE, TokenStore
from consumers.console.errors import MAX_PATH_CHARS
from consumers.console.page import STATIC_DIR
from consumers.warehouse import Warehouse, apply_migrations
from consumers.worker import ConsoleDeps, create_console_app
from tests.audit.conftest import Tokens, make_tokens

pytestmark = pytest.mark.timeout(60)
LEAKS = ("Traceback", "File name too long", "Errno", str(STATIC_DIR), "consumers/", "secret")


@pytest.fixture(scope="module")
def wh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Warehouse, Tokens]]:
    home = tmp_path_factory.mktemp("paths")
    warehouse = Warehouse(f"chdb://{home / 'warehouse'}")
    try:
        apply_migrations(warehouse.client)
        yield warehouse, make_tokens(home)
    finally:
        warehouse.close()


async def _broken(request: web.Request) -> web.Response:
    raise RuntimeError(f"secret detail from {STATIC_DIR}")


@pytest.fixture
async def server(wh: tuple[Warehouse, Tokens]) -> AsyncIterator[TestServer]:
    warehouse, tokens = wh
    app = create_console_app(ConsoleDeps(CollectorRegistry(), warehouse, tokens=TokenStore(tokens.home / TOKENS_FILE)))
    app.router.add_get("/broken", _broken)  # a handler bug: the middleware's last resort
    srv = TestServer(app)
    await srv.start_server()
    try:
        yield srv
    finally:
        await srv.close()


async def raw(srv: TestServer, target: str, method: str = "GET", token: str | None = None,
              headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """One request with ``target`` sent byte for byte; (status, headers, body)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
    lines = [f"{method} {target} HTTP/1.1", "Host: console", "Connection: close"]
    if token:
        lines.append(f"Authorization: Bearer {token}")
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    hdrs = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
    if hdrs.get("transfer-encoding") == "chunked":
        body = _unchunk(body)
    return int(status_line.split()[1]), hdrs, body


def _unchunk(body: bytes) -> bytes:
    out = b""
    while body:
        size, _, rest = body.partition(b"\r\n")
        n = int(size, 16)
        if n == 0:
            break
        out, body = out + rest[:n], rest[n + 2:]
    return out


def error_of(status: int, hdrs: dict[str, str], body: bytes) -> dict[str, Any]:
    """The ``{"error": {"code", "message"}}`` of a 4xx answer that leaks nothing."""
    assert 400 <= status < 500, (status, body[:300])
    assert hdrs["content-type"].startswith("application/json"), hdrs
    err = orjson.loads(body)["error"]
    assert set(err) == {"code", "message"} and len(err["message"]) < 200, err
    assert not any(leak in body.decode() for leak in LEAKS), body[:300]
    return err  # type: ignore[no-any-return]


LONG = "a" * 5000
STATIC_404 = [
    "/static/" + "a" * 300,  # one name over NAME_MAX (was OSError: File name too long -> 500)
    "/static/" + "%C3%A9" * 200,  # 400 bytes once decoded
    "/static/" + "a/" * 900 + "x",  # deep, under the length limit
    "/static/%00", "/static/a%00b", "/static/js/main.js%00",
    "/static/%2e%2e/api.py", "/static/%2e%2e%2fapi.py", "/static/..%2fapi.py", "/static/..%5capi.py",
    "/static/%252e%252e/api.py", "/static/" + "%2e%2e/" * 10 + "etc/passwd", "/static/\\..\\api.py",
    "/static/../api.py", "/static/js/../../api.py", "/static/vendor/../../page.py", "/static/./js/main.js",
    "/static/%ff", "/static/%", "/static/%zz", "/static/index.html/", "/static/js/main.js/x",
    "/static/js", "/static/js/", "/static/", "/static",
]


@pytest.mark.parametrize("target", STATIC_404, ids=lambda t: t[:40])
async def test_odd_static_paths_are_404(server: TestServer, target: str) -> None:
    status, hdrs, body = await raw(server, target)
    assert status == 404 and error_of(status, hdrs, body)["code"] == "not_found"


OVERLONG = ["/static/" + LONG, "/static/" + "a/" * 3000, "/" + LONG, "/api/" + LONG, "/api/dashboard/" + LONG,
            "/api/audit/" + LONG, "/healthz/" + LONG]


@pytest.mark.parametrize("target", OVERLONG, ids=lambda t: f"{t[:20]}...({len(t)})")
async def test_overlong_paths_are_414_with_or_without_a_token(server: TestServer, wh: tuple[Warehouse, Tokens],
                                                              target: str) -> None:
    assert len(target) > MAX_PATH_CHARS
    for token in (None, wh[1].admin):
        status, hdrs, body = await raw(server, target, token=token)
        assert status == 414 and error_of(status, hdrs, body)["code"] == "uri_too_long"


async def test_api_paths_with_odd_segments(server: TestServer, wh: tuple[Warehouse, Tokens]) -> None:
    admin = wh[1].admin
    seg = "b" * 1500  # long, but under the limit: reaches the routes
    for target in (f"/api/{seg}", f"/api/dashboard/{seg}", "/api/dashboard/%00", "/api/dashboard/%ff",
                   "/api/dashboard/%2e%2e%2fwhoami", f"/api/{'c/' * 700}", "/api/audit/verify/x"):
        status, hdrs, body = await raw(server, target)  # no token: refused before anything else
        assert status == 401 and error_of(status, hdrs, body)["code"] == "unauthorized", target
        status, hdrs, body = await raw(server, target, token=admin)
        assert status == 404 and error_of(status, hdrs, body)["code"] == "not_found", target
        assert seg not in body.decode()  # an overlong segment is not echoed back
    status, hdrs, body = await raw(server, "/api/query", token=admin)  # POST-only route
    assert status == 405 and error_of(status, hdrs, body)["code"] == "method_not_allowed"
    assert "POST" in hdrs["allow"]


async def test_other_routes_errors_are_shaped_too(server: TestServer) -> None:
    status, hdrs, body = await raw(server, "/nope")
    assert status == 404 and error_of(status, hdrs, body)["code"] == "not_found"
    status, hdrs, body = await raw(server, "/healthz", method="POST", headers={"Content-Length": "0"})
    assert status == 405 and error_of(status, hdrs, body)["code"] == "method_not_allowed"
    assert "GET" in hdrs["allow"]


async def test_a_handler_failure_is_a_bare_500(server: TestServer, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="consumers.console.errors"):
        status, hdrs, body = await raw(server, "/broken")
    assert status == 500 and hdrs["content-type"].startswith("application/json")
    assert orjson.loads(body) == {"error": {"code": "internal_error",
                                            "message": "the console could not answer this request"}}
    assert not any(leak in body.decode() for leak in LEAKS)
    assert any("secret detail" in (r.exc_text or "") for r in caplog.records)  # logged here, not answered


async def test_beyond_the_parser_limit_is_still_a_4xx(server: TestServer) -> None:
    """aiohttp's HTTP parser refuses request lines over 8190 bytes itself (plain text, before any route)."""
    status, _, _ = await raw(server, "/static/" + "a" * 9000)
    assert status == 400


async def test_page_files_still_served(server: TestServer, caplog: pytest.LogCaptureFixture) -> None:
    for target in ("/static/js/main.js", "/static/vendor/uplot/uPlot.esm.js", "/static/css/console.css",
                   "/static/img/favicon.svg"):
        status, hdrs, body = await raw(server, target)
        assert status == 200 and body == (STATIC_DIR / target.removeprefix("/static/")).read_bytes(), target
        assert hdrs["x-content-type-options"] == "nosniff" and "etag" in hdrs, target
        status, _, _ = await raw(server, target, headers={"If-None-Match": hdrs["etag"]})
        assert status == 304, target
    status, hdrs, body = await raw(server, "/static/js/main.js", method="HEAD")
    assert status == 200 and "javascript" in hdrs["content-type"] and body == b""
    status, hdrs, _ = await raw(server, "/")
    assert status == 200 and "frame-ancestors 'none'" in hdrs["content-security-policy"]


def test_only_packaged_regular_files_are_listed(tmp_path: Path) -> None:
    from consumers.console.page import static_files

    (tmp_path / "js").mkdir()
    (tmp_path / "js" / "a.js").write_text("1")
    (tmp_path / "outside.txt").write_text("x")
    (tmp_path / "js" / "link.js").symlink_to(tmp_path / "outside.txt")
    (tmp_path / "linked").symlink_to(tmp_path / "js", target_is_directory=True)
    assert sorted(static_files(tmp_path)) == ["js/a.js", "outside.txt"]
    assert "js/main.js" in static_files() and "index.html" in static_files()
