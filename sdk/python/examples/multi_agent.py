"""Several agents cooperating over channels: a coordinator hands a user's
prompt to two specialists, each streams its part into the conversation, and
the coordinator streams a summary once both are done.

    tether serve --dev &
    tether fake-llm --listen 127.0.0.1:7401 &
    python examples/multi_agent.py --ask "Plan three days in Lisbon"

Channels:

- ``trip:<id>``: the conversation the user sees. Prompts, the specialists'
  responses (``extras.agent``) and the summary; presence shows each agent's
  status.
- ``agents:<specialist>``: a task queue per specialist. The coordinator
  publishes ``task`` messages there; a specialist whose connection drops
  resumes its channel exactly, so no task is lost or done twice.

The three agents run in one process here, each with its own client (its
own connection, as separate processes would have).
"""

from __future__ import annotations

import argparse
import asyncio
import os
from typing import Any

from openai_agent import Model, httpx_model

from tether_client import Channel, Message, TetherClient, is_stream_ended, stream_status

SPECIALISTS = {
    "flights": "You book flights. Suggest flights for:",
    "hotels": "You book hotels. Suggest hotels for:",
}


async def stream_answer(channel: Channel, model: Model, prompt: str, extras: dict[str, Any]) -> None:
    """Streams the model's answer to ``prompt`` into ``channel`` as one response."""
    async with channel.stream_response(extras=extras) as r:
        async for chunk in model([{"role": "user", "content": prompt}]):
            await r.append(chunk)


async def specialist(url: str, name: str, model: Model, ready: asyncio.Event) -> None:
    """Takes tasks from ``agents:<name>`` and answers into their conversation."""
    async with TetherClient(url, client_id=f"agent-{name}") as client:
        tasks = client.channel(f"agents:{name}", rewind=0)
        async with tasks.subscribe() as events:
            await tasks.attach()
            ready.set()
            async for task in events:
                if task["action"] != "create" or task.get("name") != "task":
                    continue
                extras = task.get("extras", {})
                conversation = client.channel(extras["conversation"])
                await conversation.presence.enter({"role": name, "status": "working"})
                await stream_answer(
                    conversation,
                    model,
                    f"{SPECIALISTS[name]} {task['data']}",
                    {"agent": name, "prompt": extras["prompt"]},
                )
                await conversation.presence.update({"role": name, "status": "idle"})


def answers_for(messages: list[Message], prompt: str) -> dict[str, Message]:
    """The specialists' finished responses to ``prompt``, by agent."""
    done = {}
    for m in messages:
        extras = m.get("extras", {})
        if extras.get("prompt") == prompt and extras.get("agent") in SPECIALISTS:
            if is_stream_ended(stream_status(m)):
                done[extras["agent"]] = m
    return done


async def coordinator(url: str, conversation: str, model: Model, ready: asyncio.Event) -> None:
    """Fans each prompt out to the specialists, then summarises their answers."""
    async with TetherClient(url, client_id="agent-coordinator") as client:
        trip = client.channel(conversation, rewind=0)
        async with trip.subscribe() as events:
            await trip.attach()
            await trip.presence.enter({"role": "coordinator", "status": "idle"})
            ready.set()
            async for prompt in events:
                if prompt["action"] != "create" or prompt.get("name") != "prompt":
                    continue
                await trip.presence.update({"role": "coordinator", "status": "delegating"})
                await asyncio.gather(
                    *(
                        client.channel(f"agents:{name}").publish(
                            prompt.get("data"),
                            name="task",
                            extras={"conversation": conversation, "prompt": prompt["serial"]},
                        )
                        for name in SPECIALISTS
                    )
                )
                # The folded view shows the specialists' responses as they
                # grow; wait until both have ended.
                messages = await trip.wait_for(lambda ms: len(answers_for(ms, prompt["serial"])) == len(SPECIALISTS))
                parts = answers_for(messages, prompt["serial"])
                summary = "Summarise: " + " | ".join(f"{k}: {v.get('data')}" for k, v in sorted(parts.items()))
                await stream_answer(trip, model, summary, {"agent": "coordinator", "prompt": prompt["serial"]})
                await trip.presence.update({"role": "coordinator", "status": "idle"})


async def run(args: argparse.Namespace) -> None:
    model = httpx_model(args.llm, args.model, args.llm_key)
    ready = [asyncio.Event() for _ in range(len(SPECIALISTS) + 1)]
    agents = [asyncio.create_task(coordinator(args.tether, args.conversation, model, ready[0]))]
    agents += [
        asyncio.create_task(specialist(args.tether, name, model, ready[i + 1]))
        for i, name in enumerate(SPECIALISTS)
    ]
    await asyncio.gather(*(r.wait() for r in ready))
    print("agents ready", flush=True)
    if args.ask is None:
        await asyncio.gather(*agents)
        return
    async with TetherClient(args.tether, client_id="user") as user:
        trip = user.channel(args.conversation)
        await trip.attach()
        ack = await trip.publish(args.ask, name="prompt")

        def summarised(messages: list[Message]) -> bool:
            return any(
                m.get("extras", {}).get("agent") == "coordinator"
                and m.get("extras", {}).get("prompt") == ack.serial
                and is_stream_ended(stream_status(m))
                for m in messages
            )

        for m in await trip.wait_for(summarised, args.timeout):
            who = m.get("extras", {}).get("agent") or m.get("client_id") or "user"
            print(f"[{who}] {m.get('data')}", flush=True)
    for agent in agents:
        agent.cancel()
    await asyncio.gather(*agents, return_exceptions=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tether", default=os.environ.get("TETHER_URL", "http://127.0.0.1:7400"))
    p.add_argument("--llm", default=os.environ.get("OPENAI_BASE_URL", "http://127.0.0.1:7401/v1"))
    p.add_argument("--llm-key", default=os.environ.get("OPENAI_API_KEY"))
    p.add_argument("--model", default="model")
    p.add_argument("--conversation", default="trip:1")
    p.add_argument("--ask", help="publish this prompt as the user, print the conversation, exit")
    p.add_argument("--timeout", type=float, default=60.0)
    asyncio.run(run(p.parse_args()))


if __name__ == "__main__":
    main()
