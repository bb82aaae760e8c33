import { describe, expect, it } from 'vitest';
import { Syscon, type SysconEvent } from './syscon.js';

describe('Syscon', () => {
  it('reports poweroff, reboot and fail codes', () => {
    const s = new Syscon();
    const ev: SysconEvent[] = [];
    s.onEvent = (e) => ev.push(e);
    s.write(0, 4, 0x5555);
    s.write(0, 4, 0x7777);
    s.write(0, 4, (3 << 16) | 0x3333);
    s.write(0, 4, 0x1234);
    s.write(4, 4, 0x5555);
    s.write(0, 2, 0x5555);
    expect(ev).toEqual([{ kind: 'poweroff' }, { kind: 'reboot' }, { kind: 'fail', code: 3 }]);
    expect(s.read(0, 4)).toBe(0);
  });
});
