/**
 * The operator page: the active conversations (announced on the
 * `demo:conversations` channel, with who is there right now), and one
 * conversation at a time: claim it (the assistant stops and shows
 * `handed-off`), chat with the user, hand it back.
 */

import {
  bindConnection,
  byId,
  createClient,
  h,
  handoffAction,
  keepScrolled,
  logLine,
  operatorTokens,
  renderMessages,
  renderPresence,
  tabLabel,
  type Channel,
  type Message,
  type PresenceMember,
} from './common.js';

const LOBBY = 'demo:conversations';
const SHOWN = new Set(['prompt', 'response', 'chat', 'handoff']);
/** Conversations whose presence is polled for the list. */
const POLLED = 12;

interface Conversation {
  channel: string;
  user: string;
  announced: number;
}

async function main(): Promise<void> {
  const { id: me, tokens } = await operatorTokens();
  byId('me').textContent = me;
  const client = createClient(tokens);
  bindConnection(client);

  // ---- the list of conversations ----
  const listEl = byId('conversations');
  let conversations: Conversation[] = [];
  const badges = new Map<string, PresenceMember[]>();
  let selected: string | undefined;

  const renderList = (): void => {
    const items = conversations.map((c) => {
      const members = badges.get(c.channel);
      const users = members?.filter((m) => (m.data as { role?: string } | null)?.role === 'user').length ?? 0;
      const agent = members?.find((m) => (m.data as { role?: string } | null)?.role === 'agent');
      const status = (agent?.data as { status?: string } | undefined)?.status;
      const button = h(
        'button',
        { type: 'button', class: 'conv', 'data-channel': c.channel, 'aria-current': c.channel === selected ? 'true' : undefined },
        h('span', { class: 'conv-name' }, c.channel),
        h(
          'span',
          { class: 'conv-badges' },
          h('span', { class: `badge ${users > 0 ? 'online' : 'offline'}` }, members ? (users > 0 ? `user online${users > 1 ? ` ×${users}` : ''}` : 'user offline') : '…'),
          ...(status ? [h('span', { class: `badge status-${status}` }, `assistant: ${status}`)] : []),
        ),
      );
      button.addEventListener('click', () => select(c.channel));
      return h('li', {}, button);
    });
    listEl.replaceChildren(...items);
    byId('no-conversations').hidden = conversations.length > 0;
  };

  const lobby = client.channel(LOBBY, { rewind: 500 });
  lobby.onMessages((messages) => {
    const byChannel = new Map<string, Conversation>();
    for (const m of messages) {
      const data = m.data as { channel?: string; kind?: string; user?: string } | null;
      if (m.name !== 'conversation' || !data?.channel || data.kind !== 'chat') continue;
      byChannel.set(data.channel, { channel: data.channel, user: data.user ?? '', announced: m.timestamp });
    }
    conversations = [...byChannel.values()].sort((a, b) => b.announced - a.announced).slice(0, 50);
    renderList();
  });
  lobby.on('synced', () => {
    document.body.dataset['ready'] = 'true';
  });
  const poll = async (): Promise<void> => {
    await Promise.all(
      conversations.slice(0, POLLED).map(async (c) => {
        try {
          badges.set(c.channel, await client.channel(c.channel).presence.fetch());
        } catch {
          /* shown as unknown */
        }
      }),
    );
    renderList();
  };
  setInterval(() => void poll(), 2000);
  setTimeout(() => void poll(), 300);

  // ---- one conversation ----
  const list = byId('messages');
  const scroller = byId('scroller');
  const presenceList = byId('presence');
  const claimBtn = byId<HTMLButtonElement>('claim');
  const releaseBtn = byId<HTMLButtonElement>('release');
  const input = byId<HTMLTextAreaElement>('input');
  const sendBtn = byId<HTMLButtonElement>('send');
  const state = byId('handoff-state');
  let current: Channel | undefined;
  let unsubscribe: (() => void)[] = [];
  let claimedByMe = false;

  const showClaim = (messages: readonly Message[]): void => {
    const last = [...messages].reverse().find((m) => handoffAction(m) !== undefined);
    const claimedBy = last && handoffAction(last) === 'claim' ? last.client_id : undefined;
    claimedByMe = claimedBy === me;
    claimBtn.hidden = claimedBy !== undefined;
    releaseBtn.hidden = !claimedByMe;
    input.disabled = !claimedByMe;
    sendBtn.disabled = !claimedByMe;
    input.placeholder = claimedByMe ? 'Write to the user…' : 'Claim the conversation to write to the user';
    state.dataset['state'] = claimedByMe ? 'mine' : claimedBy ? 'other' : 'agent';
    state.textContent = claimedByMe
      ? 'You are handling this conversation. The assistant is silent.'
      : claimedBy
        ? `Claimed by ${claimedBy}.`
        : 'The assistant is handling this conversation.';
  };

  const select = (channel: string): void => {
    if (current?.name === channel) return;
    for (const off of unsubscribe) off();
    unsubscribe = [];
    if (current) {
      const previous = current;
      previous.presence.leave().catch(() => undefined);
      void previous.detach();
    }
    selected = channel;
    renderList();
    history.replaceState(null, '', `?c=${encodeURIComponent(channel)}`);
    byId('detail').hidden = false;
    byId('pick').hidden = true;
    byId('detail-name').textContent = channel;
    list.replaceChildren();
    const ch = client.channel(channel, { presence: true });
    current = ch;
    ch.presence.enter({ role: 'operator', name: 'Operator', status: 'watching', device: `Tab ${tabLabel()}` }).catch((e: Error) => logLine(`Presence: ${e.message}`));
    unsubscribe.push(
      ch.onMessages((messages) => {
        keepScrolled(scroller, () => renderMessages(list, messages, { me, perspective: 'operator', names: SHOWN, channel: ch }));
        showClaim(messages);
      }),
      ch.presence.onMembers((members) => {
        renderPresence(presenceList, members, me, client.connectionId);
        badges.set(channel, [...members]);
      }),
    );
    logLine(`Watching ${channel}`);
  };

  claimBtn.addEventListener('click', () => {
    const ch = current;
    if (!ch) return;
    ch.claim()
      .then(() => {
        logLine(`Claimed ${ch.name}: the assistant stops and goes handed-off`);
        return ch.presence.update({ role: 'operator', name: 'Operator', status: 'handling', device: `Tab ${tabLabel()}` });
      })
      .catch((e: Error) => logLine(`Claim failed: ${e.message}`));
  });
  releaseBtn.addEventListener('click', () => {
    const ch = current;
    if (!ch) return;
    ch.release()
      .then(() => {
        logLine(`Handed ${ch.name} back to the assistant`);
        return ch.presence.update({ role: 'operator', name: 'Operator', status: 'watching', device: `Tab ${tabLabel()}` });
      })
      .catch((e: Error) => logLine(`Hand back failed: ${e.message}`));
  });
  byId<HTMLFormElement>('composer').addEventListener('submit', (e) => {
    e.preventDefault();
    const data = input.value.trim();
    if (!current || !claimedByMe || !data) return;
    current.publish({ name: 'chat', data, extras: { role: 'operator' } }).catch((err: Error) => logLine(`Send failed: ${err.message}`));
    input.value = '';
  });
  input.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey) {
      e.preventDefault();
      byId<HTMLFormElement>('composer').requestSubmit();
    }
  });

  const initial = new URLSearchParams(location.search).get('c');
  if (initial && /^conversation:[A-Za-z0-9~_.:-]+$/.test(initial)) select(initial);
}

main().catch((err: unknown) => {
  byId('fatal').hidden = false;
  byId('fatal').textContent = `The demo could not start: ${String(err)}`;
});
