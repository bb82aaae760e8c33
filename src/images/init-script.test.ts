import { spawnSync } from 'node:child_process';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { JSON_ARGV_AWK, encodeCommand, initScript } from './init-script.js';

// The guest runs this awk program under busybox; the host's POSIX awk checks the same
// program here (the real-image boot test runs it under busybox in QEMU).
async function argvThroughAwk(json: string): Promise<{ status: number; argv?: string[]; stderr: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'visor-awk-'));
  await writeFile(join(dir, 'p.awk'), JSON_ARGV_AWK);
  await writeFile(join(dir, 'cmd.json'), json);
  const awk = spawnSync('awk', ['-f', join(dir, 'p.awk'), join(dir, 'cmd.json')]);
  if (awk.status !== 0) return { status: awk.status ?? 1, stderr: awk.stderr.toString() };
  // Evaluate the emitted `set -- ...` line with a POSIX shell and print each argument NUL-terminated.
  const sh = spawnSync('sh', ['-c', `${awk.stdout.toString()}\nfor a in "$@"; do printf '%s\\0' "$a"; done`]);
  const out = sh.stdout.toString();
  return { status: 0, argv: out ? out.split('\0').slice(0, -1) : [], stderr: '' };
}

describe('visor.cmd argv decoding', () => {
  it.each([
    [['uname', '-a']],
    [['sh', '-c', "echo \"it's\" $HOME; exit 3"]],
    [['printf', '%s\\n', 'tab\there', 'new\nline', 'back\\slash', 'ünïcødé ✓', '/slash', '']],
    [['x', '\u0001ctl\u001f']],
    [[]],
  ])('%j survives JSON → awk → sh', async (argv) => {
    const r = await argvThroughAwk(JSON.stringify(argv));
    expect(r.stderr).toBe('');
    expect(r.argv).toEqual(argv);
  });

  it('accepts JSON escapes JSON.stringify does not emit', async () => {
    expect((await argvThroughAwk(' [ "a\\/b" , "\\u0041\\u00e9" ] ')).argv).toEqual(['a/b', 'Aé']);
  });

  it.each(['{"a":1}', '["a", 1]', '["a"', '["a"] x', '["\\q"]'])('rejects %s', async (bad) => {
    const r = await argvThroughAwk(bad);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/bad visor.cmd/);
  });

  it('encodes a command as base64 JSON', () => {
    const arg = encodeCommand(['sh', '-c', 'exit 3']);
    expect(arg).toMatch(/^visor\.cmd=[A-Za-z0-9+/=]+$/);
    expect(JSON.parse(Buffer.from(arg.slice('visor.cmd='.length), 'base64').toString())).toEqual(['sh', '-c', 'exit 3']);
  });
});

describe('init script', () => {
  const script = initScript({ kernelRelease: '6.1.0-test' });
  it('prints the start marker first and powers off at the end', () => {
    const lines = script.split('\n').filter((l) => l && !l.startsWith('#'));
    expect(lines[0]).toBe('echo VISOR_INIT_START');
    expect(script).toContain("printf '\\nVISOR_EXIT=%d\\n' \"$status\"");
    expect(script).toMatch(/poweroff -f\n/);
  });
  it('is valid POSIX shell', () => {
    const r = spawnSync('sh', ['-n'], { input: script });
    expect(r.stderr.toString()).toBe('');
    expect(r.status).toBe(0);
  });
});
