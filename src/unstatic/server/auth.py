"""Access control for a server that listens beyond loopback: HTTP basic credentials (``--api-auth user:pass``,
A1111's flag, several comma-separated) and/or API tokens (``Authorization: Bearer TOKEN``). Nothing is enforced
when neither is given. With basic credentials everything, the web page included, asks for them (the browser
then sends them with every request); with tokens only, the page's static files stay public (they hold no data)
and the API needs the token."""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from starlette.types import ASGIApp, Receive, Scope, Send

from unstatic.server.errors import error_response

PAGE_PATHS, STATIC_PREFIX = ("/", "/favicon.ico"), "/static/"  # public when only tokens are configured


def parse_credentials(text: str) -> dict[str, str]:
    """``"user:pass,user2:pass2"`` to ``{user: pass}``; a ValueError for entries without a colon or name."""
    users = {}
    for entry in filter(None, (part.strip() for part in text.split(","))):
        user, sep, password = entry.partition(":")
        if not sep or not user:
            raise ValueError(f"--api-auth takes user:password (comma-separated for several), got {entry!r}")
        users[user] = password
    return users


@dataclass(frozen=True)
class Auth:
    users: dict[str, str]
    tokens: tuple[str, ...] = ()

    @property
    def enabled(self) -> bool:
        return bool(self.users or self.tokens)

    def allows(self, authorization: str | None) -> bool:
        if not authorization:
            return False
        scheme, _, value = authorization.partition(" ")
        scheme, value = scheme.lower(), value.strip()
        if scheme == "bearer":
            # compare against every token, so the time taken does not say which one nearly matched
            return any([secrets.compare_digest(value.encode(), token.encode()) for token in self.tokens])
        if scheme == "basic" and self.users:
            try:
                user, _, password = base64.b64decode(value, validate=True).decode("utf-8").partition(":")
            except (binascii.Error, ValueError, UnicodeDecodeError):
                return False
            expected = self.users.get(user)
            return expected is not None and secrets.compare_digest(password.encode(), expected.encode())
        return False

    def is_public(self, path: str) -> bool:
        if self.users:
            return False
        return path in PAGE_PATHS or path.startswith(STATIC_PREFIX)


def make_auth(credentials: str | None = None, tokens: Iterable[str] = ()) -> Auth:
    return Auth(parse_credentials(credentials) if credentials else {}, tuple(t for t in tokens if t))


class AuthMiddleware:
    """Refuses requests without valid credentials with a JSON 401 (a plain ASGI middleware: it also guards the
    static files, which a route dependency would not)."""

    def __init__(self, app: ASGIApp, auth: Auth) -> None:
        self.app, self.auth = app, auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.auth.enabled or self.auth.is_public(scope["path"]):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        authorization = headers.get(b"authorization", b"").decode("latin-1") or None
        if self.auth.allows(authorization):
            await self.app(scope, receive, send)
            return
        challenge = 'Basic realm="unstatic"' if self.auth.users else "Bearer"
        response = error_response(401, "unauthorized", "this server needs credentials: HTTP basic (--api-auth) or "
                                  "'Authorization: Bearer TOKEN'", {"WWW-Authenticate": challenge})
        await response(scope, receive, send)
