"""The console web page: ``/`` (one HTML file) and ``/static/`` (its ES modules, CSS and the vendored uPlot).

The page itself is public and holds no data; it asks for a console token and reads everything from the
authenticated ``/api``. A strict Content-Security-Policy allows only this origin's scripts, styles and
requests (no inline script, no CDN), and no framing.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

STATIC_DIR = Path(__file__).resolve().parent / "static"
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
PAGE_HEADERS = {"Content-Security-Policy": CSP, "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "no-referrer", "Cache-Control": "no-cache"}


async def index_handler(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / "index.html", headers=PAGE_HEADERS)


async def _page_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Static files revalidate on every load (Last-Modified/ETag), so an upgrade is picked up at once."""
    if request.path.startswith("/static/"):
        for name, value in PAGE_HEADERS.items():
            response.headers.setdefault(name, value)


def add_page_routes(app: web.Application) -> None:
    """Mount ``/`` and ``/static/`` on the console app (next to ``/api``, ``/healthz``, ``/metrics``)."""
    app.router.add_get("/", index_handler)
    app.router.add_static("/static/", STATIC_DIR, follow_symlinks=False)
    app.on_response_prepare.append(_page_headers)
