/**
 * `visor run` end to end with tiny kernels assembled here (no Debian needed): the CLI, the
 * board, the built-in SBI, wfi idling, console input from a pipe, and exit codes.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { MAX_MEMORY_MIB } from '../../src/machine/ram-size.js';
import { Asm, CSR, X, addi, add, beq, csrr, csrs, csrw, ecall, jal, lbu, sb, wfi, andi } from '../support/riscv-asm.js';

const ROOT = resolve(__dirname, '..', '..');
const dir = mkdtempSync(join(tmpdir(), 'visor-tiny-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const SBI_EXT_SRST = 0x53525354;
const UART = 0x1000_0000;

/** A RISC-V Image (boot-image-header.rst) whose code the callback writes. */
function image(name: string, body: (a: Asm) => void): string {
  const a = new Asm(0x8020_0000);
  a.emit(jal(X.zero, 0x40));
  a.space(0x30 - a.size);
  a.ascii('RISCV\0\0\0');
  a.ascii('RSC\x05');
  a.word(0);
  body(a);
  const file = join(dir, name);
  writeFileSync(file, a.bytes());
  return file;
}

function print(a: Asm, s: string): void {
  a.li(X.t0, UART);
  for (const c of s) a.li(X.t1, c.charCodeAt(0)).emit(sb(X.t1, X.t0, 0));
}

function sbiShutdown(a: Asm, reason = 0): void {
  a.li(X.a7, SBI_EXT_SRST).li(X.a6, 0).li(X.a0, 0).li(X.a1, reason).emit(ecall());
  a.label('hang').emit(jal(X.zero, 0));
}

function visor(args: string[], input?: string): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((res, rej) => {
    const p = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e',
      `import('./src/cli/main.ts').then((m) => m.main(${JSON.stringify(args)}))`], { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (err += d));
    p.on('error', rej);
    p.on('exit', (code) => res({ code, out, err }));
    if (input !== undefined) p.stdin.end(input);
    else p.stdin.end();
  });
}

describe('visor run with a tiny kernel', () => {
  it('prints, sleeps in wfi until its timer, powers off: exit 0', async () => {
    const k = image('hello.img', (a) => {
      print(a, 'hello from S-mode\n');
      // stimecmp = time + 200 ms; STIE on; wfi returns once the timer is pending.
      a.emit(csrr(X.t2, CSR.time));
      a.li(X.t3, 2_000_000).emit(add(X.t2, X.t2, X.t3), csrw(CSR.stimecmp, X.t2));
      a.li(X.t1, 1 << 5).emit(csrs(CSR.sie, X.t1));
      a.emit(wfi());
      print(a, 'tick\n');
      sbiShutdown(a);
    });
    const t0 = performance.now();
    const r = await visor(['run', '--kernel', k, '--memory', '32']);
    expect(r.err).toBe('');
    expect(r.out).toBe('hello from S-mode\ntick\n');
    expect(r.code).toBe(0);
    expect(performance.now() - t0).toBeGreaterThan(200);
  });

  it('reads console input from a pipe', async () => {
    const k = image('echo.img', (a) => {
      a.li(X.t0, UART);
      a.label('wait').emit(lbu(X.t1, X.t0, 5), andi(X.t1, X.t1, 1)).emit(beq(X.t1, X.zero, -8));
      a.emit(lbu(X.t1, X.t0, 0), addi(X.t1, X.t1, 1), sb(X.t1, X.t0, 0));
      sbiShutdown(a);
    });
    const r = await visor(['run', '--kernel', k, '--memory', '16'], 'A');
    expect(r.out).toBe('B');
    expect(r.code).toBe(0);
  });

  it('fails with a one-line reason for a guest failure and for a file that is no kernel', async () => {
    const k = image('fail.img', (a) => sbiShutdown(a, 1));
    const r = await visor(['run', '--kernel', k, '--memory', '16']);
    expect(r.code).toBe(70);
    expect(r.err).toMatch(/^visor: the guest reported failure \(code 1\).*\n$/);
    const junk = join(dir, 'junk');
    writeFileSync(junk, Buffer.from([0x1f, 0x8b, 8, 0, 1, 2, 3, 4]));
    const j = await visor(['run', '--kernel', junk]);
    expect(j.code).toBe(65);
    expect(j.err).toMatch(/is not a RISC-V kernel: found a gzip-compressed file/);
    const m = await visor(['run', '--kernel', k, '--memory', '8']);
    expect(m.code).toBe(64);
    expect(m.err).toMatch(new RegExp(`--memory must be a number of MiB from 16 to ${MAX_MEMORY_MIB}, got '8'`));
    const big = await visor(['run', '--kernel', k, '--memory', String(MAX_MEMORY_MIB + 1)]);
    expect(big.code).toBe(64);
    expect(big.err).toMatch(new RegExp(`from 16 to ${MAX_MEMORY_MIB}, got '${MAX_MEMORY_MIB + 1}'`));
  });
});
