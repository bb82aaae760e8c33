/**
 * In-guest proof of the virtio devices on the real Debian kernel (issue 5): one boot with
 * blk (raw file, read-write), a second blk (ext4 image made by the host's mkfs.ext4,
 * read-only), rng, net (to an ARP/ICMP responder on the switch), balloon and vsock, then one
 * script that checks each and prints tagged lines the host verifies. A second VM on the same
 * switch (in this process) and the first ping each other. The vsock client is a tiny static
 * program assembled here (vsock-client.ts) and carried on the ext4 disk with the script; its
 * peer is an echo server behind Firecracker's Unix-socket convention (src/host/vsock-unix.ts).
 *
 * It boots two kernels (JIT by default, VISOR_ACCEL=interp for the interpreter), minutes of
 * CPU, so it runs only with VISOR_GUEST_TESTS=1 (it pulls the Debian image first if needed).
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { NodeFileHandle } from '../../src/host/file-handle.js';
import { RawDevice } from '../../src/storage/raw.js';
import { L2Switch } from '../../src/net/switch.js';
import { stableMac } from '../../src/net/mac.js';
import { VirtioMmioTransport } from '../../src/virtio/mmio/transport.js';
import type { VirtioDevice } from '../../src/virtio/device.js';
import { VirtioBlk } from '../../src/virtio/blk/device.js';
import { VirtioRng } from '../../src/virtio/rng/device.js';
import { VirtioNet } from '../../src/virtio/net/device.js';
import { VirtioBalloon } from '../../src/virtio/balloon/device.js';
import { VirtioVsock } from '../../src/virtio/vsock/device.js';
import { nodeEntropy } from '../../src/host/virtio-entropy.js';
import { listenVsockUnix, unixVsockBackend } from '../../src/host/vsock-unix.js';
import { GuestVm, guestImage } from './guest-vm.js';
import { attachPingResponder } from './ping-responder.js';
import { buildVsockClient, buildVsockServer } from './vsock-client.js';

const enabled = process.env.VISOR_GUEST_TESTS === '1';
if (!enabled) console.log('skipping the in-guest virtio tests: set VISOR_GUEST_TESTS=1 (boots Debian on the interpreter, minutes)');

const MiB = 1 << 20;
const md5 = (b: Uint8Array) => createHash('md5').update(b).digest('hex');
const hostPattern = () => Uint8Array.from({ length: MiB }, (_, i) => (i * 131 + (i >> 12)) & 0xff);
const VSOCK_PORT = 5000;
const VSOCK_MESSAGE = 'VSOCK_ECHO hello from the guest over vsock\n';
const VSOCK_GUEST_PORT = 5002;
const VSOCK_HOST_MESSAGE = 'hello from the host to the guest\n';
/** Until `ping` answers from `ip` (at most `tries` seconds), then `ping -c 2`; prints TAG. */
const pingPeer = (ip: string, tag: string, tries = 300) =>
  `i=0; until ping -c 1 -W 1 ${ip} >/dev/null 2>&1 || [ $i -ge ${tries} ]; do i=$((i+1)); sleep 1; done; ping -c 2 -W 5 ${ip} >/dev/null && echo ${tag}`;

// The kernel command line is too short for the whole script (visor.cmd is base64), so it
// travels on the ext4 disk and the command only mounts that and runs it.
const COMMAND = ['sh', '-c', 'mkdir -p /mnt && mount -t ext4 -o ro /dev/vdb /mnt && echo EXT4_MOUNTED && sh /mnt/run.sh'];
const SCRIPT = [
  'echo "VDA_MD5 $(head -c 1048576 /dev/vda | md5sum | cut -d" " -f1)"',
  'yes VISORPATTERN | head -c 1048576 | dd of=/dev/vda bs=65536 seek=16 conv=fsync 2>/dev/null && echo VDA_WRITTEN',
  'echo "VDA_SERIAL $(cat /sys/block/vda/serial)"',
  'echo "VDB_RO $(cat /sys/block/vdb/ro)"',
  'md5sum /mnt/a.bin /mnt/dir/b.txt | sed "s/^/EXT4_SUM /"',
  'echo "RNG_CURRENT $(cat /sys/class/misc/hw_random/rng_current)"',
  'echo "RNG_WORDS $(head -c 64 /dev/hwrng | od -An -tx1 | wc -w)"',
  'ping -c 2 -W 5 10.0.9.1 >/dev/null && echo PING_OK',
  pingPeer('10.0.9.3', 'PEER_PING_OK'),
  '/mnt/vsock-client; echo "VSOCK_RC $?"',
  // The other direction: a guest listener the host connects to (CONNECT 5002 on the socket).
  '/mnt/vsock-server & srv=$!; echo VSOCK_LISTENING; wait $srv; echo "VSOCK_SERVER_RC $?"',
  'm() { awk "/^$1:/{print \\$2}" /proc/meminfo; }',
  // With DEFLATE_ON_OOM Linux keeps ballooned pages in MemTotal; MemAvailable drops.
  'before=$(m MemAvailable); echo "MEM_BEFORE $before"; echo BALLOON_GO',
  'i=0; while [ $(m MemAvailable) -gt $((before - 32768)) ] && [ $i -lt 300 ]; do sleep 1; i=$((i+1)); done',
  'echo "MEM_AFTER $(m MemAvailable)"',
].join('\n');

describe.runIf(enabled)('virtio devices in the Debian guest', () => {
  it('blk, ext4, rng, net, balloon and vsock work from inside the guest; two VMs ping each other', { timeout: 3_600_000 }, async () => {
    const img = await guestImage({ pull: true });
    if (!img) throw new Error('no debian image');
    if (spawnSync('mkfs.ext4', ['-V']).status !== 0) throw new Error('mkfs.ext4 is required (apt-get install e2fsprogs)');
    const dir = mkdtempSync(join(tmpdir(), 'visor-guest-'));
    try {
      // vda: a raw file with a known pattern in its first MiB.
      const vdaPath = join(dir, 'vda.raw');
      const pattern = hostPattern();
      writeFileSync(vdaPath, Buffer.concat([Buffer.from(pattern), Buffer.alloc(7 * MiB)]));
      const vda = await RawDevice.open(await NodeFileHandle.open(vdaPath, { readOnly: false }), { readOnly: false });
      // vdb: ext4 built on the host from a directory.
      const tree = join(dir, 'tree');
      mkdirSync(join(tree, 'dir'), { recursive: true });
      const aBin = Uint8Array.from({ length: 300_000 }, (_, i) => (i * 7) & 0xff);
      const bTxt = new TextEncoder().encode('visor ext4 from the host\n'.repeat(100));
      writeFileSync(join(tree, 'a.bin'), aBin);
      writeFileSync(join(tree, 'dir', 'b.txt'), bTxt);
      writeFileSync(join(tree, 'run.sh'), `${SCRIPT}\n`);
      writeFileSync(join(tree, 'vsock-client'), buildVsockClient({ port: VSOCK_PORT, message: VSOCK_MESSAGE }), { mode: 0o755 });
      writeFileSync(join(tree, 'vsock-server'), buildVsockServer({ port: VSOCK_GUEST_PORT }), { mode: 0o755 });
      const vdbPath = join(dir, 'vdb.ext4');
      const mk = spawnSync('mkfs.ext4', ['-q', '-F', '-d', tree, vdbPath, '16M']);
      expect(mk.status, mk.stderr.toString()).toBe(0);
      const vdb = await RawDevice.open(await NodeFileHandle.open(vdbPath, { readOnly: true }), { readOnly: true });

      const sw = new L2Switch('guest-test');
      const ping = attachPingResponder(sw, [10, 0, 9, 1]);
      const net = new VirtioNet({ mac: stableMac('guest-test') });
      net.connect(sw.attach((f) => net.receive(f)));
      const balloon = new VirtioBalloon();
      // What the guest reported while it ran: Linux 6.12 resets virtio devices when it powers
      // off (the config's `actual` then reads 0), so the value after the run says nothing.
      let actualSeen = 0;
      let inflatedSeen = 0;
      balloon.onActual = (pages) => {
        actualSeen = Math.max(actualSeen, pages);
        inflatedSeen = Math.max(inflatedSeen, balloon.inflated.size);
      };
      const rng = new VirtioRng({ source: nodeEntropy });
      // vsock: the guest's connection to CID 2 port 5000 reaches ${sock}_5000, which echoes.
      const sock = join(dir, 'vsock');
      const echoed: string[] = [];
      const echo = createServer((c) => c.on('data', (d) => {
        echoed.push(d.toString());
        c.write(d);
      }));
      await new Promise<void>((r) => echo.listen(`${sock}_${VSOCK_PORT}`, r));
      const vsock = new VirtioVsock({ guestCid: 3, backend: unixVsockBackend(sock) });
      const listener = await listenVsockUnix(vsock, sock);
      // Host → guest: once the guest says it listens, CONNECT through the socket (again if the
      // guest was not quite listening yet: it answers with a reset and the socket closes).
      let hostEcho: Promise<string> | undefined;
      const connectToGuest = async (): Promise<string> => {
        for (let attempt = 0; attempt < 60; attempt++) {
          const got = await new Promise<string | null>((res) => {
            const c = createConnection(sock);
            let buf = '';
            let open = false;
            c.on('data', (d) => {
              buf += d.toString();
              if (!open && /^OK \d+\n/.test(buf)) {
                open = true;
                buf = buf.replace(/^OK \d+\n/, '');
                c.write(VSOCK_HOST_MESSAGE);
              }
              if (open && buf.length >= VSOCK_HOST_MESSAGE.length) c.end();
            });
            c.on('close', () => res(open ? buf : null));
            c.on('error', () => {});
            c.write(`CONNECT ${VSOCK_GUEST_PORT}\n`);
          });
          if (got !== null) return got;
          await new Promise((r) => setTimeout(r, 1000));
        }
        return 'never connected';
      };
      // The peer VM: pings the first one, then idles until the host stops it.
      const peerNet = new VirtioNet({ mac: stableMac('guest-test-peer') });
      peerNet.connect(sw.attach((f) => peerNet.receive(f), 'peer'));
      const peer = await GuestVm.create(img, {
        command: ['sh', '-c', `${pingPeer('10.0.9.2', 'PEER_B_PING_OK')}; sleep 100000`],
        append: 'visor.ip=10.0.9.3/24 initcall_blacklist=jent_mod_init',
        memoryMiB: 128,
        timeoutMs: 0,
        attach: (vm) => vm.attachVirtio(0, (ctx) => new VirtioMmioTransport({ device: peerNet, ram: ctx, irq: ctx.irq, irqSource: ctx.irqSource })),
      });
      const peerRun = peer.run(3_000_000);
      let out = '';
      const g = await GuestVm.create(img, {
        command: COMMAND,
        // jitterentropy's self-test costs tens of guest seconds on the interpreter, and
        // virtio-rng feeds the pool anyway (docs/benchmarks.md, Boot).
        append: 'visor.ip=10.0.9.2/24 initcall_blacklist=jent_mod_init',
        memoryMiB: 256,
        timeoutMs: 0,
        onOutput: (t) => {
          out += t;
          // 64 MiB = 16384 pages of 4 KiB.
          if (out.includes('BALLOON_GO') && balloon.target === 0) balloon.setTarget(16384);
          if (!hostEcho && out.includes('VSOCK_LISTENING')) hostEcho = connectToGuest();
        },
        attach: (vm) => {
          const add = (slot: number, device: VirtioDevice) =>
            vm.attachVirtio(slot, (ctx) => new VirtioMmioTransport({ device, ram: ctx, irq: ctx.irq, irqSource: ctx.irqSource }));
          add(0, new VirtioBlk({ disk: vda, serial: 'visor-vda' }));
          add(1, new VirtioBlk({ disk: vdb }));
          add(2, rng);
          add(3, net);
          add(4, balloon);
          add(5, vsock);
        },
      });
      const r = await g.run(3_000_000);
      await peer.stop('done');
      const p = await peerRun;
      await new Promise((res) => echo.close(res));
      const fromGuest = await hostEcho;
      await listener.close();
      await vda.close();
      await vdb.close();
      const line = (tag: string) => new RegExp(`^${tag} (.*)$`, 'm').exec(r.output)?.[1];
      expect(r.status, r.output).toBe(0);
      expect(line('VDA_MD5')).toBe(md5(pattern));
      expect(r.output).toContain('VDA_WRITTEN');
      const disk = readFileSync(vdaPath);
      const want = Buffer.from('VISORPATTERN\n'.repeat(Math.ceil(MiB / 13))).subarray(0, MiB);
      expect(Buffer.compare(disk.subarray(MiB, 2 * MiB), want)).toBe(0);
      expect(line('VDA_SERIAL')).toBe('visor-vda');
      expect(line('VDB_RO')).toBe('1');
      expect(r.output).toContain('EXT4_MOUNTED');
      expect(r.output).toContain(`EXT4_SUM ${md5(aBin)}  /mnt/a.bin`);
      expect(r.output).toContain(`EXT4_SUM ${md5(bTxt)}  /mnt/dir/b.txt`);
      expect(line('RNG_CURRENT')).toMatch(/virtio_rng/);
      expect(line('RNG_WORDS')).toBe('64');
      expect(r.output).toContain('PING_OK');
      expect(ping.echo).toBeGreaterThanOrEqual(2);
      expect(net.counters.rxFrames).toBeGreaterThan(0);
      expect(Number(line('MEM_AFTER'))).toBeLessThanOrEqual(Number(line('MEM_BEFORE')) - 32768);
      // The script ends once MemAvailable dropped by 32 MiB, possibly before all 64 MiB went.
      expect(actualSeen).toBeGreaterThanOrEqual(8192);
      expect(actualSeen).toBeLessThanOrEqual(16384);
      expect(inflatedSeen).toBeGreaterThan(0);
      expect(r.output).toContain('PEER_PING_OK');
      expect(p.output).toContain('PEER_B_PING_OK');
      expect(line('VSOCK_RC')).toBe('0');
      expect(r.output).toContain(VSOCK_MESSAGE);
      expect(echoed.join('')).toBe(VSOCK_MESSAGE);
      expect(line('VSOCK_SERVER_RC')).toBe('0');
      expect(fromGuest).toBe(VSOCK_HOST_MESSAGE);
      expect(vsock.counters.connections).toBe(2);
      console.log(`guest run: ${(r.wallMs / 1000).toFixed(0)} s, ${(r.instructions / r.wallMs / 1000).toFixed(1)} MIPS`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
