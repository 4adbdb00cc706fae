"""The console's authenticated API (``/api/*``): audit search and export, verify, read-only SQL.

``add_api_routes(app, warehouse, tokens)`` mounts it as a sub-application with its own auth middleware,
so ``/healthz`` and ``/metrics`` on the parent app stay open.
"""

from consumers.console.api import add_api_routes
from consumers.console.tokens import TOKENS_FILE, TokenRecord, TokenStore, create_token, ensure_admin_token

__all__ = ["TOKENS_FILE", "TokenRecord", "TokenStore", "add_api_routes", "create_token", "ensure_admin_token"]
