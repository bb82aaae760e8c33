import { describe, expect, it } from 'vitest';
import { parseVsockSpec } from './run.js';

describe('visor run flags', () => {
  it('--vsock PATH[,cid=N]', () => {
    expect(parseVsockSpec('/tmp/v.sock')).toEqual({ path: '/tmp/v.sock' });
    expect(parseVsockSpec('v.sock,cid=42')).toEqual({ path: 'v.sock', cid: 42 });
    expect(() => parseVsockSpec('v.sock,cid=2')).toThrow(/CID must be 3/);
    expect(() => parseVsockSpec('v.sock,port=1')).toThrow(/PATH\[,cid=N\]/);
    expect(() => parseVsockSpec('')).toThrow(/PATH/);
  });
});
