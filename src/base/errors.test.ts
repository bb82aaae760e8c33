import { describe, expect, it } from 'vitest';
import { EXIT_CODES, HTTP_STATUS, VisorError, isVisorError } from './errors.js';

describe('VisorError', () => {
  it('carries a code, an exit code and a cause', () => {
    const cause = new Error('root');
    const err = new VisorError('BadKernel', 'not a RISC-V kernel', { cause });
    expect(err.code).toBe('BadKernel');
    expect(err.exitCode).toBe(EXIT_CODES.BadKernel);
    expect(err.cause).toBe(cause);
    expect(isVisorError(err, 'BadKernel')).toBe(true);
    expect(isVisorError(err, 'NotFound')).toBe(false);
    expect(isVisorError(new Error('x'))).toBe(false);
  });
  it('maps every code to a non-zero exit code', () => {
    for (const code of Object.values(EXIT_CODES)) expect(code).toBeGreaterThan(0);
  });
  it('maps every code to an HTTP error status, client faults to 4xx', () => {
    expect(Object.keys(HTTP_STATUS).sort()).toEqual(Object.keys(EXIT_CODES).sort());
    for (const s of Object.values(HTTP_STATUS)) expect(s >= 400 && s < 600).toBe(true);
    for (const c of ['InvalidArgument', 'NotFound', 'Unauthorized', 'Forbidden', 'QuotaExceeded', 'RateLimited', 'TooLarge'] as const) {
      expect(new VisorError(c, 'x').httpStatus).toBeLessThan(500);
    }
  });
});
