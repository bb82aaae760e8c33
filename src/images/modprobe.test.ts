import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { ModuleInfo } from './modinfo.js';
import { MODALIAS_FILE, MODDEPS_FILE, MODPROBE_SCRIPT, moduleTables } from './modprobe.js';

const mod = (name: string, depends: string[] = [], aliases: string[] = [], softdepPre: string[] = []): ModuleInfo => ({ name, depends, aliases, softdepPre });
const available = new Map([
  mod('virtio_mmio', [], ['of:N*T*Cvirtio,mmio']),
  mod('failover'),
  mod('net_failover', ['failover']),
  mod('virtio_net', ['net_failover'], ['virtio:d00000001v*']),
  mod('crc32c_generic', [], ['crypto-crc32c']),
  mod('jbd2', [], [], ['crypto-crc32c']),
  mod('ext4', ['jbd2'], ['fs-ext4', 'ext3']),
].map((m) => [m.name, m]));
const order = ['virtio_mmio', 'failover', 'net_failover', 'virtio_net', 'crc32c_generic', 'jbd2', 'ext4'];

describe('module tables', () => {
  it('maps every alias to its module, and each module to its load sequence (soft deps included)', () => {
    const t = moduleTables(order, available, new Set(['virtio']));
    expect(t.alias.split('\n')).toEqual(expect.arrayContaining(['virtio:d00000001v* virtio_net', 'fs-ext4 ext4', 'crypto-crc32c crc32c_generic']));
    expect(t.deps.split('\n')).toEqual(expect.arrayContaining([
      'virtio_net failover net_failover virtio_net',
      'ext4 crc32c_generic jbd2 ext4',
      'virtio_mmio virtio_mmio',
    ]));
  });
});

describe('the guest modprobe script (run here with the host /bin/sh)', () => {
  function guest() {
    const root = mkdtempSync(join(tmpdir(), 'visor-modprobe-'));
    const moddir = join(root, 'modules');
    const sysmod = join(root, 'sys-module');
    const bin = join(root, 'bin');
    for (const d of [moddir, sysmod, bin]) mkdirSync(d);
    const t = moduleTables(order, available, new Set());
    writeFileSync(join(moddir, MODALIAS_FILE), t.alias);
    writeFileSync(join(moddir, MODDEPS_FILE), t.deps);
    writeFileSync(join(root, 'modprobe'), MODPROBE_SCRIPT);
    const log = join(root, 'insmod.log');
    writeFileSync(log, '');
    // A fake insmod: records the module and makes it appear under /sys/module as the kernel would;
    // a module named in FAIL refuses to load.
    writeFileSync(join(bin, 'insmod'), `#!/bin/sh\nm=$(basename "$1" .ko)\n[ "$m" = "$FAIL" ] && exit 1\necho "$m" >> ${log}\nmkdir -p ${sysmod}/$m\n`);
    chmodSync(join(bin, 'insmod'), 0o755);
    const run = (args: string[], fail = '') => spawnSync('sh', [join(root, 'modprobe'), ...args], {
      encoding: 'utf8',
      env: { PATH: `${bin}:${process.env.PATH}`, VISOR_MODDIR: moddir, VISOR_SYSMODULE: sysmod, FAIL: fail },
    });
    const loaded = () => readFileSync(log, 'utf8').split('\n').filter(Boolean);
    return { run, loaded };
  }

  it('resolves a modalias (coldplug) and loads the dependencies first, once', () => {
    const g = guest();
    expect(g.run(['virtio:d00000001v00001AF4']).status).toBe(0);
    expect(g.loaded()).toEqual(['failover', 'net_failover', 'virtio_net']);
    expect(g.run(['virtio:d00000001v00001AF4']).status).toBe(0);
    expect(g.loaded()).toHaveLength(3);
  });

  it('answers the kernel (-q -- fs-ext4), and takes plain names with - or _', () => {
    const g = guest();
    expect(g.run(['-q', '--', 'fs-ext4']).status).toBe(0);
    expect(g.loaded()).toEqual(['crc32c_generic', 'jbd2', 'ext4']);
    expect(g.run(['net-failover']).status).toBe(0);
    expect(g.loaded()).toEqual(['crc32c_generic', 'jbd2', 'ext4', 'failover', 'net_failover']);
  });

  it('fails with a reason for an unknown module (silently with -q) and for a module that will not load', () => {
    const g = guest();
    const r = g.run(['nosuch']);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/modprobe: no module nosuch in this image/);
    expect(g.run(['-q', 'nosuch']).stderr).toBe('');
    const bad = g.run(['ext4'], 'jbd2');
    expect(bad.status).toBe(1);
    expect(bad.stderr).toMatch(/modprobe: cannot load jbd2 \(for ext4\)/);
    expect(g.loaded()).toEqual(['crc32c_generic']);
  });
});
