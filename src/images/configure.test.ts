import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { configureFailure, StepClock } from './configure.js';
import { MAINTSCRIPT_HELPER_SHIM } from './root-init.js';

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
