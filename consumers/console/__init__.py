"""The console: its authenticated API (``/api/*``: audit search and export, verify, read-only SQL, the
dashboard views) and the web page (``/``, ``/static/``).

``add_api_routes(app, warehouse, tokens)`` mounts the API as a sub-application with its own auth middleware,
so ``/healthz`` and ``/metrics`` on the parent app stay open; ``add_page_routes(app)`` serves the page, which
holds no data and reads everything from ``/api`` with the token the user signs in with.
"""

from consumers.console.api import add_api_routes
from consumers.console.page import add_page_routes
from consumers.console.tokens import TOKENS_FILE, TokenRecord, TokenStore, create_token, ensure_admin_token

__all__ = ["TOKENS_FILE", "TokenRecord", "TokenStore", "add_api_routes", "add_page_routes", "create_token",
           "ensure_admin_token"]
