/**
 * The chat page again, written with the React hooks of @tether/react
 * (../sdk/react) instead of the SDK's callbacks: the same conversation
 * channel model, the same agent, but every piece of realtime state (the
 * folded messages, presence, the connection state, publishing) comes from a
 * hook. It shows that a React app needs no Tether plumbing of its own.
 * It uses its own conversation (`conversation:<user>~react`) so it never
 * interferes with the plain chat page.
 */

import { type Channel, type Message, type PresenceMember, streamStatus } from '@tether/client';
import { StrictMode, useEffect, useLayoutEffect, useRef, useState } from 'react';
import { createRoot } from 'react-dom/client';

import { TetherProvider, useChannel, useConnectionState, useMessages, usePresence, usePublish, useTetherClient } from '../../sdk/react/src/index.js';
import { createClient, simulateDrop, tabLabel, userId, userTokens } from './common.js';

/** The names of messages this page shows. */
const SHOWN = new Set(['prompt', 'response']);

const STATE_LABELS: Record<string, string> = {
  initialized: 'Starting…',
  connecting: 'Connecting…',
  connected: 'Connected',
  disconnected: 'Reconnecting…',
  closed: 'Closed',
  failed: 'Failed',
};

/** The connection indicator and the "simulate network drop" button. */
function Connection() {
  const state = useConnectionState();
  return (
    <div className="net">
      <span id="conn" className="conn" data-state={state}>
        {STATE_LABELS[state] ?? state}
      </span>
      <button id="drop" type="button" className="secondary" onClick={() => simulateDrop()}>
        Simulate network drop
      </button>
    </div>
  );
}

/** One message bubble. `data-*` attributes are what the browser tests read. */
function Bubble({ message }: { message: Message }) {
  const role = message.name === 'prompt' ? 'user' : 'assistant';
  const status = streamStatus(message) ?? '';
  const deleted = message.data === null || message.data === undefined;
  return (
    <li className={`msg msg-${role}${deleted ? ' deleted' : ''}`} data-serial={message.serial} data-name={message.name} data-status={status}>
      <div className="meta">
        <span className="who">{role === 'user' ? 'You' : 'Assistant'}</span>
        {status === 'streaming' && <span className="status badge status-streaming">streaming…</span>}
        {status === 'cancelled' && <span className="status badge status-cancelled">cancelled</span>}
      </div>
      <div className="text">{deleted ? '(message deleted)' : String(message.data)}</div>
    </li>
  );
}

/** Who is here: every member, with your own connections marked. */
function Presence({ channel, me }: { channel: Channel | null; me: string }) {
  const { members, enter } = usePresence(channel);
  const client = useTetherClient();
  useEffect(() => {
    if (!channel) return;
    enter({ role: 'user', name: 'You', device: `Tab ${tabLabel()}` }).catch(() => undefined);
  }, [channel, enter]);
  const label = (m: PresenceMember): string => {
    const data = (m.data ?? {}) as { role?: string; status?: string };
    if (m.client_id === me) return m.connection_id === client?.connectionId ? 'You (this tab)' : 'You (another tab)';
    return data.role === 'agent' ? `${m.client_id ?? 'agent'}` : `${m.client_id ?? m.connection_id}`;
  };
  return (
    <ul id="presence" className="presence">
      {members.length === 0 && <li className="member empty">Nobody yet</li>}
      {members.map((m) => {
        const data = (m.data ?? {}) as { role?: string; status?: string };
        const role = m.client_id === me ? 'me' : data.role === 'agent' ? 'agent' : (data.role ?? 'user');
        return (
          <li key={m.connection_id} className={`member ${role}`} data-client={m.client_id} data-status={data.status}>
            <span className="who">{label(m)}</span>
            {data.status && <span className={`badge status-${data.status}`}>{data.status}</span>}
          </li>
        );
      })}
    </ul>
  );
}

/** The conversation: messages, the composer, Stop. */
function Conversation({ channel }: { channel: Channel | null }) {
  const messages = useMessages(channel);
  const { publish, pending, error } = usePublish(channel);
  const [draft, setDraft] = useState('');
  const shown = messages.filter((m) => m.name !== undefined && SHOWN.has(m.name));
  const streaming = shown.filter((m) => m.name === 'response' && streamStatus(m) === 'streaming');
  // Follow a growing answer, unless the reader scrolled up.
  const scroller = useRef<HTMLDivElement>(null);
  const atBottom = useRef(true);
  useLayoutEffect(() => {
    const box = scroller.current;
    if (box && atBottom.current) box.scrollTop = box.scrollHeight;
  }, [messages]);
  const send = (): void => {
    const data = draft.trim();
    if (!data) return;
    setDraft('');
    publish({ name: 'prompt', data, extras: { role: 'user' } }).catch(() => undefined);
  };
  return (
    <section className="conversation">
      <div
        id="scroller"
        className="scroller"
        ref={scroller}
        onScroll={(e) => {
          const box = e.currentTarget;
          atBottom.current = box.scrollHeight - box.scrollTop - box.clientHeight < 80;
        }}
      >
        {shown.length === 0 && (
          <div id="empty" className="empty">
            <h1>The chat, in React</h1>
            <p>Every message, presence member and the connection state on this page come from @tether/react hooks.</p>
          </div>
        )}
        <ol id="messages" className="messages">
          {shown.map((m) => (
            <Bubble key={m.serial} message={m} />
          ))}
        </ol>
      </div>
      {error && (
        <p id="error" className="fatal">
          Send failed ({error.code}): {error.message}
        </p>
      )}
      <form
        id="composer"
        className="composer"
        onSubmit={(e) => {
          e.preventDefault();
          send();
        }}
      >
        <textarea
          id="input"
          rows={2}
          placeholder="Ask the assistant… (Enter to send)"
          value={draft}
          onChange={(e) => setDraft(e.target.value)}
          onKeyDown={(e) => {
            if (e.key === 'Enter' && !e.shiftKey) {
              e.preventDefault();
              send();
            }
          }}
        />
        {streaming.length > 0 && (
          <button id="stop" type="button" className="stop" onClick={() => streaming.forEach((m) => channel?.cancel(m.serial).catch(() => undefined))}>
            ■ Stop
          </button>
        )}
        <button id="send" type="submit" data-pending={pending}>
          {pending > 0 ? 'Sending…' : 'Send'}
        </button>
      </form>
    </section>
  );
}

/** Marks the page ready (`body[data-ready]`, what the tests wait for) once the channel has caught up. */
function useReadyMarker(channel: Channel | null): void {
  useEffect(() => {
    if (!channel) return undefined;
    return channel.on('synced', () => {
      document.body.dataset['ready'] = 'true';
    });
  }, [channel]);
}

function Page({ me, channelName }: { me: string; channelName: string }) {
  const channel = useChannel(channelName, { presence: true });
  useReadyMarker(channel);
  return (
    <>
      <header className="top">
        <a className="brand" href="./">
          Tether <span>demo</span>
        </a>
        <nav>
          <a href="chat">Chat</a>
          <a href="operator">Operator</a>
          <a href="planner">Planner</a>
          <a href="react" aria-current="page">
            React
          </a>
        </nav>
        <Connection />
      </header>
      <main className="layout">
        <Conversation channel={channel} />
        <aside className="side">
          <section>
            <h2>Who's here</h2>
            <Presence channel={channel} me={me} />
          </section>
          <section>
            <h2>This conversation</h2>
            <p>
              <code id="channel-name">{channelName}</code>
            </p>
          </section>
        </aside>
      </main>
    </>
  );
}

async function main(): Promise<void> {
  const me = await userId();
  const channelName = `conversation:${me}~react`;
  const client = createClient(userTokens(me, channelName));
  const root = document.getElementById('root');
  if (!root) throw new Error('missing #root');
  createRoot(root).render(
    <StrictMode>
      <TetherProvider client={client}>
        <Page me={me} channelName={channelName} />
      </TetherProvider>
    </StrictMode>,
  );
}

main().catch((err: unknown) => {
  document.body.textContent = `The demo could not start: ${String(err)}`;
});
