import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { configureFailure, StepClock } from './configure.js';
import {
  configureScript, DEB_SYSTEMD_HELPER_SHIM, MAINTSCRIPT_HELPER_SHIM, PY_COMPILE_STUB, PYTHON_COMPILE_OFF, PYTHON_COMPILE_ON,
} from './root-init.js';

// What dpkg prints when a postinst fails (dpkg 1.22, trixie), as the guest's console shows it.
const DPKG_FAILED = `Setting up libfoo1:riscv64 (1.0-1) ...
Setting up foo-daemon (2.1-3) ...
adduser: The group 'foo' already exists.
dpkg: error processing package foo-daemon (--configure):
 installed foo-daemon package post-installation script subprocess returned error exit status 1
dpkg: dependency problems prevent configuration of foo-tools:
 foo-tools depends on foo-daemon (= 2.1-3); however:
  Package foo-daemon is not configured yet.

dpkg: error processing package foo-tools (--configure):
 dependency problems - leaving unconfigured
Errors were encountered while processing:
 foo-daemon
 foo-tools
VISOR_CONFIGURE FAILED dpkg --configure -a
`;

describe('configureFailure', () => {
  it('names the packages whose scripts failed, why, and what to do', () => {
    const e = configureFailure(DPKG_FAILED, 'dpkg --configure -a', 1);
    expect(e.code).toBe('BadImage');
    expect(e.message).toMatch(/the maintainer script of foo-daemon, foo-tools failed/);
    expect(e.message).toMatch(/foo-daemon: installed foo-daemon package post-installation script subprocess returned error exit status 1/);
    expect(e.message).toMatch(/leave foo-daemon, foo-tools .* out of --packages/);
    expect(e.message).toMatch(/nothing was cached/);
    expect(e.message.split('Last output')[0]).not.toMatch(/libfoo1/);
  });

  it('names a failed preinst from the script\'s own step, and says when the disk filled', () => {
    const e = configureFailure('VISOR_CONFIGURE preinst bar\ncp: error writing \'/var/x\': No space left on device\nVISOR_CONFIGURE FAILED preinst:bar\n', 'preinst:bar', 1);
    expect(e.message).toMatch(/the maintainer script of bar failed \(the root filesystem is full\)/);
  });

  it('falls back to the step, or the status, when dpkg named nothing', () => {
    expect(configureFailure('x\n', 'passwd -d root', 1).message).toMatch(/the step 'passwd -d root' failed; nothing was cached; pull again/);
    expect(configureFailure('x\n', undefined, 3).message).toMatch(/exited with status 3/);
  });
});

describe('StepClock', () => {
  it('charges the time between the guest\'s lines to the step that was running', () => {
    let t = 0;
    const c = new StepClock(() => t);
    t = 2000; c.line('VISOR_CONFIGURE required');
    t = 2500; c.line('Setting up libc6:riscv64 (2.41-12) ...');
    t = 2600; c.line('some output of the script');
    t = 9500; c.line('Setting up python3.13-minimal (3.13.5-2) ...');
    t = 40_000; c.line('Processing triggers for libc-bin (2.41-12) ...');
    t = 41_000;
    expect(c.slowest(3)).toEqual([
      { step: 'python3.13-minimal', seconds: 30.5 },
      { step: 'libc6', seconds: 7 },
      { step: 'boot', seconds: 2 },
    ]);
    expect(c.slowest(10).map((s) => s.step)).toContain('triggers:libc-bin');
  });
});

describe('the dpkg-maintscript-helper shim of the configure run', () => {
  const dir = mkdtempSync(join(tmpdir(), 'visor-shim-'));
  const shim = join(dir, 'shim');
  const real = join(dir, 'real');
  writeFileSync(shim, MAINTSCRIPT_HELPER_SHIM, { mode: 0o755 });
  writeFileSync(real, '#!/bin/sh\necho "REAL $*"\n', { mode: 0o755 });
  const run = (...args: string[]) => {
    const r = spawnSync('sh', [shim, ...args], { encoding: 'utf8', env: { ...process.env, VISOR_REAL_HELPER: real } });
    return `${r.status} ${r.stdout.trim()}`;
  };

  it('skips the conffile and symlink commands on a fresh install or configure, runs everything else', () => {
    expect(run('rm_conffile', '/etc/x', '1.0~', '--', 'install')).toBe('0 ');
    expect(run('rm_conffile', '/etc/x', '1.0~', '--', 'configure', '')).toBe('0 ');
    expect(run('dir_to_symlink', '/usr/share/doc/x', 'y', '2.0', '--', 'install')).toBe('0 ');
    // An upgrade (an old version given), another action, another command: the real helper.
    expect(run('rm_conffile', '/etc/x', '1.0~', '--', 'install', '0.9')).toBe('0 REAL rm_conffile /etc/x 1.0~ -- install 0.9');
    expect(run('rm_conffile', '/etc/x', '1.0~', '--', 'upgrade', '0.9')).toBe('0 REAL rm_conffile /etc/x 1.0~ -- upgrade 0.9');
    expect(run('rm_conffile', '/etc/x', '1.0~', '--', 'abort-install')).toBe('0 REAL rm_conffile /etc/x 1.0~ -- abort-install');
    expect(run('rm_conffile', '/etc/x')).toBe('0 REAL rm_conffile /etc/x');
    expect(run('supports', 'rm_conffile')).toBe('0 REAL supports rm_conffile');
  });
});

describe('the deb-systemd-helper shim of the configure run', () => {
  const dir = mkdtempSync(join(tmpdir(), 'visor-dsh-'));
  const root = join(dir, 'root');
  const shim = join(dir, 'shim');
  const real = join(dir, 'real');
  writeFileSync(shim, DEB_SYSTEMD_HELPER_SHIM, { mode: 0o755 });
  writeFileSync(real, '#!/bin/sh\necho "REAL $*"\n', { mode: 0o755 });
  const run = (args: string[], pkg = 'apt') => {
    const r = spawnSync('sh', [shim, ...args], {
      encoding: 'utf8', env: { ...process.env, VISOR_REAL_DSH: real, DPKG_ROOT: root, DPKG_MAINTSCRIPT_PACKAGE: pkg },
    });
    return `${r.status} ${r.stdout.trim()}${r.stderr.trim() ? ` [${r.stderr.trim().replace(/\n/g, ' ')}]` : ''}`;
  };

  it('answers unmask and was-enabled itself only where the real helper\'s answer is certain', () => {
    mkdirSync(join(root, 'etc/systemd/system'), { recursive: true });
    // A fresh system: nothing masked, no state recorded.
    expect(run(['unmask', 'apt-daily.timer'])).toBe('0 ');
    expect(run(['--quiet', 'was-enabled', 'apt-daily.timer'])).toBe('0 ');
    expect(run(['was-enabled', 'a.timer', 'b.timer'])).toBe('0  [enabled enabled]');
    // Everything else, and any call from outside dpkg: the real helper.
    expect(run(['enable', 'apt-daily.timer'])).toBe('0 REAL enable apt-daily.timer');
    expect(run(['--quiet', 'enable', 'apt-daily.timer'])).toBe('0 REAL --quiet enable apt-daily.timer');
    expect(run(['unmask'])).toBe('0 REAL unmask');
    expect(run(['--user', 'unmask', 'x.service'])).toBe('0 REAL --user unmask x.service');
    expect(run(['unmask', '--user', 'x.service'])).toBe('0 REAL unmask --user x.service');
    expect(run(['unmask', 'x.service'], '')).toBe('0 REAL unmask x.service');
  });

  it('hands over to the real helper when a unit is masked or has recorded links', () => {
    symlinkSync('/dev/null', join(root, 'etc/systemd/system/masked.service'));
    expect(run(['unmask', 'masked.service'])).toBe('0 REAL unmask masked.service');
    expect(run(['unmask', 'other.service'])).toBe('0 ');
    mkdirSync(join(root, 'var/lib/systemd/deb-systemd-helper-masked'), { recursive: true });
    expect(run(['unmask', 'other.service'])).toBe('0 REAL unmask other.service');
    mkdirSync(join(root, 'var/lib/systemd/deb-systemd-helper-enabled'), { recursive: true });
    writeFileSync(join(root, 'var/lib/systemd/deb-systemd-helper-enabled/seen.timer.dsh-also'), '/etc/systemd/system/timers.target.wants/seen.timer\n');
    expect(run(['--quiet', 'was-enabled', 'seen.timer'])).toBe('0 REAL --quiet was-enabled seen.timer');
    expect(run(['--quiet', 'was-enabled', 'new.timer', 'seen.timer'])).toBe('0 REAL --quiet was-enabled new.timer seen.timer');
  });
});

/** A tool the test needs: present, or the test skips with a reason (and fails in CI). */
function need(tool: string, args: string[]): boolean {
  const ok = spawnSync(tool, args, { stdio: 'ignore' }).status === 0;
  if (!ok) {
    if (process.env.CI === 'true') throw new Error(`${tool} is needed for this test in CI`);
    console.warn(`skipping: ${tool} is not installed`);
  }
  return ok;
}

describe('python byte-compiling in the configure run', () => {
  it.runIf(need('python3', ['--version']))('the stub does nothing as a script and is the real py_compile when imported', () => {
    const dir = mkdtempSync(join(tmpdir(), 'visor-pyc-'));
    writeFileSync(join(dir, 'py_compile.py'), PY_COMPILE_STUB);
    // The real module's shape: compile() to import, and a main that compiles its arguments.
    writeFileSync(join(dir, 'py_compile.py.visor-configure'),
      'import sys\ndef compile(f):\n    return "real " + f\nif __name__ == "__main__":\n    for f in sys.argv[1:]:\n        open(f + "c", "w").write(compile(f))\n');
    mkdirSync(join(dir, 'lib'));
    writeFileSync(join(dir, 'lib/mod.py'), 'x = 1\n');
    // As python3.X's postinst runs it: nothing compiled, status 0.
    const script = spawnSync('python3', ['-E', '-S', join(dir, 'py_compile.py'), join(dir, 'lib/mod.py')], { encoding: 'utf8' });
    expect(script.status).toBe(0);
    expect(readdirSync(join(dir, 'lib'))).toEqual(['mod.py']);
    const imported = spawnSync('python3', ['-B', '-c', 'import py_compile; print(py_compile.compile("m.py"))'], { encoding: 'utf8', cwd: dir, env: { ...process.env, PYTHONPATH: dir } });
    expect(imported.stdout.trim()).toBe('real m.py');
  });

  it.runIf(need('dpkg-divert', ['--version']))('the diversion puts the stub in place and gives the real file back, with dpkg\'s diversions as before', () => {
    const root = mkdtempSync(join(tmpdir(), 'visor-divert-'));
    const lib = join(root, 'usr/lib/python3.13');
    mkdirSync(lib, { recursive: true });
    mkdirSync(join(root, 'var/lib/dpkg'), { recursive: true });
    writeFileSync(join(root, 'var/lib/dpkg/status'), '');
    const real = '"""the real py_compile"""\n';
    writeFileSync(join(lib, 'py_compile.py'), real);
    const sh = (body: string) => spawnSync('sh', ['-c', `fail() { echo "FAILED $1"; exit 1; }\n${body}`], { encoding: 'utf8', env: { ...process.env, DPKG_ROOT: root } });
    const off = sh(PYTHON_COMPILE_OFF);
    expect(off.stdout + off.stderr).toBe('');
    expect(off.status).toBe(0);
    expect(readFileSync(join(lib, 'py_compile.py'), 'utf8')).toBe(PY_COMPILE_STUB);
    expect(readFileSync(join(lib, 'py_compile.py.visor-configure'), 'utf8')).toBe(real);
    expect(readFileSync(join(root, 'var/lib/dpkg/diversions'), 'utf8')).toBe('/usr/lib/python3.13/py_compile.py\n/usr/lib/python3.13/py_compile.py.visor-configure\n:\n');
    const on = sh(PYTHON_COMPILE_ON);
    expect(on.stdout + on.stderr).toBe('');
    expect(on.status).toBe(0);
    expect(readdirSync(lib)).toEqual(['py_compile.py']);
    expect(readFileSync(join(lib, 'py_compile.py'), 'utf8')).toBe(real);
    expect(readFileSync(join(root, 'var/lib/dpkg/diversions'), 'utf8')).toBe('');
  });

  it('the configure script turns it off before any postinst, on again before the audit, then precompiles start-up', () => {
    const s = configureScript({ mirror: 'http://m/debian', suite: 'trixie', component: 'main', busybox: new Uint8Array(), order: ['python3.13'], required: [], agent: new Uint8Array() });
    const at = (x: string) => { const i = s.indexOf(x); expect(i, x).toBeGreaterThan(0); return i; };
    expect(at(PYTHON_COMPILE_OFF)).toBeLessThan(at('preinst $p'));
    expect(at('dpkg --configure -a')).toBeLessThan(at(PYTHON_COMPILE_ON));
    expect(at(PYTHON_COMPILE_ON)).toBeLessThan(at('python3 -c \'import argparse'));
    expect(at('python3 -c \'import argparse')).toBeLessThan(at('dpkg --audit'));
    expect(s).toContain('/run/visor-configure/py3compile');
    expect(spawnSync('sh', ['-n', '-c', s]).status).toBe(0);
  });
});
