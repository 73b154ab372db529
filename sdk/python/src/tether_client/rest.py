"""The REST half of the HTTP front door: history (paged, as an async
iterator), single messages and versions, log bounds, presence, tokens, and
publish/mutate for code that holds no WebSocket (a serverless function, a
batch job).

Every failure becomes a :class:`TetherError` with the server's code (the
JSON error body) or an SDK code (no response, unreadable response).
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any, Literal, cast
from urllib.parse import quote, urlsplit, urlunsplit

import httpx

from .auth import Auth
from .errors import ErrorCode, TetherError
from .types import Ack, Message, PresenceMember, Serial


def http_base(url: str) -> str:
    """``http(s)://host[:port][/prefix]`` from any of http, https, ws, wss
    (and a trailing ``/ws``), without a trailing slash."""
    parts = urlsplit(url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    path = parts.path.rstrip("/")
    if path.endswith("/ws"):
        path = path[:-3]
    return urlunsplit((scheme, parts.netloc, path, "", ""))


def seg(value: str) -> str:
    """One path segment (a channel name or a serial), percent-encoded."""
    return quote(value, safe="")


class RestClient:
    """Stateless HTTP calls against one server, sharing one connection pool.
    Close it with :meth:`aclose` (the :class:`TetherClient` owning it does)."""

    def __init__(
        self,
        url: str,
        *,
        auth: Auth | None = None,
        http: httpx.AsyncClient | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.base = http_base(url)
        self._auth = auth
        self._owns_http = http is None
        self._http = http if http is not None else httpx.AsyncClient(timeout=timeout)

    async def aclose(self) -> None:
        """Closes the connection pool (if this client created it)."""
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> RestClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ---- reading -----------------------------------------------------------

    async def history_pages(
        self,
        channel: str,
        *,
        limit: int | None = None,
        direction: Literal["backwards", "forwards"] | None = None,
        cursor: str | None = None,
        start: Serial | None = None,
        end: Serial | None = None,
        from_time: int | None = None,
        to_time: int | None = None,
    ) -> AsyncIterator[list[Message]]:
        """Pages of history (the current version of each message), fetched
        lazily: the next page is requested only when the loop asks for it."""
        params: dict[str, str] = {}
        for name, value in (
            ("limit", limit),
            ("direction", direction),
            ("start", start),
            ("end", end),
            ("from_time", from_time),
            ("to_time", to_time),
        ):
            if value is not None:
                params[name] = str(value)
        while True:
            if cursor:
                params["cursor"] = cursor
            page = await self.call("GET", f"/channels/{seg(channel)}/messages", params=params)
            yield cast(list[Message], page.get("messages") or [])
            cursor = page.get("next")
            if not cursor:
                return

    async def history(self, channel: str, **options: Any) -> AsyncIterator[Message]:
        """Every message of the history, one by one, paging as needed
        (``async for m in rest.history("chat:1", direction="forwards")``).
        Takes the options of :meth:`history_pages`."""
        async for page in self.history_pages(channel, **options):
            for message in page:
                yield message

    async def message(self, channel: str, serial: Serial) -> Message:
        """The current version of one message."""
        return cast(Message, await self.call("GET", f"/channels/{seg(channel)}/messages/{seg(serial)}"))

    async def versions(self, channel: str, serial: Serial) -> list[Message]:
        """Every version of a message, oldest first."""
        body = await self.call("GET", f"/channels/{seg(channel)}/messages/{seg(serial)}/versions")
        return cast(list[Message], body.get("versions") or [])

    async def channel_info(self, channel: str) -> dict[str, Any]:
        """The log's bounds: ``{channel, epoch, first, position}`` (``position``
        is the head; ``None`` for a channel never written)."""
        return await self.call("GET", f"/channels/{seg(channel)}")

    async def presence(self, channel: str) -> list[PresenceMember]:
        """The members present right now (needs ``presence-subscribe``)."""
        body = await self.call("GET", f"/channels/{seg(channel)}/presence")
        return cast(list[PresenceMember], body.get("members") or [])

    # ---- writing -----------------------------------------------------------

    async def publish(self, channel: str, message: dict[str, Any]) -> Ack:
        """Publishes one message ``{id?, name?, data?, extras?}``."""
        return Ack.from_wire(await self.call("POST", f"/channels/{seg(channel)}/messages", json=message))

    async def append(self, channel: str, serial: Serial, data: str, **fields: Any) -> Ack:
        """Appends a string fragment (``name``/``extras`` replace when given)."""
        body = {**fields, "data": data}
        path = f"/channels/{seg(channel)}/messages/{seg(serial)}/append"
        return Ack.from_wire(await self.call("POST", path, json=body))

    async def update(self, channel: str, serial: Serial, **patch: Any) -> Ack:
        """Makes a new version (``name``/``data`` replace, ``extras`` merge)."""
        path = f"/channels/{seg(channel)}/messages/{seg(serial)}"
        return Ack.from_wire(await self.call("PATCH", path, json=patch))

    async def delete(self, channel: str, serial: Serial, **fields: Any) -> Ack:
        """Replaces a message with a tombstone (``data: null``)."""
        path = f"/channels/{seg(channel)}/messages/{seg(serial)}"
        return Ack.from_wire(await self.call("DELETE", path, json=fields or None))

    async def mint_token(
        self,
        key: str,
        *,
        client_id: str | None = None,
        capabilities: dict[str, list[str]] | None = None,
        ttl_secs: int | None = None,
    ) -> dict[str, Any]:
        """Mints a token with API key ``name:secret`` (``POST /keys/{name}/tokens``):
        ``{token, expires_at, client_id}``. What a back end's endpoint does
        for a browser, and what an ``auth_callback`` can call."""
        name = key.split(":", 1)[0]
        body: dict[str, Any] = {}
        if client_id is not None:
            body["client_id"] = client_id
        if capabilities is not None:
            body["capabilities"] = capabilities
        if ttl_secs is not None:
            body["ttl_secs"] = ttl_secs
        basic = base64.b64encode(key.encode()).decode()
        headers = {"authorization": f"Basic {basic}"}
        return await self.call("POST", f"/keys/{seg(name)}/tokens", json=body, headers=headers)

    # ---- one request -------------------------------------------------------

    async def call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        json: Any = None,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """One request; the JSON reply, or a :class:`TetherError`."""
        all_headers = {"accept": "application/json"}
        if headers is None and self._auth is not None:
            all_headers.update(self._auth.headers(await self._auth.token()))
        all_headers.update(headers or {})
        try:
            res = await self._http.request(
                method, self.base + path, params=params, json=json, headers=all_headers
            )
        except httpx.HTTPError as exc:
            raise TetherError(ErrorCode.NETWORK_ERROR, f"{method} {path} failed: {exc!r}") from exc
        if res.status_code == 401 and self._auth is not None:
            self._auth.invalidate()
        return _read_json(res, f"{method} {path}")


def _read_json(res: httpx.Response, what: str) -> dict[str, Any]:
    try:
        parsed: Any = res.json() if res.content else None
    except ValueError:
        parsed = None
    if res.is_error:
        error = parsed.get("error") if isinstance(parsed, dict) else None
        if error is not None:
            raise TetherError.from_wire(error, res.status_code)
        raise TetherError(res.status_code * 100, f"{what}: HTTP {res.status_code}", status=res.status_code)
    if not isinstance(parsed, dict):
        raise TetherError(ErrorCode.PROTOCOL_ERROR, f"{what}: unreadable response", status=res.status_code)
    return parsed
