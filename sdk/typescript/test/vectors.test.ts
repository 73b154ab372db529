/**
 * The golden vectors of crates/tether-protocol/vectors, shared with the
 * Rust tests: every server frame vector passes the SDK's frame decoding and
 * carries no field the SDK's types do not know; every frame type the SDK
 * knows has a vector; every fold sequence folds through `view.ts` into the
 * messages the Rust `tether_core::View` gives.
 */

import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { isServerFrame, parseServerFrame, SERVER_FRAME_FIELDS } from '../src/frames.js';
import type { Message } from '../src/types.js';
import { View } from '../src/view.js';

// Compiled to sdk/typescript/dist-test/test/: the repository root is four levels up.
const VECTORS = fileURLToPath(new URL('../../../../crates/tether-protocol/vectors/', import.meta.url));

function jsonFiles(dir: string): { stem: string; value: unknown }[] {
  return readdirSync(VECTORS + dir)
    .filter((name) => name.endsWith('.json'))
    .sort()
    .map((name) => ({ stem: name.slice(0, -'.json'.length), value: JSON.parse(readFileSync(`${VECTORS}${dir}/${name}`, 'utf8')) }));
}

test('every server frame vector decodes through the SDK', () => {
  const seen = new Set<string>();
  for (const { stem, value } of jsonFiles('frames/server')) {
    assert.ok(Array.isArray(value) && value.length > 0, `${stem} holds examples`);
    for (const example of value as Record<string, unknown>[]) {
      assert.equal(example['type'], stem, 'the file names the frame type');
      assert.ok(isServerFrame(example), `${JSON.stringify(example)} passes the SDK's check`);
      const parsed = parseServerFrame(JSON.stringify(example));
      assert.deepEqual(parsed, example);
      const known = SERVER_FRAME_FIELDS[stem as keyof typeof SERVER_FRAME_FIELDS];
      for (const field of Object.keys(example)) {
        if (field === 'type') continue;
        assert.ok(field in known, `${stem}.${field} is sent by the server but missing from types.ts / frames.ts`);
      }
      seen.add(stem);
    }
  }
  assert.deepEqual([...seen].sort(), Object.keys(SERVER_FRAME_FIELDS).sort(), 'the SDK knows exactly the frame types the server sends');
});

test('the SDK refuses frames that break the documented shapes', () => {
  assert.equal(parseServerFrame('not json'), undefined);
  assert.equal(parseServerFrame('{"type":"nope"}'), undefined);
  assert.equal(parseServerFrame('{"type":"ack","serial":"s","version_serial":"v"}'), undefined, 'ack without duplicate');
  assert.equal(parseServerFrame('{"type":"message","channel":"c","message":"text"}'), undefined);
  assert.ok(parseServerFrame('{"type":"pong","req":1,"later":"field"}'), 'unknown fields are tolerated');
});

test('every fold vector folds through view.ts like tether-core', () => {
  const files = jsonFiles('fold');
  assert.ok(files.length >= 5, 'fold vectors are present');
  for (const { stem, value } of files) {
    const vector = value as { events: Message[]; messages: Message[] };
    const view = new View();
    for (const event of vector.events) view.apply(event);
    assert.deepEqual(view.messages(), vector.messages, stem);
  }
});
