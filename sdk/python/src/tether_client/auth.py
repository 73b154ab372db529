"""Credentials (docs/security.md): a fixed token, a token renewed through an
``auth_callback`` before it expires, or (back ends) an API key.

The SDK never verifies a token: it reads the payload's ``exp`` only to know
when to renew, and the server's ``authorized`` frame (``expires_at``)
overrides that when it comes.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import inspect
import json
import time
from collections.abc import Awaitable, Callable

from .errors import ErrorCode, TetherError

#: Returns a fresh token, synchronously or as a coroutine.
AuthCallback = Callable[[], str | Awaitable[str]]


def jwt_expiry(token: str) -> float | None:
    """The ``exp`` claim of a JWT (seconds since the epoch), read without
    verifying; ``None`` when absent or unreadable."""
    parts = token.split(".")
    if len(parts) < 2:
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (ValueError, binascii.Error):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    return float(exp) if isinstance(exp, (int, float)) else None


class Auth:
    """The current credential and when to renew it. One per client;
    concurrent renewals are coalesced into one callback call."""

    def __init__(
        self,
        *,
        token: str | None = None,
        auth_callback: AuthCallback | None = None,
        key: str | None = None,
        client_id: str | None = None,
    ) -> None:
        self._callback = auth_callback
        self._key = key
        self._client_id = client_id
        self._fixed = token is not None
        self._current: str | None = None
        #: When the current token expires (seconds since the epoch), if known.
        self._expires_at: float | None = None
        self._obtained_at = 0.0
        self._stale = False
        self._inflight: asyncio.Future[str] | None = None
        if token is not None:
            self._adopt(token)

    @property
    def can_renew(self) -> bool:
        """Whether a refused or expiring token can be replaced."""
        return self._callback is not None

    @property
    def uses_tokens(self) -> bool:
        """Tokens (as opposed to a key or nothing, as against ``--dev``)."""
        return self._callback is not None or self._fixed

    @property
    def expires_at(self) -> float | None:
        """When the current token expires (seconds since the epoch)."""
        return self._expires_at

    async def token(self) -> str | None:
        """The token to use now: the cached one, or a fresh one from the
        callback when there is none yet, it was refused (:meth:`invalidate`)
        or it is about to expire."""
        if not self.uses_tokens:
            return None
        if not self.can_renew:
            return self._current
        if self._current is not None and not self._stale and not self._due():
            return self._current
        return await self.renew()

    async def renew(self) -> str | None:
        """Calls the callback now (joining a call already running)."""
        if self._callback is None:
            return self._current
        if self._inflight is None:
            self._inflight = asyncio.ensure_future(self._call())
            # A renewal nobody awaits any more must not log "never retrieved".
            self._inflight.add_done_callback(lambda f: f.cancelled() or f.exception())
        inflight = self._inflight
        try:
            return await asyncio.shield(inflight)
        finally:
            if inflight.done() and self._inflight is inflight:
                self._inflight = None

    async def _call(self) -> str:
        assert self._callback is not None
        try:
            result = self._callback()
            token = await result if inspect.isawaitable(result) else result
        except TetherError:
            raise
        except Exception as exc:
            raise TetherError(ErrorCode.UNAUTHORIZED, f"auth_callback failed: {exc!r}") from exc
        if not isinstance(token, str) or not token:
            raise TetherError(ErrorCode.UNAUTHORIZED, "auth_callback returned no token")
        self._adopt(token)
        return token

    def invalidate(self) -> None:
        """The server refused or expired the current token: renew it next."""
        self._stale = True

    def note_expiry(self, expires_at: object) -> None:
        """The server's ``authorized.expires_at`` (seconds) for the token in use."""
        if isinstance(expires_at, (int, float)):
            self._expires_at = float(expires_at)

    def renew_delay(self, now: float | None = None) -> float | None:
        """Seconds until the current token should be renewed on a live
        connection, or ``None`` when it never needs to be. Renewal happens a
        third of the lifetime before expiry, at least 1 s and at most 60 s
        before it."""
        if not self.can_renew or self._expires_at is None:
            return None
        now = time.time() if now is None else now
        return max(0.0, self._expires_at - self._margin() - now)

    def query(self, token: str | None) -> dict[str, str]:
        """Query parameters carrying the credential (WebSocket upgrade)."""
        if token:
            return {"token": token}
        if self._key is not None:
            q = {"key": self._key}
            if self._client_id is not None:
                q["client_id"] = self._client_id
            return q
        return {}

    def headers(self, token: str | None) -> dict[str, str]:
        """HTTP headers carrying the credential (REST)."""
        if token:
            return {"authorization": f"Bearer {token}"}
        if self._key is not None:
            basic = base64.b64encode(self._key.encode()).decode()
            h = {"authorization": f"Basic {basic}"}
            if self._client_id is not None:
                h["x-tether-client-id"] = self._client_id
            return h
        return {}

    def _adopt(self, token: str) -> None:
        self._current = token
        self._stale = False
        self._obtained_at = time.time()
        self._expires_at = jwt_expiry(token)

    def _margin(self) -> float:
        if self._expires_at is None:
            return 1.0
        lifetime = self._expires_at - self._obtained_at
        return min(60.0, max(1.0, lifetime / 3))

    def _due(self) -> bool:
        if self._expires_at is None:
            return False
        now = time.time()
        # A token obtained this very second is used even if short-lived, so
        # a callback handing out short tokens cannot cause a renewal loop.
        if now - self._obtained_at < 1.0:
            return now >= self._expires_at
        return now >= self._expires_at - self._margin()
