"""An agent that answers prompts on a Tether channel with any
OpenAI-compatible model, streaming each answer into one message.

    # a server and a model (the built-in fake one here)
    tether serve --dev &
    tether fake-llm --listen 127.0.0.1:7401 &
    python examples/openai_agent.py --llm http://127.0.0.1:7401/v1

    # then, from anywhere: ask
    curl -s localhost:7400/channels/conversation:demo/messages \
      -H 'content-type: application/json' -d '{"name":"prompt","data":"Hello!"}'

Every subscriber of ``conversation:demo`` sees the answer grow; one that
drops or joins late gets it whole, then the rest live. A ``cancel`` message
for the answer stops the model mid-sentence. ``--client openai`` talks to
the model through the ``openai`` package (pointed at ``--llm`` as its
``base_url``), the default through plain ``httpx`` streaming.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

import httpx

from tether_client import Channel, Message, TetherClient

#: Streams the answer to a chat (OpenAI ``messages``) as text chunks.
Model = Callable[[list[dict[str, str]]], AsyncIterator[str]]


def httpx_model(base_url: str, model: str, api_key: str | None) -> Model:
    """``POST {base_url}/chat/completions`` with ``stream: true``, read as SSE."""
    http = httpx.AsyncClient(timeout=httpx.Timeout(60.0, connect=10.0))
    headers = {"authorization": f"Bearer {api_key}"} if api_key else {}

    async def stream(messages: list[dict[str, str]]) -> AsyncIterator[str]:
        body = {"model": model, "messages": messages, "stream": True}
        url = base_url.rstrip("/") + "/chat/completions"
        async with http.stream("POST", url, json=body, headers=headers) as res:
            res.raise_for_status()
            async for line in res.aiter_lines():
                if not line.startswith("data:"):
                    continue
                payload = line[5:].strip()
                if payload == "[DONE]":
                    return
                for choice in json.loads(payload).get("choices", []):
                    content = (choice.get("delta") or {}).get("content")
                    if content:
                        yield content

    return stream


def openai_model(base_url: str, model: str, api_key: str | None) -> Model:
    """The same through the ``openai`` package (``pip install openai``)."""
    from openai import AsyncOpenAI
    from openai.types.chat import ChatCompletionMessageParam

    client = AsyncOpenAI(base_url=base_url, api_key=api_key or "unused")

    async def stream(messages: list[dict[str, str]]) -> AsyncIterator[str]:
        chunks = await client.chat.completions.create(
            model=model, messages=cast(list[ChatCompletionMessageParam], messages), stream=True
        )
        async for chunk in chunks:
            for choice in chunk.choices:
                if choice.delta.content:
                    yield choice.delta.content

    return stream


def transcript(messages: list[Message]) -> list[dict[str, str]]:
    """The conversation so far (the channel's folded view) as chat messages."""
    out = []
    for m in messages:
        if m.get("name") == "prompt" and isinstance(m.get("data"), str):
            out.append({"role": "user", "content": m["data"]})
        elif m.get("name") == "response" and isinstance(m.get("data"), str) and m["data"]:
            out.append({"role": "assistant", "content": m["data"]})
    return out


async def answer(channel: Channel, prompt: Message, model: Model, model_name: str) -> str:
    """Streams the model's answer to ``prompt``; returns how it ended."""
    await channel.presence.update({"role": "agent", "status": "thinking"})
    try:
        extras: dict[str, Any] = {"model": model_name, "prompt": prompt["serial"]}
        async with channel.stream_response(extras=extras) as r:
            async for chunk in model(transcript(channel.messages())):
                await r.append(chunk)
        return r.status or "complete"
    finally:
        await channel.presence.update({"role": "agent", "status": "idle"})


async def run(args: argparse.Namespace) -> None:
    make = openai_model if args.client == "openai" else httpx_model
    model = make(args.llm, args.model, args.llm_key)
    async with TetherClient(args.tether, key=args.key, client_id="openai-agent") as client:
        # rewind=0: answer what is asked from now on (a reconnect still
        # resumes exactly, so a prompt sent during a drop is not missed).
        channel = client.channel(args.channel, rewind=0)
        async with channel.subscribe() as events:
            await channel.attach()
            await channel.presence.enter({"role": "agent", "status": "idle"})
            print(f"agent ready on {args.channel}", flush=True)
            async for event in events:
                if event["action"] != "create" or event.get("name") != "prompt":
                    continue
                status = await answer(channel, event, model, args.model)
                print(f"answered {event['serial']}: {status}", flush=True)
                if args.once:
                    return


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tether", default=os.environ.get("TETHER_URL", "http://127.0.0.1:7400"))
    p.add_argument("--key", default=os.environ.get("TETHER_KEY"), help="API key name:secret (not needed with --dev)")
    p.add_argument("--channel", default="conversation:demo")
    p.add_argument("--llm", default=os.environ.get("OPENAI_BASE_URL", "http://127.0.0.1:7401/v1"))
    p.add_argument("--llm-key", default=os.environ.get("OPENAI_API_KEY"))
    p.add_argument("--model", default="model")
    p.add_argument("--client", choices=["httpx", "openai"], default="httpx")
    p.add_argument("--once", action="store_true", help="exit after the first answer")
    asyncio.run(run(p.parse_args()))


if __name__ == "__main__":
    main()
