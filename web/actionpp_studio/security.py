"""Who may reach the page: the bind address and the access token.

Policy: 127.0.0.1 (or ``localhost`` / ``::1``) serves without a token. Any other host needs one: ``--token`` or a
random one (``secrets.token_urlsafe``), printed in the URL. Every HTTP request and the websocket upgrade must carry it,
as ``?token=...`` (the first page load) or as the cookie that load sets; anything else gets HTTP 403.
"""

from __future__ import annotations

import hmac
import secrets
from urllib.parse import quote

LOOPBACK = ("127.0.0.1", "localhost", "::1")
COOKIE = "actionpp_studio_token"


class SecurityError(ValueError):
    """A one-line problem with ``--host`` / ``--token``."""


def isLoopback(host: str) -> bool:
    return host.strip().lower() in LOOPBACK


def resolveToken(host: str, token: str | None) -> str | None:
    """The token the server will require: None on a loopback host without ``--token``; ``token`` when given
    (at least 16 characters); otherwise a new random one."""
    if token is not None:
        if len(token) < 16 or not token.isprintable() or any(c.isspace() for c in token):
            raise SecurityError("--token: expected at least 16 printable characters without spaces, "
                                f"found {len(token)} characters")
        return token
    return None if isLoopback(host) else secrets.token_urlsafe(24)


def pageUrl(host: str, port: int, token: str | None) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/index.html" + (f"?token={quote(token)}" if token else "")


def networkWarning(host: str) -> str:
    return (f"actionpp studio: warning: listening on {host}, reachable from the network; anyone with the URL "
            "(it holds the token) can use this page and the data it serves")


def _allowed(request, token: str) -> bool:
    given = request.query.get("token") or request.cookies.get(COOKIE) or ""
    return hmac.compare_digest(given.encode(), token.encode())


def tokenMiddleware(token: str):
    """An aiohttp middleware that answers 403 unless the request carries ``token``; a request with ``?token=``
    gets the cookie, so the page's own scripts, assets and websocket pass too."""
    from aiohttp import web

    @web.middleware
    async def requireToken(request, handler):
        if not _allowed(request, token):
            return web.Response(status=403, text="403 Forbidden: this ACTIONpp Studio needs its access token "
                                                 "(open the URL printed by `actionpp studio`)\n")
        response = await handler(request)
        if request.query.get("token") and hasattr(response, "set_cookie"):
            response.set_cookie(COOKIE, token, httponly=True, samesite="Strict")
        return response

    return requireToken


def installTokenCheck(wslinkServer, token: str | None) -> None:
    """Put the token middleware first on the wslink aiohttp app (called from trame's ``on_server_bind``, before the
    app is frozen). No token: nothing to install."""
    if token is None:
        return
    wslinkServer.app.middlewares.insert(0, tokenMiddleware(token))
