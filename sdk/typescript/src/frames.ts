/**
 * Decoding of the frames the server sends, checked against the shapes in
 * `types.ts`. The table below lists, for every server frame type, the
 * fields the SDK reads and their JSON types; `test/vectors.test.ts` runs
 * every golden vector of `crates/tether-protocol/vectors` through it, so
 * the table (and the types it mirrors) cannot drift from the server.
 */

import type { ServerFrame } from './types.js';

/** The JSON type of a field; `?` marks an optional one. */
type FieldType = 'string' | 'number' | 'boolean' | 'object' | 'array' | 'string|null';
type FieldSpec = FieldType | `?${FieldType}`;

/** Every field of every server frame, by frame type (the `type` field excluded). */
export const SERVER_FRAME_FIELDS: Readonly<Record<ServerFrame['type'], Readonly<Record<string, FieldSpec>>>> = {
  connected: {
    protocol: 'number',
    connection_id: 'string',
    resume_key: '?string',
    resume_ttl_ms: '?number',
    client_id: '?string',
    authenticated: '?boolean',
    heartbeat_ms: '?number',
    idle_timeout_ms: '?number',
    limits: '?object',
  },
  attached: { req: '?number', channel: 'string', continuity: 'string', error: '?object' },
  message: { channel: 'string', position: '?string', message: 'object' },
  synced: { channel: 'string', position: '?string' },
  detached: { req: '?number', channel: 'string' },
  ack: { req: '?number', serial: 'string', version_serial: 'string', duplicate: 'boolean' },
  error: { req: '?number', channel: '?string', code: 'number', message: 'string' },
  pong: { req: '?number' },
  ok: { req: '?number' },
  authorized: { req: '?number', client_id: '?string', expires_at: '?number' },
  resumed: { req: '?number', connection_id: 'string', resume_key: 'string', attachments: 'array' },
  'presence-sync': { channel: 'string', members: 'array', complete: 'boolean' },
  presence: { channel: 'string', action: 'string', member: 'object' },
  ephemeral: { channel: 'string', message: 'object' },
  heartbeat: {},
};

function hasType(value: unknown, type: FieldType): boolean {
  switch (type) {
    case 'array':
      return Array.isArray(value);
    case 'object':
      return typeof value === 'object' && value !== null && !Array.isArray(value);
    case 'string|null':
      return value === null || typeof value === 'string';
    default:
      return typeof value === type;
  }
}

/**
 * Whether `value` is a server frame the SDK understands: a known `type`
 * whose fields have the documented JSON types. Unknown extra fields are
 * allowed (a newer server may add some).
 */
export function isServerFrame(value: unknown): value is ServerFrame {
  if (typeof value !== 'object' || value === null) return false;
  const frame = value as Record<string, unknown>;
  const type = frame['type'];
  if (typeof type !== 'string' || !Object.prototype.hasOwnProperty.call(SERVER_FRAME_FIELDS, type)) return false;
  const fields = SERVER_FRAME_FIELDS[type as ServerFrame['type']];
  for (const [name, spec] of Object.entries(fields)) {
    const optional = spec.startsWith('?');
    const field = frame[name];
    if (field === undefined && optional) continue;
    if (!hasType(field, (optional ? spec.slice(1) : spec) as FieldType)) return false;
  }
  return true;
}

/** Parses one WebSocket text frame; `undefined` if it is not a frame the SDK understands. */
export function parseServerFrame(text: string): ServerFrame | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  return isServerFrame(value) ? value : undefined;
}
