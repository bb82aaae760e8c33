import { describe, expect, it } from 'vitest';
import { fakeModule } from '../../test/images/fixtures.js';
import { moduleLoadOrder, parseModinfo, type ModuleInfo } from './modinfo.js';

const info = (name: string, depends: string[] = [], softdepPre: string[] = [], aliases: string[] = []): ModuleInfo =>
  ({ name, depends, softdepPre, aliases });

describe('modinfo', () => {
  it('reads name, depends, softdep and aliases from .modinfo', () => {
    const ko = fakeModule({ name: 'ext4', depends: 'jbd2,mbcache,crc16', softdep: 'pre: crypto-crc32c post: foo', alias: ['fs-ext4', 'ext3'], vermagic: '6.1 SMP' });
    expect(parseModinfo(ko)).toEqual({ name: 'ext4', depends: ['jbd2', 'mbcache', 'crc16'], softdepPre: ['crypto-crc32c'], aliases: ['fs-ext4', 'ext3'], vermagic: '6.1 SMP' });
  });

  it('normalises dashes and treats an empty depends= as none', () => {
    expect(parseModinfo(fakeModule({ name: 'virtio-rng', depends: '' }))).toMatchObject({ name: 'virtio_rng', depends: [] });
  });

  it('rejects non-ELF input and modules without .modinfo', () => {
    expect(() => parseModinfo(Buffer.from('not an elf at all, really not'.padEnd(80)))).toThrow(/not an ELF/);
    const noName = fakeModule({ depends: '' });
    expect(() => parseModinfo(noName)).toThrow(/no name=/);
  });

  it('orders dependencies first, resolving soft dependencies through aliases', () => {
    const avail = new Map([
      info('ext4', ['jbd2', 'mbcache', 'crc16'], ['crypto-crc32c']),
      info('jbd2', [], ['crypto-crc32c']),
      info('mbcache'), info('crc16'),
      info('crc32c_generic', [], [], ['crypto-crc32c']),
      info('virtio_net', ['net_failover']), info('net_failover', ['failover']), info('failover'),
      info('virtio_mmio', ['virtio']),
    ].map((m) => [m.name, m]));
    const { order, builtin, skippedSoftdeps } = moduleLoadOrder(['virtio_mmio', 'virtio_net', 'ext4'], avail, new Set(['virtio']));
    expect(order).toEqual(['virtio_mmio', 'failover', 'net_failover', 'virtio_net', 'crc32c_generic', 'jbd2', 'mbcache', 'crc16', 'ext4']);
    expect(builtin).toEqual(['virtio']);
    expect(skippedSoftdeps).toEqual([]);
    for (const [i, m] of order.entries()) for (const d of avail.get(m)!.depends) if (avail.has(d)) expect(order.indexOf(d)).toBeLessThan(i);
  });

  it('fails on a missing hard dependency and on a cycle, skips a missing soft one', () => {
    expect(() => moduleLoadOrder(['a'], new Map([['a', info('a', ['b'])]]))).toThrow(/'b' \(needed by a\)/);
    expect(() => moduleLoadOrder(['a'], new Map([['a', info('a', ['b'])], ['b', info('b', ['a'])]]))).toThrow(/cycle: a -> b -> a/);
    expect(moduleLoadOrder(['a'], new Map([['a', info('a', [], ['nothing'])]])).skippedSoftdeps).toEqual(['nothing']);
  });
});
