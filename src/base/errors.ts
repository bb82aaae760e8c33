/**
 * Typed errors with a closed set of codes. Nothing in visor branches on message text:
 * callers branch on `code`. Two tables map each code to a CLI exit code and to an HTTP status
 * (the daemon's API), so every surface reports the same failure the same way.
 */
export type VisorErrorCode =
  | 'InvalidConfig'
  | 'InvalidArgument'
  | 'NotFound'
  | 'NotAllowed'
  | 'ImageNotFound'
  | 'BadKernel'
  | 'BadImage'
  | 'CorruptImage'
  | 'Unsupported'
  | 'IoError'
  | 'NetworkError'
  | 'IntegrityError'
  | 'GuestPanic'
  | 'Internal'
  /** No credentials, or credentials that are not valid (a token unknown or revoked). */
  | 'Unauthorized'
  /** Valid credentials whose role does not allow the action. */
  | 'Forbidden'
  /** A name or id already taken. */
  | 'AlreadyExists'
  /** Admission control: the request would exceed a limit of the daemon or the project. */
  | 'QuotaExceeded'
  /** Too many requests (repeated authentication failures). */
  | 'RateLimited'
  /** A request body, upload or output past its bound. */
  | 'TooLarge'
  /** Waited past a deadline (an exec's timeoutMs, an operation's wait). */
  | 'Timeout';

/** Exit codes follow BSD sysexits where one fits, so scripts can tell failures apart. */
export const EXIT_CODES: Record<VisorErrorCode, number> = {
  InvalidConfig: 64, // EX_USAGE
  InvalidArgument: 64,
  NotFound: 66, // EX_NOINPUT
  NotAllowed: 77, // EX_NOPERM
  ImageNotFound: 66,
  BadKernel: 65, // EX_DATAERR
  BadImage: 65,
  CorruptImage: 65,
  Unsupported: 69, // EX_UNAVAILABLE
  IoError: 74, // EX_IOERR
  NetworkError: 69,
  IntegrityError: 65,
  GuestPanic: 70, // EX_SOFTWARE (the guest's software failed)
  Internal: 70,
  Unauthorized: 77,
  Forbidden: 77,
  AlreadyExists: 73, // EX_CANTCREAT
  QuotaExceeded: 75, // EX_TEMPFAIL: may succeed once something else is freed
  RateLimited: 75,
  TooLarge: 65,
  Timeout: 75,
};

/** HTTP statuses for the daemon's API: `{ error: { code, message } }` with this status. */
export const HTTP_STATUS: Record<VisorErrorCode, number> = {
  InvalidConfig: 400,
  InvalidArgument: 400,
  NotFound: 404,
  NotAllowed: 409, // the resource's state does not allow it (a stopped machine cannot pause)
  ImageNotFound: 404,
  BadKernel: 422,
  BadImage: 422,
  CorruptImage: 422,
  Unsupported: 501,
  IoError: 500,
  NetworkError: 502,
  IntegrityError: 500,
  GuestPanic: 500,
  Internal: 500,
  Unauthorized: 401,
  Forbidden: 403,
  AlreadyExists: 409,
  QuotaExceeded: 409,
  RateLimited: 429,
  TooLarge: 413,
  Timeout: 504,
};

export function httpStatus(code: VisorErrorCode): number {
  return HTTP_STATUS[code];
}

export class VisorError extends Error {
  readonly code: VisorErrorCode;

  constructor(code: VisorErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'VisorError';
    this.code = code;
  }

  get exitCode(): number {
    return EXIT_CODES[this.code];
  }

  get httpStatus(): number {
    return HTTP_STATUS[this.code];
  }
}

export function isVisorError(err: unknown, code?: VisorErrorCode): err is VisorError {
  return err instanceof VisorError && (code === undefined || err.code === code);
}
