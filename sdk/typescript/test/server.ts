/**
 * Test harness: runs the real Tether server. It builds nothing: it spawns
 * `${TETHER_BIN:-../../target/debug/tether} serve --dev --listen 127.0.0.1:0
 * --data-dir <tmp>` (plus any extra arguments, a config file, or without
 * `--dev` for tests of authentication) and reads the bound address from the
 * stdout line `listening on http://127.0.0.1:PORT`.
 */

import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { WebSocket as WS } from 'ws';

import { type ClientOptions, type Message, MemoryStorage, TetherClient, View, type WebSocketConstructor } from '../src/index.js';

/** sdk/typescript, whether running from test/ or dist-test/test/. */
const pkgRoot = (() => {
  let dir = fileURLToPath(new URL('.', import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) dir = resolve(dir, '..');
  return dir;
})();

export interface Server {
  url: string;
  stop(): Promise<void>;
}

/** How to run a test server. */
export interface ServerOptions {
  /** Development mode, no authentication (default true). */
  dev?: boolean;
  /** Extra `serve` arguments, e.g. `['--key', 'app:secret']`. */
  args?: string[];
  /** TOML configuration, written to a file and passed as `--config`. */
  config?: string;
}

/** Starts a server on a free port with a fresh data directory. */
export async function startServer(opts: ServerOptions = {}): Promise<Server> {
  const bin = process.env.TETHER_BIN ? resolve(process.env.TETHER_BIN) : resolve(pkgRoot, '../../target/debug/tether');
  if (!existsSync(bin)) {
    throw new Error(`tether binary not found at ${bin}: build it (cargo build --bin tether) or set TETHER_BIN`);
  }
  const dataDir = await mkdtemp(join(tmpdir(), 'tether-sdk-test-'));
  const args = ['serve', '--listen', '127.0.0.1:0', '--data-dir', join(dataDir, 'data')];
  if (opts.dev !== false) args.push('--dev');
  if (opts.config !== undefined) {
    const file = join(dataDir, 'tether.toml');
    await writeFile(file, opts.config);
    args.push('--config', file);
  }
  args.push(...(opts.args ?? []));
  const child = spawn(bin, args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? 'warn' },
  });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    stderr += d.toString();
    if (process.env.TETHER_TEST_LOG) process.stderr.write(d);
  });
  const url = await new Promise<string>((resolveUrl, reject) => {
    let out = '';
    const timer = setTimeout(() => fail(new Error(`server did not print "listening on" within 30 s; stdout: ${out}; stderr: ${stderr}`)), 30000);
    const fail = (err: Error) => {
      clearTimeout(timer);
      child.kill('SIGKILL');
      reject(err);
    };
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /listening on (http:\/\/[^\s]+)/.exec(out);
      if (m?.[1]) {
        clearTimeout(timer);
        resolveUrl(m[1].replace(/\/+$/, ''));
      }
    });
    child.on('exit', (code, signal) => fail(new Error(`server exited early (${code ?? signal}); stderr: ${stderr}`)));
    child.on('error', (err) => fail(err));
  });
  return {
    url,
    async stop() {
      await stopChild(child);
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

/** The server's built-in fake OpenAI-compatible LLM (`tether fake-llm`), for the LLM bridge. */
export interface FakeLlm {
  /** Its base URL, for the server's `[llm] base_url`. */
  url: string;
  stop(): Promise<void>;
}

/** The path of the tether binary the tests run. */
function tetherBin(): string {
  const bin = process.env.TETHER_BIN ? resolve(process.env.TETHER_BIN) : resolve(pkgRoot, '../../target/debug/tether');
  if (!existsSync(bin)) {
    throw new Error(`tether binary not found at ${bin}: build it (cargo build --bin tether) or set TETHER_BIN`);
  }
  return bin;
}

/**
 * Starts `tether fake-llm` on a free port. It answers `You said: <message>.`
 * then ` t1 t2 ...`; prompts steer it with `[[tokens:N]]`, `[[tps:N]]`,
 * `[[fail:500]]` and the like (docs/ai-streaming.md).
 */
export async function startFakeLlm(): Promise<FakeLlm> {
  const child = spawn(tetherBin(), ['fake-llm', '--listen', '127.0.0.1:0'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const url = await listening(child, 'fake LLM');
  return { url, stop: () => stopChild(child) };
}

/** A server config whose LLM bridge calls `llm` with model `fake-1`. */
export function bridgeConfig(llm: FakeLlm): string {
  return `[llm]\nbase_url = "${llm.url}"\nmodel = "fake-1"\n`;
}

/** Reads `listening on http://...` from a child's stdout. */
function listening(child: ChildProcess, what: string): Promise<string> {
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise<string>((resolveUrl, reject) => {
    let out = '';
    const timer = setTimeout(() => fail(new Error(`${what} did not print "listening on" within 30 s; stdout: ${out}; stderr: ${stderr}`)), 30000);
    const fail = (err: Error) => {
      clearTimeout(timer);
      child.kill('SIGKILL');
      reject(err);
    };
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /listening on (http:\/\/[^\s]+)/.exec(out);
      if (m?.[1]) {
        clearTimeout(timer);
        resolveUrl(m[1].replace(/\/+$/, ''));
      }
    });
    child.on('exit', (code, signal) => fail(new Error(`${what} exited early (${code ?? signal}); stderr: ${stderr}`)));
    child.on('error', (err) => fail(err));
  });
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}

/** Cuts every open socket in `list` (no close handshake, like a network drop). Returns how many. */
export function dropSockets(list: WS[]): number {
  let n = 0;
  for (const ws of list) {
    if (ws.readyState === WS.OPEN || ws.readyState === WS.CONNECTING) {
      ws.terminate();
      n++;
    }
  }
  return n;
}

/** A WebSocket constructor whose sockets are recorded in `sockets`. */
export function trackingWebSocket(sockets: WS[]): WebSocketConstructor {
  return class extends WS {
    constructor(url: string, protocols?: string | string[]) {
      super(url, protocols);
      sockets.push(this);
    }
  };
}

/** A client for tests: ws-based, fast reconnects, no persistence unless given. */
export function makeClient(url: string, extra: Partial<ClientOptions> = {}): TetherClient {
  return new TetherClient({
    url,
    WebSocket: WS,
    persist: false,
    // Tests count events; roll-up would merge fragments.
    rollupMs: 0,
    reconnect: { initialDelayMs: 20, maxDelayMs: 250 },
    ...extra,
  });
}

/** Resolves after `ms`. */
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * A ws constructor whose sockets can be refused (as if the network were
 * down), frozen (inbound frames swallowed: acks never arrive) and cut.
 */
export function controllable() {
  const ctl = {
    refuse: false,
    frozen: new Set<WS>(),
    sockets: [] as WS[],
    WebSocket: undefined as unknown as WebSocketConstructor,
    /** The most recent socket. */
    get last(): WS {
      return ctl.sockets[ctl.sockets.length - 1] as WS;
    },
  };
  ctl.WebSocket = class extends WS {
    constructor(url: string, protocols?: string | string[]) {
      if (ctl.refuse) throw new Error('network is down');
      super(url, protocols);
      ctl.sockets.push(this);
      const self = this;
      // Wrap whatever onmessage the client installs so frames can be swallowed.
      let handler: ((ev: unknown) => void) | null = null;
      Object.defineProperty(this, 'onmessage', {
        configurable: true,
        get: () => handler,
        set: (h: ((ev: unknown) => void) | null) => {
          handler = h;
        },
      });
      this.on('message', (data, isBinary) => {
        if (!ctl.frozen.has(self) && handler) handler({ data: isBinary ? data : data.toString() });
      });
    }
  };
  return ctl;
}

/** Polls `cond` until true, or fails after `ms`. */
export async function waitFor(cond: () => boolean, ms = 15000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Every message of a channel from REST history, oldest first. */
export async function history(client: TetherClient, channel: string): Promise<Message[]> {
  const all: Message[] = [];
  for await (const page of client.channel(channel).history({ direction: 'forwards', limit: 1000 })) all.push(...page.messages);
  return all;
}

/** Checks that no (serial, version) pair was delivered twice and versions only grew per message. */
export function assertNoDuplicates(events: Message[]): void {
  const last = new Map<string, string>();
  for (const e of events) {
    const prev = last.get(e.serial);
    if (prev !== undefined && prev >= e.version.serial) {
      throw new Error(`event for ${e.serial} version ${e.version.serial} delivered after version ${prev}`);
    }
    last.set(e.serial, e.version.serial);
  }
}

/** Folds events from scratch, to check that what the listener saw has no gap. */
export function fold(events: Message[]): readonly Message[] {
  const v = new View();
  for (const e of events) v.apply(e);
  return v.messages();
}

export { MemoryStorage, WS };
