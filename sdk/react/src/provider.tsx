/**
 * `TetherProvider`: puts one Tether client in context, either borrowed (the
 * app made it and closes it) or owned (made from options, closed on unmount).
 */

import { type ClientOptions, TetherClient } from '@tether/client';
import { type ReactNode, useEffect, useMemo, useRef, useState } from 'react';

import { TetherContext, type TetherContextValue } from './context.js';

/** Props of {@link TetherProvider}: give either `client` or `options`, not both. */
export type TetherProviderProps =
  | {
      /** A client the app created and owns: the provider only shares it and never closes it. */
      client: TetherClient;
      options?: never;
      /** The tree whose hooks use this client. */
      children?: ReactNode;
    }
  | {
      /**
       * Options to create a client with. The provider creates it in an
       * effect (so never during a server render, and never twice for one
       * mount) and closes it on unmount. Read when the provider mounts and
       * whenever `options.url` changes; to apply other changed options,
       * remount the provider (give it a new `key`).
       */
      options: ClientOptions;
      client?: never;
      /** The tree whose hooks use this client. */
      children?: ReactNode;
    };

/**
 * Shares a Tether client with the hooks below it.
 *
 * ```tsx
 * <TetherProvider options={{ url: 'https://tether.example.com', authCallback }}>
 *   <Chat />
 * </TetherProvider>
 * ```
 *
 * With `options`, the client does not exist during the server render nor
 * the first client render (hooks then return empty snapshots and
 * `useChannel` returns `null`); it is created right after mount. That is
 * what makes the provider SSR-safe: no `WebSocket`, no `sessionStorage`, no
 * listener is touched until the browser runs effects.
 */
export function TetherProvider(props: TetherProviderProps): ReactNode {
  const borrowed = props.client ?? null;
  const options = useRef(props.options);
  options.current = props.options;
  const url = props.options?.url;
  const [owned, setOwned] = useState<TetherClient | null>(null);

  useEffect(() => {
    const opts = options.current;
    if (borrowed || !opts) return undefined;
    const client = new TetherClient(opts);
    setOwned(client);
    return () => {
      client.close();
      setOwned((current) => (current === client ? null : current));
    };
  }, [borrowed, url]);

  const client = borrowed ?? owned;
  const value = useMemo<TetherContextValue>(() => ({ client }), [client]);
  return <TetherContext.Provider value={value}>{props.children}</TetherContext.Provider>;
}
