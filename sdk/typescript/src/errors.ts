/**
 * Errors: every failure the SDK reports is a {@link TetherError} carrying a
 * stable numeric `code`, so applications branch on numbers, never on text.
 */

/**
 * Stable codes. 4xxxx/5xxxx come from the server (their first three digits
 * are the HTTP status); 8xxxx are raised by the SDK itself for conditions the
 * server never sees.
 */
export const ErrorCodes = {
  BadRequest: 40000,
  UnknownFrameType: 40001,
  InvalidChannelName: 40002,
  InvalidSerial: 40003,
  AppendTypeMismatch: 40004,
  MutationNotAllowed: 40005,
  NotAttached: 40006,
  InvalidMessageId: 40007,
  InvalidParameter: 40008,
  Unauthorized: 40100,
  /** The token's `exp` passed (at connect, or on a live connection that did not renew: close 4005). */
  TokenExpired: 40101,
  Forbidden: 40300,
  MessageNotFound: 40400,
  NotFound: 40401,
  IdleTimeout: 40800,
  MessageDeleted: 40900,
  /** An append to (or status change of) a response whose `extras.stream` is terminal, e.g. after a cancel. */
  StreamEnded: 40901,
  ContinuityLost: 41000,
  /** A connection `resume` was refused (unknown, expired, wrong key, other identity); the SDK re-attaches by position. */
  ResumeFailed: 41001,
  MessageTooLarge: 41300,
  FrameTooLarge: 41301,
  TooManyChannels: 42900,
  RateLimited: 42901,
  TooSlow: 42902,
  TooManyConnections: 42903,
  TooManyMembers: 42904,
  Internal: 50000,
  StorageUnavailable: 50300,
  ShuttingDown: 50301,
  /** SDK: the client was closed before the request completed. */
  ClientClosed: 80000,
  /**
   * SDK: the connection dropped while this append/update/delete was in
   * flight, and the connection could not be resumed (so it could not be
   * re-sent exactly once); it may or may not have been applied. Read the
   * message to find out, or repair with an `update` carrying the full data.
   * When the resume succeeds (the usual case) in-flight mutations are re-sent
   * with their sequence number and applied exactly once instead.
   */
  OutcomeUnknown: 80001,
  /** SDK: the network request failed (no HTTP response). */
  NetworkError: 80002,
  /** SDK: the server replied with something the SDK cannot read. */
  ProtocolError: 80003,
  /** SDK: the operation needs the WebSocket transport (presence enter/leave, ephemeral publish over SSE). */
  Unsupported: 80004,
} as const;

/** An error with a stable `code` and a human `message` (never parse the message). */
export class TetherError extends Error {
  /** Stable numeric code, see {@link ErrorCodes}. */
  readonly code: number;
  /** HTTP status for REST failures, when there was a response. */
  readonly statusCode: number | undefined;

  constructor(code: number, message: string, statusCode?: number) {
    super(message);
    this.name = 'TetherError';
    this.code = code;
    this.statusCode = statusCode;
  }

  /** Builds from the wire shape `{code, message}`, tolerating junk. */
  static from(info: unknown, statusCode?: number): TetherError {
    const o = (info ?? {}) as { code?: unknown; message?: unknown };
    const code = typeof o.code === 'number' ? o.code : ErrorCodes.ProtocolError;
    const message = typeof o.message === 'string' ? o.message : 'unknown error';
    return new TetherError(code, message, statusCode);
  }
}
