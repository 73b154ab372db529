"""The folded view, pure: the rules of tether-core's ``View`` (fold.rs), and
the shared golden vectors when the repository has them."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tether_client import FoldResult, Message, View, fold, is_stream_ended, stream_status, target_of

from .conftest import REPO_ROOT


def ev(serial: int, version: int, action: str, data: Any = None, **extra: Any) -> Message:
    s = f"1764151200000-{serial:016d}"
    v = f"1764151200000-{version:016d}"
    m: dict[str, Any] = {"serial": s, "action": action, "version": {"serial": v}, **extra}
    if data is not None:
        m["data"] = data
    return m  # type: ignore[return-value]


def test_appends_concatenate_and_replace_name_and_extras() -> None:
    v = View()
    assert v.apply(ev(1, 1, "create", "", name="response", extras={"stream": "streaming"})) is FoldResult.APPLIED
    assert v.apply(ev(1, 2, "append", "Hel")) is FoldResult.APPLIED
    assert v.apply(ev(1, 3, "append", "lo", extras={"stream": "complete"})) is FoldResult.APPLIED
    [m] = v.messages()
    assert m["data"] == "Hello" and m["action"] == "update" and m["version"]["serial"].endswith("3")
    assert m.get("name") == "response" and m.get("extras") == {"stream": "complete"}


def test_old_and_repeated_versions_are_ignored() -> None:
    v = View()
    v.apply(ev(1, 1, "create", "a"))
    v.apply(ev(1, 3, "update", "abc"))  # a snapshot ahead of the fragments
    assert v.apply(ev(1, 2, "append", "b")) is FoldResult.DUPLICATE
    assert v.apply(ev(1, 3, "update", "abc")) is FoldResult.DUPLICATE
    assert v.messages()[0]["data"] == "abc"


def test_orphan_fragments_and_fill() -> None:
    v = View()
    assert v.apply(ev(1, 5, "append", "x")) is FoldResult.ORPHAN
    assert len(v) == 0
    assert not v.fill(ev(1, 4, "update", "old")), "the fetched copy misses fragment 5"
    assert v.fill(ev(1, 5, "update", "whole x"))
    assert not v.fill(ev(1, 6, "update", "again")), "already held"
    assert v.apply(ev(1, 5, "append", "x")) is FoldResult.DUPLICATE


def test_order_is_by_serial_and_deletes_keep_their_place() -> None:
    v = View()
    for s in (3, 1, 2):
        v.apply(ev(s, s, "create", f"m{s}"))
    v.apply(ev(2, 9, "delete"))
    assert [m.get("data") for m in v.messages()] == ["m1", None, "m3"]
    before = v.messages()
    assert v.messages() is before, "the same list while nothing changed"
    v.apply(ev(4, 10, "create", "m4"))
    assert v.messages() is not before and len(before) == 3, "held lists are not mutated"


def test_append_to_non_string_data_replaces_it() -> None:
    assert fold([ev(1, 1, "create", {"k": 1}), ev(1, 2, "append", "s")])[0]["data"] == "s"


def test_conventions() -> None:
    cancel = {"name": "cancel", "extras": {"target": "S"}}
    assert target_of(cancel) == "S" and target_of({"name": "chat", "extras": {"target": "S"}}) is None
    assert stream_status({"extras": {"stream": "cancelled"}}) == "cancelled"
    assert stream_status({"extras": {"stream": "weird"}}) is None
    assert is_stream_ended("complete") and not is_stream_ended("streaming") and not is_stream_ended(None)


def _vector_dir() -> Path:
    return Path(os.environ.get("TETHER_VECTORS", REPO_ROOT / "crates/tether-protocol/vectors"))


def _fold_vectors() -> list[Path]:
    d = _vector_dir() / "fold"
    return sorted(d.glob("*.json")) if d.is_dir() else []


@pytest.mark.skipif(not _fold_vectors(), reason="no golden fold vectors in this checkout")
@pytest.mark.parametrize("path", _fold_vectors(), ids=lambda p: p.stem)
def test_golden_fold_vectors(path: Path) -> None:
    vector = json.loads(path.read_text())
    assert fold(vector["events"]) == vector["messages"], vector.get("description")
    # Folding is idempotent: every event delivered twice changes nothing.
    doubled = [e for e in vector["events"] for _ in range(2)]
    assert fold(doubled) == vector["messages"]


def _server_frames() -> list[Path]:
    d = _vector_dir() / "frames" / "server"
    return sorted(d.glob("*.json")) if d.is_dir() else []


@pytest.mark.skipif(not _server_frames(), reason="no golden frame vectors in this checkout")
@pytest.mark.parametrize("path", _server_frames(), ids=lambda p: p.stem)
async def test_golden_server_frames_are_understood(path: Path) -> None:
    """Every server frame the protocol defines goes through the SDK's own
    decoding (routing to a channel, acks, errors) without a failure."""
    from tether_client import Ack, TetherClient, TetherError

    data = json.loads(path.read_text())
    frames = data if isinstance(data, list) else [data]
    client = TetherClient("http://127.0.0.1:9")  # never connects
    try:
        for frame in frames:
            assert isinstance(frame.get("type"), str)
            name = frame.get("channel")
            ch = client.channel(name) if isinstance(name, str) else None
            client._route(frame)
            kind = frame["type"]
            if kind == "message" and ch is not None:
                assert frame["message"]["serial"] in [m["serial"] for m in ch.messages()] or (
                    frame["message"]["action"] == "append"
                )
            elif kind == "ack":
                assert Ack.from_wire(frame).serial == frame["serial"]
            elif kind == "error":
                assert TetherError.from_wire(frame).code == frame["code"]
            elif kind == "presence-sync" and ch is not None and frame.get("complete", True):
                ids = {m["connection_id"] for m in frame["members"]}
                assert ids <= {m["connection_id"] for m in ch.presence.members()}
            elif kind == "attached" and ch is not None:
                assert ch._last_attach is not None and ch._last_attach.continuity == frame["continuity"]
    finally:
        await client.close()
