import { describe, expect, it } from 'vitest';
import { ConsoleOutputFilter } from './run-output-filter.js';

function run(chunks: string[], holdNewline = false) {
  const events: string[] = [];
  const f = new ConsoleOutputFilter({
    initStart: () => events.push('init'),
    bootWait: () => events.push('wait'),
    exitStatus: (s) => events.push(`exit ${s}`),
    panic: (l) => events.push(`panic ${l}`),
  }, holdNewline);
  let out = '';
  for (const c of chunks) out += Buffer.from(f.feed(Buffer.from(c, 'latin1'))).toString('latin1');
  out += Buffer.from(f.flush()).toString('latin1');
  return { out, events };
}

describe('ConsoleOutputFilter', () => {
  it('strips marker lines, split across chunks, and reports them', () => {
    const r = run(['boot\r\nVISOR_IN', 'IT_START\r\nhello\r\n\r\nVISOR_EX', 'IT=3\r\n']);
    expect(r.out).toBe('boot\r\nhello\r\n\r\n');
    expect(r.events).toEqual(['init', 'exit 3']);
  });

  it('strips the boot-wait marker and reports it, in order with the others; a look-alike passes', () => {
    const r = run(['VISOR_BOOT', '_WAIT\r\n', 'VISOR_INIT_START\r\nok\r\n']);
    expect(r).toEqual({ out: 'ok\r\n', events: ['wait', 'init'] });
    expect(run(['VISOR_BOOT_WAITING\r\n']).out).toBe('VISOR_BOOT_WAITING\r\n');
    expect(run(['say VISOR_BOOT_WAIT\r\n']).out).toBe('say VISOR_BOOT_WAIT\r\n');
  });

  it('swallows the newline before the exit marker in command mode', () => {
    expect(run(['out\r\n', '\r\nVISOR_EXIT=0\r\n'], true).out).toBe('out\r\n');
    expect(run(['no newline', '\r\nVISOR_EXIT=1\r\n'], true)).toEqual({ out: 'no newline', events: ['exit 1'] });
  });

  it('in command mode, shows nothing after the exit marker (the kernel\'s poweroff lines are not the command\'s output)', () => {
    expect(run(['Linux visor\r\n\r\nVISOR_EXIT=0\r\n[   19.06] reboot: Power down\r\n'], true)).toEqual({ out: 'Linux visor\r\n', events: ['exit 0'] });
    // Interactive mode keeps showing everything.
    expect(run(['$ \r\nVISOR_EXIT=0\r\n[   19.06] reboot: Power down\r\n']).out).toBe('$ \r\n[   19.06] reboot: Power down\r\n');
  });

  it('passes look-alikes and mid-line text through untouched, without delay', () => {
    const f = new ConsoleOutputFilter({});
    expect(Buffer.from(f.feed(Buffer.from('# '))).toString()).toBe('# ');
    expect(run(['echo VISOR_EXIT=2\r\n']).out).toBe('echo VISOR_EXIT=2\r\n');
    expect(run(['VISOR_EXIT=x\r\n', 'VISOR_INIT_STARTED\r\n']).out).toBe('VISOR_EXIT=x\r\nVISOR_INIT_STARTED\r\n');
    expect(run(['VISOR']).out).toBe('VISOR');
    const bytes = Buffer.from([0xff, 0x00, 0x1b, 0x5b, 0x41]);
    expect(Buffer.compare(Buffer.from(new ConsoleOutputFilter({}).feed(bytes)), bytes)).toBe(0);
  });

  it('reports a kernel panic line', () => {
    const r = run(['[    1.234] Kernel panic - not syncing: VFS: Unable to mount root fs\r\n']);
    expect(r.events).toEqual(['panic Kernel panic - not syncing: VFS: Unable to mount root fs']);
  });
});
