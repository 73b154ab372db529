"""Tether client for Python (asyncio).

Layout, one concept per module:

- ``client``: :class:`TetherClient`, one per server: the connection, the
  channels, frame routing.
- ``connection``: the WebSocket kept alive: reconnect, connection resume,
  exactly-once ``seq`` re-sends, token renewal on the live socket.
- ``pending``: a request awaiting its reply, its re-send :class:`Policy`,
  the reconnect :class:`Backoff`.
- ``channel``: :class:`Channel`: attach and exact resume, events, the view,
  publish/append/update/delete, ephemeral messages, conventions.
- ``view``: :class:`View`, the pure fold of events into current messages.
- ``presence``: :class:`ChannelPresence`, the member set of a channel.
- ``agent``: :class:`ResponseStream`, ``channel.stream_response()``.
- ``auth``: tokens, renewal, API keys.
- ``rest``: :class:`RestClient`: history, messages, tokens over HTTP.
- ``conventions``: cancel, steer, handoff, stream status.
- ``errors``: :class:`TetherError` and the stable codes.
- ``listeners``: callbacks and async-iterator subscriptions.
"""

from .agent import ResponseStream
from .auth import Auth, AuthCallback, jwt_expiry
from .channel import UNSET, Channel, ChannelState
from .client import TetherClient
from .connection import Connection
from .pending import Backoff, Policy
from .conventions import CANCEL, HANDOFF, STEER, handoff_action, is_stream_ended, stream_status, target_of
from .errors import ErrorCode, ResponseCancelled, TetherError
from .listeners import Listeners, Subscription
from .presence import ChannelPresence
from .rest import RestClient
from .types import (
    Ack,
    Action,
    AttachResult,
    ConnectedInfo,
    ConnectionState,
    Continuity,
    EphemeralMessage,
    Message,
    PresenceAction,
    PresenceEvent,
    PresenceMember,
    Serial,
    StreamStatus,
    Version,
)
from .view import FoldResult, View, fold

__all__ = [
    "CANCEL",
    "HANDOFF",
    "STEER",
    "UNSET",
    "Ack",
    "Action",
    "AttachResult",
    "Auth",
    "AuthCallback",
    "Backoff",
    "Channel",
    "ChannelPresence",
    "ChannelState",
    "ConnectedInfo",
    "Connection",
    "ConnectionState",
    "Continuity",
    "EphemeralMessage",
    "ErrorCode",
    "FoldResult",
    "Listeners",
    "Message",
    "Policy",
    "PresenceAction",
    "PresenceEvent",
    "PresenceMember",
    "ResponseCancelled",
    "ResponseStream",
    "RestClient",
    "Serial",
    "StreamStatus",
    "Subscription",
    "TetherClient",
    "TetherError",
    "Version",
    "View",
    "fold",
    "handoff_action",
    "is_stream_ended",
    "jwt_expiry",
    "stream_status",
    "target_of",
]

__version__ = "0.1.0"
