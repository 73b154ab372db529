/**
 * The multi-agent planner page. A trip request fans out to specialist
 * agents (flights, hotels, weather) that each stream their part straight
 * into this conversation and report progress through presence; the
 * coordinator then writes the combined plan. The page only reads the
 * channel: its messages (durable, so a refresh loses nothing) and its
 * presence (live progress).
 */

import {
  bindConnection,
  byId,
  createClient,
  h,
  logLine,
  randomId,
  renderPresence,
  streamStatus,
  tabLabel,
  userId,
  userTokens,
  type Message,
  type PresenceMember,
} from './common.js';

const AGENTS = [
  { id: 'flights', title: 'Flights' },
  { id: 'hotels', title: 'Hotels' },
  { id: 'weather', title: 'Weather' },
] as const;

interface AgentPresence {
  role?: string;
  agent?: string;
  status?: string;
  progress?: number;
  step?: string;
  request?: string;
}

function extra(m: Message, key: string): string | undefined {
  const v = m.extras?.[key];
  return typeof v === 'string' ? v : undefined;
}

async function main(): Promise<void> {
  const me = await userId();
  const requested = new URLSearchParams(location.search).get('t');
  const suffix = requested && /^[a-z0-9]{1,16}$/.test(requested) ? requested : undefined;
  const channelName = suffix ? `trip:${me}~${suffix}` : `trip:${me}`;
  byId('channel-name').textContent = channelName;
  byId('new-trip').addEventListener('click', () => {
    const next = new URL(location.pathname, location.origin);
    next.searchParams.set('t', randomId(6));
    location.href = next.toString();
  });

  const client = createClient(userTokens(me, channelName));
  bindConnection(client);
  const trip = client.channel(channelName, { presence: true });
  trip.presence.enter({ role: 'user', name: 'You', device: `Tab ${tabLabel()}` }).catch((e: Error) => logLine(`Presence: ${e.message}`));

  let messages: readonly Message[] = [];
  let members: readonly PresenceMember[] = [];
  const board = byId('trips');
  const sections = new Map<string, HTMLElement>();
  const presenceList = byId('presence');

  const render = (): void => {
    const requests = messages.filter((m) => m.name === 'trip-request');
    byId('empty').hidden = requests.length > 0;
    for (const request of requests) {
      let section = sections.get(request.serial);
      if (!section) {
        section = createSection(request.serial);
        sections.set(request.serial, section);
        board.prepend(section);
      }
      updateSection(section, request);
    }
  };

  const createSection = (serial: string): HTMLElement => {
    const cards = AGENTS.map((a) =>
      h(
        'article',
        { class: 'agent-card', 'data-agent': a.id, 'data-state': 'queued' },
        h('header', {}, h('h3', {}, a.title), h('span', { class: 'badge state' }, 'queued')),
        h('div', { class: 'progress' }, h('div', { class: 'bar' })),
        h('p', { class: 'step' }, 'Waiting for the planner'),
        h('div', { class: 'text' }),
      ),
    );
    return h(
      'section',
      { class: 'trip', 'data-request': serial },
      h('div', { class: 'msg msg-user mine' }, h('div', { class: 'meta' }, h('span', { class: 'who' }, 'You')), h('div', { class: 'text request-text' })),
      h('p', { class: 'dispatch' }),
      h('div', { class: 'agents' }, ...cards),
      h(
        'article',
        { class: 'plan', 'data-status': 'pending' },
        h('header', {}, h('h3', {}, 'Combined plan'), h('span', { class: 'badge plan-state' }, 'waiting')),
        h('div', { class: 'text plan-text' }, 'The planner writes the plan when every agent is done.'),
      ),
    );
  };

  const updateSection = (section: HTMLElement, request: Message): void => {
    const serial = request.serial;
    const setText = (node: Element | null, text: string): void => {
      if (node && node.textContent !== text) node.textContent = text;
    };
    setText(section.querySelector('.request-text'), String(request.data ?? '(deleted)'));
    const dispatch = messages.find((m) => m.name === 'dispatch' && extra(m, 'request') === serial);
    setText(section.querySelector('.dispatch'), dispatch ? `Planner: ${String(dispatch.data)}` : 'Planner: reading your request…');
    for (const agent of AGENTS) {
      const card = section.querySelector<HTMLElement>(`.agent-card[data-agent="${agent.id}"]`);
      if (!card) continue;
      const part = messages.find((m) => m.name === 'part' && extra(m, 'request') === serial && extra(m, 'agent') === agent.id);
      const live = members
        .map((m) => (m.data ?? {}) as AgentPresence)
        .find((d) => d.role === 'agent' && d.agent === agent.id && d.request === serial);
      const status = part ? streamStatus(part) : undefined;
      let state: string;
      let progress: number;
      let step: string;
      if (status === 'complete') {
        [state, progress, step] = ['done', 1, 'Done'];
      } else if (status === 'cancelled' || status === 'error') {
        [state, progress, step] = ['stopped', 1, status];
      } else if (live || part) {
        state = 'working';
        progress = live?.progress ?? 0.5;
        step = live?.step ?? 'Working';
      } else {
        [state, progress, step] = ['queued', 0, dispatch ? 'Task posted, waiting for the agent' : 'Waiting for the planner'];
      }
      card.dataset['state'] = state;
      setText(card.querySelector('.state'), state === 'working' ? `${Math.round(progress * 100)}%` : state);
      const bar = card.querySelector<HTMLElement>('.bar');
      if (bar) bar.style.width = `${Math.round(progress * 100)}%`;
      setText(card.querySelector('.step'), step);
      setText(card.querySelector('.text'), part ? String(part.data ?? '') : '');
    }
    const plan = messages.find((m) => m.name === 'plan' && extra(m, 'request') === serial);
    const planEl = section.querySelector<HTMLElement>('.plan');
    if (planEl) {
      const status = plan ? (streamStatus(plan) ?? 'complete') : 'pending';
      planEl.dataset['status'] = status;
      const coordinator = members.map((m) => (m.data ?? {}) as AgentPresence).find((d) => d.agent === 'planner');
      const stateEl = planEl.querySelector<HTMLElement>('.plan-state');
      if (stateEl) stateEl.className = `badge plan-state status-${status === 'pending' ? (coordinator?.status ?? 'waiting') : status}`;
      setText(
        stateEl,
        status === 'pending' ? (coordinator?.status ?? 'waiting') : status === 'streaming' ? 'writing…' : status,
      );
      setText(
        planEl.querySelector('.plan-text'),
        plan ? String(plan.data ?? '') : (coordinator?.step ?? 'The planner writes the plan when every agent is done.'),
      );
    }
  };

  trip.presence.onMembers((m) => {
    members = m;
    renderPresence(presenceList, m, me, client.connectionId);
    render();
  });
  trip.onMessages((m) => {
    messages = m;
    render();
  });
  trip.on('synced', () => {
    document.body.dataset['ready'] = 'true';
  });
  trip.on('attached', ({ continuity }) => {
    if (continuity === 'resumed') logLine('Resumed from the last position: only what was missed is sent');
  });

  const input = byId<HTMLInputElement>('input');
  const ask = (text: string): void => {
    const data = text.trim();
    if (!data) return;
    trip.publish({ name: 'trip-request', data, extras: { role: 'user' } }).catch((e: Error) => logLine(`Send failed: ${e.message}`));
    logLine('Trip request published; the planner dispatches it to the specialists');
  };
  byId<HTMLFormElement>('composer').addEventListener('submit', (e) => {
    e.preventDefault();
    ask(input.value);
    input.value = '';
  });
  for (const chip of document.querySelectorAll<HTMLButtonElement>('[data-prompt]')) {
    chip.addEventListener('click', () => ask(chip.dataset['prompt'] ?? ''));
  }
}

main().catch((err: unknown) => {
  byId('fatal').hidden = false;
  byId('fatal').textContent = `The demo could not start: ${String(err)}`;
});
