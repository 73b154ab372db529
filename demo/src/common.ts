/**
 * What the three demo pages share: getting a token from the demo back end,
 * creating the SDK client, the connection indicator and the "simulate
 * network drop" button, the presence list and the message list.
 *
 * Everything realtime goes through the TypeScript SDK (../sdk/typescript):
 * resume after a drop, page-refresh persistence, the folded conversation
 * view, presence and the cancel/handoff helpers.
 */

import {
  TetherClient,
  streamStatus,
  handoffAction,
  type Channel,
  type Message,
  type PresenceMember,
} from '../../sdk/typescript/src/index.js';

export { TetherClient, streamStatus, handoffAction };
export type { Channel, Message, PresenceMember };

// ---- tiny DOM helpers -----------------------------------------------------

/** The element with `id` (throws if the page lacks it: a bug). */
export function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const found = document.getElementById(id);
  if (!found) throw new Error(`missing #${id}`);
  return found as T;
}

/** `h('li', {class: 'x', 'data-serial': s}, child...)`. */
export function h(tag: string, attrs: Record<string, string | undefined> = {}, ...children: (Node | string)[]): HTMLElement {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined) node.setAttribute(k, v);
  node.append(...children);
  return node;
}

/** A short random id of lowercase letters and digits. */
export function randomId(length = 6): string {
  const bytes = new Uint8Array(length);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => 'abcdefghijklmnopqrstuvwxyz0123456789'[b % 36]).join('');
}

// ---- identity and tokens --------------------------------------------------

interface SessionReply {
  client_id: string;
  token: string;
  expires_at: number;
}

async function session(body: Record<string, string>): Promise<SessionReply> {
  const reply = await fetch('/demo/api/session', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  if (!reply.ok) throw new Error(`session: HTTP ${reply.status} ${await reply.text()}`);
  return (await reply.json()) as SessionReply;
}

const USER_KEY = 'tether-demo:user';
const OPERATOR_KEY = 'tether-demo:operator';

/**
 * This browser's user id: from the link (`?u=`, so a link opens the same
 * conversation on another device), else remembered in localStorage (so
 * every tab is the same user), else a new one from the back end.
 */
export async function userId(): Promise<string> {
  const fromLink = new URLSearchParams(location.search).get('u');
  if (fromLink && /^u-[0-9a-f]{8}$/.test(fromLink)) {
    localStorage.setItem(USER_KEY, fromLink);
    return fromLink;
  }
  const known = localStorage.getItem(USER_KEY);
  if (known && /^u-[0-9a-f]{8}$/.test(known)) return known;
  const reply = await session({ role: 'user' });
  localStorage.setItem(USER_KEY, reply.client_id);
  return reply.client_id;
}

/** A token callback for a user on `channel` (the back end also makes sure an agent watches it). */
export function userTokens(user: string, channel: string): () => Promise<string> {
  return async () => (await session({ role: 'user', client_id: user, channel })).token;
}

/** The operator's id and a token callback. */
export async function operatorTokens(): Promise<{ id: string; tokens: () => Promise<string> }> {
  const first = await session({ role: 'operator', client_id: localStorage.getItem(OPERATOR_KEY) ?? '' });
  localStorage.setItem(OPERATOR_KEY, first.client_id);
  let pending: string | undefined = first.token;
  return {
    id: first.client_id,
    tokens: async () => {
      if (pending) {
        const token = pending;
        pending = undefined;
        return token;
      }
      return (await session({ role: 'operator', client_id: first.client_id })).token;
    },
  };
}

/** A label for this tab, kept across reloads of the tab. */
export function tabLabel(): string {
  let label = sessionStorage.getItem('tether-demo:tab');
  if (!label) {
    label = randomId(3).toUpperCase();
    sessionStorage.setItem('tether-demo:tab', label);
  }
  return label;
}

// ---- the client and "simulate network drop" -------------------------------

let currentSocket: WebSocket | undefined;
let offlineUntil = 0;

/**
 * The browser's WebSocket, remembered so the demo can close it. While the
 * simulated outage lasts, new sockets go to a path that does not exist, so
 * they fail the way they would with no network and the SDK keeps retrying.
 */
class DemoWebSocket extends WebSocket {
  constructor(url: string | URL, protocols?: string | string[]) {
    const target = Date.now() < offlineUntil ? String(url).replace('/ws?', '/ws-offline?') : url;
    super(target, protocols);
    currentSocket = this;
  }
}

/** Closes the socket under the SDK and keeps the "network" down for `ms`. */
export function simulateDrop(ms = 2000): void {
  offlineUntil = Date.now() + ms;
  currentSocket?.close(4100, 'simulated network drop');
}

/** The SDK client for this page. */
export function createClient(authCallback: () => Promise<string>): TetherClient {
  return new TetherClient({ url: location.origin, authCallback, WebSocket: DemoWebSocket });
}

/** Appends a timestamped line to the page's event log. */
export function logLine(text: string): void {
  const log = document.getElementById('log');
  if (!log) return;
  const time = new Date().toLocaleTimeString();
  log.prepend(h('li', {}, h('time', {}, time), ' ', text));
  while (log.children.length > 30) log.lastElementChild?.remove();
}

const STATE_LABELS: Record<string, string> = {
  initialized: 'Starting…',
  connecting: 'Connecting…',
  connected: 'Connected',
  disconnected: 'Reconnecting…',
  closed: 'Closed',
  failed: 'Failed',
};

/** Binds the connection indicator and the drop button to `client`. */
export function bindConnection(client: TetherClient): void {
  const indicator = byId('conn');
  const show = (state: string): void => {
    indicator.dataset['state'] = state;
    indicator.textContent = STATE_LABELS[state] ?? state;
  };
  show(client.state);
  let wasDown = false;
  client.on('state', (state) => {
    show(state);
    if (state === 'disconnected' && !wasDown) {
      wasDown = true;
      logLine('Connection lost; reconnecting with backoff');
    }
    if (state === 'connected' && wasDown) wasDown = false;
  });
  // After a page reload the SDK tries to resume the previous page's
  // connection too; the server forgets a connection that closed cleanly,
  // so then it is a new connection and channels resume by position.
  let connectedOnce = false;
  client.on('connected', () => {
    connectedOnce = true;
  });
  client.on('resumed', () => logLine('Reconnected: the connection resumed (same presence, nothing re-sent twice)'));
  client.on('resume-failed', () =>
    logLine(
      connectedOnce
        ? 'Reconnected as a new connection; each channel resumed from its last position'
        : 'New connection; each channel resumed from the position saved before the reload',
    ),
  );
  byId('drop').addEventListener('click', () => {
    logLine('Simulated network drop: socket closed, network down for 2 s');
    simulateDrop();
  });
}

// ---- presence -------------------------------------------------------------

interface MemberData {
  role?: string;
  name?: string;
  status?: string;
  device?: string;
  agent?: string;
  progress?: number;
  step?: string;
}

function dataOf(member: PresenceMember): MemberData {
  return (member.data && typeof member.data === 'object' ? member.data : {}) as MemberData;
}

/** Renders "who is here": you (per device), agents with their status, operators, others. */
export function renderPresence(container: HTMLElement, members: readonly PresenceMember[], me: string, myConnection: string | undefined): void {
  const groups = new Map<string, PresenceMember[]>();
  for (const m of members) {
    const key = m.client_id ?? m.connection_id;
    groups.set(key, [...(groups.get(key) ?? []), m]);
  }
  const items: HTMLElement[] = [];
  const order = [...groups.keys()].sort((a, b) => (a === me ? -1 : b === me ? 1 : a < b ? -1 : 1));
  for (const clientId of order) {
    const group = groups.get(clientId) ?? [];
    const first = dataOf(group[0] as PresenceMember);
    const role = first.role ?? 'user';
    if (clientId === me) {
      const devices = group.map((m) => {
        const label = dataOf(m).device ?? 'device';
        return h('span', { class: 'device' }, m.connection_id === myConnection ? `${label} (this tab)` : label);
      });
      items.push(
        h(
          'li',
          { class: 'member me', 'data-client': clientId, 'data-devices': String(group.length) },
          h('span', { class: 'who' }, `${role === 'operator' ? 'You (operator)' : 'You'} · ${group.length} device${group.length === 1 ? '' : 's'}`),
          h('span', { class: 'devices' }, ...devices),
        ),
      );
    } else if (role === 'agent') {
      for (const m of group) {
        const d = dataOf(m);
        const status = d.status ?? 'idle';
        items.push(
          h(
            'li',
            { class: 'member agent', 'data-client': clientId, 'data-status': status },
            h('span', { class: 'who' }, d.name ?? clientId),
            h('span', { class: `badge status-${status}` }, status),
          ),
        );
      }
    } else {
      const label = role === 'operator' ? `Operator ${clientId}` : `User ${clientId}`;
      const status = first.status;
      items.push(
        h(
          'li',
          { class: `member ${role}`, 'data-client': clientId, 'data-status': status },
          h('span', { class: 'who' }, group.length > 1 ? `${label} · ${group.length} devices` : label),
          ...(status ? [h('span', { class: `badge status-${status}` }, status)] : []),
        ),
      );
    }
  }
  container.replaceChildren(...items);
  if (items.length === 0) container.append(h('li', { class: 'member empty' }, 'Nobody yet'));
}

// ---- the message list -----------------------------------------------------

/** Options of {@link renderMessages}. */
export interface RenderOptions {
  /** This page's client id: its messages can be edited and deleted. */
  me: string;
  /** Who is looking: labels differ. */
  perspective: 'user' | 'operator';
  /** Message names to show. */
  names: ReadonlySet<string>;
  channel: Channel;
}

/** Who wrote `m`, as this page shows it. */
function author(m: Message, opts: RenderOptions): string {
  const own = m.client_id === opts.me;
  switch (m.name) {
    case 'prompt':
      return opts.perspective === 'user' ? 'You' : `User ${m.client_id ?? ''}`;
    case 'response':
      return 'Assistant';
    case 'chat':
      if (opts.perspective === 'operator') return own ? 'You (operator)' : `Operator ${m.client_id ?? ''}`;
      return 'Operator';
    default:
      return m.client_id ?? '';
  }
}

function noticeText(m: Message): string {
  const action = handoffAction(m);
  if (action === 'claim') return `Operator ${m.client_id ?? ''} took over the conversation; the assistant is paused.`;
  if (action === 'release') return `Operator ${m.client_id ?? ''} handed the conversation back to the assistant.`;
  return String(m.data ?? '');
}

const rendered = new WeakMap<HTMLElement, Map<string, HTMLElement>>();

/**
 * Keeps `list` in step with `messages` (the SDK's folded view): one element
 * per message, updated in place, so a streaming answer grows in its bubble.
 */
export function renderMessages(list: HTMLElement, messages: readonly Message[], opts: RenderOptions): void {
  let elements = rendered.get(list);
  if (!elements) {
    elements = new Map();
    rendered.set(list, elements);
  }
  const visible = messages.filter((m) => m.name !== undefined && opts.names.has(m.name));
  const keep = new Set(visible.map((m) => m.serial));
  for (const [serial, node] of elements) {
    if (!keep.has(serial)) {
      node.remove();
      elements.delete(serial);
    }
  }
  visible.forEach((m, index) => {
    let node = elements.get(m.serial);
    if (!node) {
      node = m.name === 'handoff' ? h('li', { class: 'notice' }) : createBubble(m, opts);
      elements.set(m.serial, node);
    }
    updateBubble(node, m, opts);
    if (list.children[index] !== node) list.insertBefore(node, list.children[index] ?? null);
  });
}

function createBubble(m: Message, opts: RenderOptions): HTMLElement {
  const role = m.name === 'prompt' ? 'user' : m.name === 'chat' ? 'operator' : 'assistant';
  const mine = m.client_id === opts.me;
  const node = h(
    'li',
    { class: `msg msg-${role}${mine ? ' mine' : ''}` },
    h('div', { class: 'meta' }, h('span', { class: 'who' }, author(m, opts)), h('span', { class: 'status' }), h('span', { class: 'edited' })),
    h('div', { class: 'text' }),
  );
  if (mine && (m.name === 'prompt' || m.name === 'chat')) {
    const edit = h('button', { class: 'link edit', type: 'button' }, 'Edit');
    const del = h('button', { class: 'link delete', type: 'button' }, 'Delete');
    edit.addEventListener('click', () => openEditor(node, m.serial, opts.channel));
    del.addEventListener('click', () => {
      opts.channel.delete(m.serial, { description: 'deleted by its author' }).catch((e: Error) => logLine(`Delete failed: ${e.message}`));
    });
    node.querySelector('.meta')?.append(h('span', { class: 'actions' }, edit, del));
  }
  return node;
}

function updateBubble(node: HTMLElement, m: Message, opts: RenderOptions): void {
  node.dataset['serial'] = m.serial;
  node.dataset['name'] = m.name ?? '';
  if (m.name === 'handoff') {
    node.textContent = noticeText(m);
    return;
  }
  const status = streamStatus(m);
  node.dataset['status'] = status ?? '';
  const deleted = m.data === null || m.data === undefined;
  node.classList.toggle('deleted', deleted);
  const statusEl = node.querySelector<HTMLElement>('.status');
  if (statusEl) {
    const label = status === 'streaming' ? 'streaming…' : status === 'cancelled' ? 'cancelled' : status === 'error' ? 'error' : '';
    statusEl.textContent = label;
    statusEl.className = `status${label ? ` badge status-${status}` : ''}`;
  }
  const edited = !deleted && m.action === 'update' && (m.name === 'prompt' || m.name === 'chat');
  const editedEl = node.querySelector<HTMLElement>('.edited');
  if (editedEl) editedEl.textContent = edited ? '(edited)' : '';
  node.querySelector<HTMLElement>('.actions')?.toggleAttribute('hidden', deleted);
  if (node.classList.contains('editing')) return;
  const text = deleted ? '(message deleted)' : String(m.data ?? '');
  const textEl = node.querySelector<HTMLElement>('.text');
  if (textEl && textEl.textContent !== text) textEl.textContent = text;
  void opts;
}

function openEditor(node: HTMLElement, serial: string, channel: Channel): void {
  if (node.classList.contains('editing')) return;
  const textEl = node.querySelector<HTMLElement>('.text');
  if (!textEl) return;
  node.classList.add('editing');
  const input = h('textarea', { class: 'edit-input', rows: '2' }) as HTMLTextAreaElement;
  input.value = textEl.textContent ?? '';
  const save = h('button', { class: 'save', type: 'button' }, 'Save');
  const cancel = h('button', { class: 'link cancel-edit', type: 'button' }, 'Cancel');
  const form = h('div', { class: 'editor' }, input, h('div', { class: 'editor-actions' }, save, cancel));
  textEl.hidden = true;
  textEl.after(form);
  input.focus();
  const close = (): void => {
    form.remove();
    textEl.hidden = false;
    node.classList.remove('editing');
  };
  cancel.addEventListener('click', close);
  save.addEventListener('click', () => {
    const data = input.value.trim();
    if (!data) return;
    textEl.textContent = data;
    close();
    channel.update(serial, { data, description: 'edited by its author' }).catch((e: Error) => logLine(`Edit failed: ${e.message}`));
  });
}

/** Scrolls `box` to the bottom if it was near the bottom before `change` ran. */
export function keepScrolled(box: HTMLElement, change: () => void): void {
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 80;
  change();
  if (atBottom) box.scrollTop = box.scrollHeight;
}
