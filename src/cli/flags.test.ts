import { describe, expect, it } from 'vitest';
import { isVisorError } from '../base/errors.js';
import { parseDiskSpec, parseNetSpec, parseVsockSpec } from './flags.js';

describe('visor run flags', () => {
  it('--vsock PATH[,cid=N]', () => {
    expect(parseVsockSpec('/tmp/v.sock')).toEqual({ path: '/tmp/v.sock' });
    expect(parseVsockSpec('v.sock,cid=42')).toEqual({ path: 'v.sock', cid: 42 });
    expect(() => parseVsockSpec('v.sock,cid=2')).toThrow(/CID must be 3/);
    expect(() => parseVsockSpec('v.sock,port=1')).toThrow(/PATH\[,cid=N\]/);
    expect(() => parseVsockSpec('')).toThrow(/PATH/);
  });

  it('--net switch=NAME', () => {
    expect(parseNetSpec('switch=lab')).toEqual({ switchName: 'lab' });
    expect(parseNetSpec('switch=../x')).toBe(null);
    expect(parseNetSpec('user')).toEqual({ user: null });
    expect(parseNetSpec('user=lab')).toEqual({ user: 'lab' });
    expect(parseNetSpec('user=../x')).toBe(null);
    expect(parseNetSpec('bridge=br0')).toBe(null);
  });

  it('--disk FILE[,format=raw|qcow2][,readonly]', () => {
    expect(parseDiskSpec('a.img')).toEqual({ path: 'a.img', readOnly: false });
    expect(parseDiskSpec('a.qcow2,format=qcow2,readonly')).toEqual({ path: 'a.qcow2', format: 'qcow2', readOnly: true });
    expect(parseDiskSpec('b,readonly=on')).toEqual({ path: 'b', readOnly: true });
    const bad = (spec: string) => {
      try {
        parseDiskSpec(spec);
      } catch (err) {
        return isVisorError(err) ? `${err.code}: ${err.message}` : String(err);
      }
      return 'accepted';
    };
    expect(bad(',readonly')).toMatch(/^InvalidArgument: --disk needs a file name/);
    expect(bad('a.img,format=vmdk')).toMatch(/^InvalidArgument: --disk: unknown option 'format=vmdk'/);
  });
});
