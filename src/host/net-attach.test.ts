import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { MockDriver, collect } from '../virtio/testing/driver.js';
import { VIRTIO_NET_HDR_SIZE } from '../virtio/net/device.js';
import { HostNetworks } from './net-attach.js';

describe('HostNetworks', () => {
  it('puts VMs of two processes on one switch and cleans up the socket', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'visor-netattach-'));
    try {
      // Two HostNetworks stand for two visor processes.
      const p1 = new HostNetworks({ socketDir: dir });
      const p2 = new HostNetworks({ socketDir: dir });
      const a = await p1.attach('lab', 'vm-a');
      const b = await p2.attach('lab', 'vm-b');
      const da = MockDriver.create(a.device).driver;
      const db = MockDriver.create(b.device).driver;
      da.probe(2);
      db.probe(2);
      db.add(0, [], [VIRTIO_NET_HDR_SIZE + 1514]);
      const frame = Uint8Array.from([...b.device.mac, ...a.device.mac, 0x88, 0xb5, 1, 2, 3]);
      da.add(1, [new Uint8Array(VIRTIO_NET_HDR_SIZE), frame], []);
      let got: ReturnType<typeof db.used> = [];
      for (let i = 0; i < 200 && got.length === 0; i++) {
        await new Promise((r) => setTimeout(r, 5));
        got = db.used(0);
      }
      expect(collect(got[0]!).subarray(VIRTIO_NET_HDR_SIZE)).toEqual(frame);
      expect(a.device.mac).not.toEqual(b.device.mac);
      await b.dispose();
      await a.dispose();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a private user network takes a new policy and a NIC a new MAC; a switch has no policy of its own', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'visor-netattach-'));
    try {
      const nets = new HostNetworks({ socketDir: dir, crossProcess: false });
      const nic = await nets.attachSpec({ user: null, publish: [], firewall: [], hostAccess: false }, 'vm-a');
      expect(nic.setPolicy).toBeTypeOf('function');
      nic.setPolicy!(['deny out:any:any'], true);
      expect(() => nic.setPolicy!(['deny sideways:any:any'], true)).toThrow(/firewall/);
      const mac = Uint8Array.of(0x02, 1, 2, 3, 4, 5);
      nic.setMac(mac);
      expect(nic.device.mac).toEqual(mac);
      expect(nic.device.readConfig(0, 4)).toBe(0x03020102);
      expect(nic.device.saveState().mac).toBe('02:01:02:03:04:05');
      const sw = await nets.attach('lab', 'vm-b');
      expect(sw.setPolicy).toBeUndefined();
      await sw.dispose();
      await nic.dispose();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
