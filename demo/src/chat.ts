/**
 * The chat page: ask → the assistant's answer streams in as one message;
 * refresh mid-answer and it continues; a second tab stays in sync; edit or
 * delete your own messages; Stop ends the answer `cancelled`; presence
 * shows your devices and the assistant's status; an operator can take over.
 */

import {
  bindConnection,
  byId,
  createClient,
  handoffAction,
  keepScrolled,
  logLine,
  randomId,
  renderMessages,
  renderPresence,
  streamStatus,
  tabLabel,
  userId,
  userTokens,
  type Message,
} from './common.js';

const SHOWN = new Set(['prompt', 'response', 'chat', 'handoff']);

async function main(): Promise<void> {
  const me = await userId();
  const params = new URLSearchParams(location.search);
  const requested = params.get('c');
  const suffix = requested && /^[a-z0-9]{1,16}$/.test(requested) ? requested : undefined;
  const channelName = suffix ? `conversation:${me}~${suffix}` : `conversation:${me}`;

  // The same conversation in another tab, or on another device.
  const share = new URL(location.pathname, location.origin);
  share.searchParams.set('u', me);
  if (suffix) share.searchParams.set('c', suffix);
  byId<HTMLAnchorElement>('share').href = share.toString();
  byId('channel-name').textContent = channelName;
  byId('new-conv').addEventListener('click', () => {
    const next = new URL(location.pathname, location.origin);
    next.searchParams.set('c', randomId(6));
    location.href = next.toString();
  });

  const client = createClient(userTokens(me, channelName));
  bindConnection(client);
  const chat = client.channel(channelName, { presence: true });
  chat.presence.enter({ role: 'user', name: 'You', device: `Tab ${tabLabel()}` }).catch((e: Error) => logLine(`Presence: ${e.message}`));

  const presenceList = byId('presence');
  chat.presence.onMembers((members) => renderPresence(presenceList, members, me, client.connectionId));
  client.on('connected', () => renderPresence(presenceList, chat.presence.members(), me, client.connectionId));

  const list = byId('messages');
  const scroller = byId('scroller');
  const stop = byId<HTMLButtonElement>('stop');
  const banner = byId('banner');
  const empty = byId('empty');
  let streaming: Message[] = [];

  chat.onMessages((messages) => {
    keepScrolled(scroller, () => renderMessages(list, messages, { me, perspective: 'user', names: SHOWN, channel: chat }));
    streaming = messages.filter((m) => m.name === 'response' && streamStatus(m) === 'streaming');
    stop.hidden = streaming.length === 0;
    const lastHandoff = [...messages].reverse().find((m) => handoffAction(m) !== undefined);
    const claimed = lastHandoff !== undefined && handoffAction(lastHandoff) === 'claim';
    banner.hidden = !claimed;
    banner.textContent = claimed ? `A human operator (${lastHandoff?.client_id ?? ''}) is handling this conversation. The assistant is paused.` : '';
    empty.hidden = messages.some((m) => m.name !== undefined && SHOWN.has(m.name));
  });

  let loaded = false;
  chat.on('synced', () => {
    if (!loaded) logLine(`Attached ${channelName}: history loaded, now live`);
    loaded = true;
    document.body.dataset['ready'] = 'true';
  });
  chat.on('attached', ({ continuity }) => {
    if (continuity === 'resumed') logLine('Resumed from the last position: only what was missed is sent');
  });
  chat.on('continuity-lost', () => logLine('The server could not resume from our position; the conversation was reloaded'));
  chat.on('error', (e) => logLine(`Channel error: ${e.message}`));

  const input = byId<HTMLTextAreaElement>('input');
  const send = (text: string): void => {
    const data = text.trim();
    if (!data) return;
    chat.publish({ name: 'prompt', data, extras: { role: 'user' } }).catch((e: Error) => logLine(`Send failed: ${e.message}`));
  };
  byId<HTMLFormElement>('composer').addEventListener('submit', (e) => {
    e.preventDefault();
    send(input.value);
    input.value = '';
    input.focus();
  });
  input.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey) {
      e.preventDefault();
      byId<HTMLFormElement>('composer').requestSubmit();
    }
  });
  stop.addEventListener('click', () => {
    for (const m of streaming) {
      chat.cancel(m.serial).catch((e: Error) => logLine(`Stop failed: ${e.message}`));
    }
    logLine('Stop: published a cancel message for the answer');
  });
  for (const chip of document.querySelectorAll<HTMLButtonElement>('[data-prompt]')) {
    chip.addEventListener('click', () => send(chip.dataset['prompt'] ?? ''));
  }
}

main().catch((err: unknown) => {
  byId('fatal').hidden = false;
  byId('fatal').textContent = `The demo could not start: ${String(err)}`;
});
