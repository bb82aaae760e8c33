import { describe, expect, it } from 'vitest';
import { ConsoleLineStamper } from './console-trace.js';

const bytes = (s: string) => Buffer.from(s, 'latin1');

describe('ConsoleLineStamper', () => {
  it('stamps each line as it completes, across chunks, with the counter read at that moment', () => {
    const lines: string[] = [];
    let t = 1.5;
    let n = 0;
    const st = new ConsoleLineStamper((l) => lines.push(l), () => t, () => `${++n} Mi`);
    st.feed(bytes('VISOR_INIT'));
    expect(lines).toEqual([]);
    t = 2.25;
    st.feed(bytes('_START\r\nab\n'));
    expect(lines).toEqual(['[   2.250 1 Mi] VISOR_INIT_START', '[   2.250 2 Mi] ab']);
    st.note('done');
    expect(lines.at(-1)).toBe('[   2.250 3 Mi] visor: done');
  });

  it('shows control characters as dots, cuts endless lines, and flushes a last partial line', () => {
    const lines: string[] = [];
    const st = new ConsoleLineStamper((l) => lines.push(l), () => 0);
    st.feed(bytes('\x1b[0mred\tok\x9b\n'));
    expect(lines).toEqual(['[   0.000] .[0mred\tok.']);
    st.feed(new Uint8Array(3000).fill(0x41));
    expect(lines.length).toBe(3);
    expect(lines[1]).toBe(`[   0.000] ${'A'.repeat(1024)}`);
    st.flush();
    expect(lines.length).toBe(4);
    expect(lines[3]).toBe(`[   0.000] ${'A'.repeat(3000 - 2048)}`);
    st.flush();
    expect(lines.length).toBe(4);
  });
});
