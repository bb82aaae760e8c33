/**
 * Typed errors with a closed set of codes. Nothing in visor branches on message text:
 * callers branch on `code`. One table maps each code to a CLI exit code (and later an HTTP
 * status), so every surface reports the same failure the same way.
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
  | 'DependencyError'
  | 'GuestPanic'
  | 'Internal';

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
  DependencyError: 65, // packages that cannot be installed together, or are missing
  GuestPanic: 70, // EX_SOFTWARE (the guest's software failed)
  Internal: 70,
};

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
}

export function isVisorError(err: unknown, code?: VisorErrorCode): err is VisorError {
  return err instanceof VisorError && (code === undefined || err.code === code);
}
