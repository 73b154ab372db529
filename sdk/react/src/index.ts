/**
 * @tether/react: React hooks for Tether, on the TypeScript SDK's stores.
 *
 * Put a {@link TetherProvider} at the top, then `useChannel(name)` and
 * `useMessages`, `usePresence`, `usePublish`, `useConnectionState`. Every
 * hook reads through `useSyncExternalStore`, renders empty on the server and
 * during hydration, and re-renders only when its snapshot changes.
 */

export { TetherProvider, type TetherProviderProps } from './provider.js';
export { TetherContext, type TetherContextValue, useTetherClient } from './context.js';
export { useChannel, type UseChannelOptions } from './channel.js';
export { NO_MESSAGES, useMessages } from './messages.js';
export { NO_MEMBERS, type PresenceHandle, usePresence } from './presence.js';
export { useConnectionState } from './connection.js';
export { type PublishHandle, usePublish } from './publish.js';
export { channelHolders, DETACH_GRACE_MS } from './lease.js';
