import { describe, expect, it } from 'vitest';
import { L2Switch, SwitchRegistry } from './switch.js';
import { FrameDecoder, SwitchLink, encodeFrame } from './link.js';
import { formatMac, parseMac, stableMac } from './mac.js';

const A = [2, 0, 0, 0, 0, 0xa];
const B = [2, 0, 0, 0, 0, 0xb];
const BCAST = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
const frame = (dst: number[], src: number[], tag: number) => Uint8Array.from([...dst, ...src, 0x08, 0x00, tag]);

function three() {
  const sw = new L2Switch('t');
  const got: string[] = [];
  const ports = ['a', 'b', 'c'].map((n) => sw.attach((f) => got.push(`${n}:${f[14]}`), n));
  return { sw, got, ports };
}

describe('L2Switch', () => {
  it('floods broadcast and unknown unicast, then forwards to the learned port only', () => {
    const { sw, got, ports } = three();
    ports[0]!.send(frame(BCAST, A, 1));
    expect(got).toEqual(['b:1', 'c:1']);
    got.length = 0;
    ports[0]!.send(frame(B, A, 2)); // B unknown yet: flood
    expect(got).toEqual(['b:2', 'c:2']);
    got.length = 0;
    ports[1]!.send(frame(A, B, 3)); // A learned on port a
    expect(got).toEqual(['a:3']);
    got.length = 0;
    ports[0]!.send(frame(B, A, 4)); // B learned on port b
    expect(got).toEqual(['b:4']);
    expect(sw.counters.forwarded).toBe(2);
  });

  it('drops runts and frames addressed back to their own port, and forgets detached ports', () => {
    const { sw, got, ports } = three();
    ports[0]!.send(Uint8Array.of(1, 2, 3));
    expect(sw.counters.dropped).toBe(1);
    ports[0]!.send(frame(BCAST, A, 1));
    got.length = 0;
    ports[1]!.send(frame(A, A, 2)); // claims A's address from port b: relearned there
    expect(got).toEqual([]);
    ports[1]!.detach();
    ports[2]!.send(frame(A, B, 3)); // A's entry went with port b: flood to a only
    expect(got).toEqual(['a:3']);
  });

  it('shares switches by name', () => {
    const r = new SwitchRegistry();
    expect(r.get('x')).toBe(r.get('x'));
    expect(r.get('x')).not.toBe(r.get('y'));
  });
});

describe('switch link framing', () => {
  it('reassembles frames split at any byte and stops at a bad length', () => {
    const f1 = frame(B, A, 1);
    const f2 = frame(A, B, 2);
    const bytes = new Uint8Array([...encodeFrame(f1), ...encodeFrame(f2)]);
    for (let cut = 0; cut <= bytes.length; cut++) {
      const d = new FrameDecoder();
      const out = [...d.push(bytes.subarray(0, cut)), ...d.push(bytes.subarray(cut))];
      expect(out).toEqual([f1, f2]);
    }
    const d = new FrameDecoder();
    expect(d.push(Uint8Array.of(0xff, 0xff, 0xff, 0xff, 1))).toEqual([]);
    expect(d.broken).toBe(true);
  });

  it('joins two switches into one broadcast domain', () => {
    const s1 = new L2Switch('one');
    const s2 = new L2Switch('two');
    const got: string[] = [];
    const a = s1.attach((f) => got.push(`a:${f[14]}`));
    const b = s2.attach((f) => got.push(`b:${f[14]}`));
    let l2: SwitchLink | null = null;
    const l1 = new SwitchLink(s1, { write: (d) => l2!.receive(d), close() {} });
    l2 = new SwitchLink(s2, { write: (d) => l1.receive(d), close() {} });
    a.send(frame(BCAST, A, 1));
    b.send(frame(A, B, 2));
    a.send(frame(B, A, 3));
    expect(got).toEqual(['b:1', 'a:2', 'b:3']);
  });
});

describe('stable MACs', () => {
  it('are deterministic, locally administered unicast, and differ by name', () => {
    const m = stableMac('vm1');
    expect(formatMac(m)).toBe(formatMac(stableMac('vm1')));
    expect(m[0]! & 3).toBe(2);
    expect(formatMac(stableMac('vm2'))).not.toBe(formatMac(m));
    expect(parseMac(formatMac(m))).toEqual(m);
    expect(parseMac('zz:00:00:00:00:00')).toBe(null);
  });
});
