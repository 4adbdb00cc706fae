"""The console web page: ``/`` (one HTML file) and ``/static/`` (its ES modules, CSS and the vendored uPlot).

The page itself is public and holds no data; it asks for a console token and reads everything from the
authenticated ``/api``. A strict Content-Security-Policy allows only this origin's scripts, styles and
requests (no inline script, no CDN), and no framing.

``/static/`` serves only the files that were in ``static/`` when the app was built (regular files, no
symlinks, listed once): a request names one of them exactly or gets a 404, so no part of a request path is
ever handed to the filesystem (no ``..``, encoded or not, no NUL, no overlong name or depth can reach
``open``/``stat``). A file added later is served after a restart (an upgrade restarts the worker anyway);
an edited one is served as it is now (``FileResponse`` reads it per request, with ETag/Last-Modified).
"""

from __future__ import annotations

import os
from pathlib import Path

from aiohttp import web

from consumers.console.http import error_response

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


def static_files(root: Path = STATIC_DIR) -> dict[str, Path]:
    """Relative POSIX path -> file, for every regular file under ``root`` (symlinks skipped, not followed)."""
    out: dict[str, Path] = {}
    for folder, dirs, files in os.walk(root):  # followlinks=False: a symlinked folder is not entered
        base = Path(folder)
        dirs[:] = [d for d in dirs if not (base / d).is_symlink()]
        for name in files:
            path = base / name
            if not path.is_symlink() and path.is_file():
                out[path.relative_to(root).as_posix()] = path
    return out


STATIC_FILES: web.AppKey[dict[str, Path]] = web.AppKey("console_static_files", dict)


async def static_handler(request: web.Request) -> web.StreamResponse:
    path = request.app[STATIC_FILES].get(request.match_info["path"])
    if path is None:
        return error_response(404, "not_found", "no such file on this console")
    return web.FileResponse(path)


def add_page_routes(app: web.Application) -> None:
    """Mount ``/`` and ``/static/`` on the console app (next to ``/api``, ``/healthz``, ``/metrics``)."""
    app[STATIC_FILES] = static_files()
    app.router.add_get("/", index_handler)
    app.router.add_get("/static/{path:.*}", static_handler)
    app.on_response_prepare.append(_page_headers)
