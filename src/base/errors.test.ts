import { describe, expect, it } from 'vitest';
import { EXIT_CODES, VisorError, isVisorError } from './errors.js';

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
});
