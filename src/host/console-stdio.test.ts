import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { EscapeDecoder, StdioConsole } from './console-stdio.js';

function decoder() {
  const got: number[] = [];
  const log: string[] = [];
  const d = new EscapeDecoder({ input: (b) => got.push(...b), quit: () => log.push('quit'), help: () => log.push('help') });
  return { d, got, log };
}

describe('EscapeDecoder', () => {
  it('passes plain input, handles C-a h, C-a C-a and C-a x', () => {
    const { d, got, log } = decoder();
    d.feed(Buffer.from('ab\x01hc\x01\x01d'));
    expect(Buffer.from(got).toString()).toBe('abc\x01d');
    expect(log).toEqual(['help']);
    d.feed(Buffer.from('\x01'));
    d.feed(Buffer.from('xignored'));
    expect(log).toEqual(['help', 'quit']);
    expect(Buffer.from(got).toString()).toBe('abc\x01d');
  });
});

describe('EscapeDecoder C-a s', () => {
  it('asks for a snapshot when the command offers one, and drops the key otherwise', () => {
    const got: number[] = [];
    const log: string[] = [];
    const d = new EscapeDecoder({ input: (b) => got.push(...b), quit: () => {}, help: () => {}, snapshot: () => log.push('snap') });
    d.feed(Buffer.from('a\x01sb'));
    expect(log).toEqual(['snap']);
    expect(Buffer.from(got).toString()).toBe('ab');
    const plain = decoder();
    plain.d.feed(Buffer.from('a\x01sb'));
    expect(Buffer.from(plain.got).toString()).toBe('ab');
  });
});

describe('StdioConsole', () => {
  it('forwards piped input untouched and releases stdin on dispose', async () => {
    const stdin = new PassThrough();
    const stdout = new PassThrough();
    const c = new StdioConsole({ stdin, stdout, stderr: new PassThrough() });
    expect(c.isTTY).toBe(false);
    const got: number[] = [];
    c.start({ input: (b) => got.push(...b), quit: () => {} });
    stdin.write(Buffer.from('x\x01y'));
    await new Promise((r) => setImmediate(r));
    expect(Buffer.from(got).toString()).toBe('x\x01y');
    c.write(Buffer.from('out'));
    expect(stdout.read()?.toString()).toBe('out');
    c.dispose();
    expect(stdin.listenerCount('data')).toBe(0);
  });
});
