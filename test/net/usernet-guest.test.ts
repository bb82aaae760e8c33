/**
 * User-mode networking in the busybox guest ('tiny'), through the public SDK (issue 14):
 * - one VM on a private user network: DHCP gives 10.0.2.15 with DNS 10.0.2.3; wget of a host
 *   HTTP server on 127.0.0.1 as 10.0.2.2; UDP to a host echo server and back; a host client
 *   reaches guest busybox nc through `publish` (TCP and UDP); a TCP connection stays open
 *   across pause/resume (data sent while paused arrives); and wget of the Debian mirror's
 *   dists/trixie/Release (the mirror from the host's apt configuration);
 * - two VMs (two SDK workers) on one named network: distinct leases, A reaches B's listener,
 *   and both reach the host.
 * Traffic goes to 127.0.0.1 only, except the mirror request.
 *
 * Opt-in (VISOR_GUEST_TESTS=1): boots three guests, minutes of CPU.
 */
import { createSocket } from 'node:dgram';
import { createServer as createHttpServer } from 'node:http';
import { createConnection, createServer, type AddressInfo, type Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { encodeCommand, ensureImage } from '../../src/images/index.js';
import { chooseMirror } from '../../src/images/mirror.js';
import { Machine } from '../../src/sdk/index.js';

const enabled = process.env.VISOR_GUEST_TESTS === '1';
if (!enabled) console.log('skipping the user-network guest test: set VISOR_GUEST_TESTS=1 (boots three guests, minutes)');

const freePort = () =>
  new Promise<number>((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as AddressInfo).port;
      s.close(() => resolve(p));
    });
  });

/** The image's command line with `sh -c script` for its init, as `visor run -- sh -c` makes it. */
async function appendFor(script: string): Promise<string> {
  const img = await ensureImage('tiny', { progress: false });
  return `${img.append} ${encodeCommand(['sh', '-c', script])}`;
}

const waitFor = (get: () => string, re: RegExp, ms: number, what: string) =>
  new Promise<RegExpExecArray>((resolve, reject) => {
    const end = Date.now() + ms;
    const poll = () => {
      const m = re.exec(get());
      if (m) return resolve(m);
      if (Date.now() > end) return reject(new Error(`timed out waiting for ${what}; console:\n${get().slice(-3000)}`));
      setTimeout(poll, 100);
    };
    poll();
  });

describe.runIf(enabled)('user-mode networking in the guest', () => {
  it('DHCP, DNS config, HTTP and UDP to the host, published ports, pause/resume, the Debian mirror', { timeout: 1_800_000 }, async () => {
    const cleanup: (() => unknown)[] = [];
    try {
      const http = createHttpServer((req, res) => res.end(`hello ${req.url}\n`));
      await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
      cleanup.push(() => http.close());
      const httpPort = (http.address() as AddressInfo).port;
      const echo = createSocket('udp4');
      echo.on('message', (m, r) => echo.send(Buffer.concat([Buffer.from('echo:'), m]), r.port, r.address));
      await new Promise<void>((r) => echo.bind(0, '127.0.0.1', r));
      cleanup.push(() => echo.close());
      // A server that sends in three parts: before the pause, during it, after the resume.
      let longConn: Socket | undefined;
      const long = createServer((s) => (longConn = s));
      await new Promise<void>((r) => long.listen(0, '127.0.0.1', r));
      cleanup.push(() => long.close());
      const tcpFwd = await freePort();
      const udpFwd = await freePort();
      const mirror = (await chooseMirror()).url.replace(/\/+$/, '');

      const script = [
        'ip -4 addr show eth0 | grep -o "inet [0-9./]*"',
        'grep nameserver /etc/resolv.conf',
        `echo "GET: $(wget -q -O - http://10.0.2.2:${httpPort}/from-guest)"`,
        `echo "UDP: $(echo ping | nc -u -w 2 10.0.2.2 ${echo.address().port})"`,
        'echo TCP_REPLY | nc -l -p 8080 > /tmp/tcp.txt & tcp=$!',
        'sleep 100000 | nc -u -l -p 5353 > /tmp/udp.txt & udp=$!',
        'sleep 1; echo FORWARDS_READY',
        'i=0; while { [ ! -s /tmp/tcp.txt ] || [ ! -s /tmp/udp.txt ]; } && [ $i -lt 60 ]; do sleep 1; i=$((i+1)); done',
        'echo "FWD_TCP: $(cat /tmp/tcp.txt)"; echo "FWD_UDP: $(cat /tmp/udp.txt)"',
        'kill $tcp $udp 2>/dev/null',
        `echo "LONG: $(nc 10.0.2.2 ${(long.address() as AddressInfo).port} | tr '\\n' ' ')"`,
        `echo "MIRROR: $(wget -q -O - ${mirror}/dists/trixie/Release | head -n 3 | tr '\\n' ' ')"`,
      ].join('\n');
      const vm = await Machine.create({
        name: 'usernet-guest',
        image: 'tiny',
        nets: [{ user: true, publish: [`127.0.0.1:${tcpFwd}:8080`, `127.0.0.1:${udpFwd}:5353/udp`] }],
        append: await appendFor(script),
      });
      cleanup.push(() => (vm.state === 'stopped' ? undefined : vm.kill()));
      let out = '';
      vm.console.on('data', (d: Buffer) => (out += d.toString().replace(/\r/g, '')));
      await vm.start();

      await waitFor(() => out, /FORWARDS_READY/, 900_000, 'the guest listeners');
      // TCP through -p: the host client sends, the guest's nc answers.
      const tcpReply = await new Promise<string>((resolve, reject) => {
        const c = createConnection({ host: '127.0.0.1', port: tcpFwd });
        let got = '';
        c.on('data', (d) => (got += d.toString()));
        c.on('error', reject);
        c.on('close', () => resolve(got));
        c.write('FROM_HOST_TCP\n');
        setTimeout(() => c.end(), 3000);
      });
      expect(tcpReply).toContain('TCP_REPLY');
      // UDP through -p.
      const u = createSocket('udp4');
      cleanup.push(() => u.close());
      u.send('FROM_HOST_UDP\n', udpFwd, '127.0.0.1');
      // Pause/resume with a connection open: part 2 is sent while the VM is paused.
      await waitFor(() => (longConn ? 'open' : ''), /open/, 900_000, 'the guest connection to the long server');
      longConn!.write('part1\n');
      await new Promise((r) => setTimeout(r, 1000));
      await vm.pause();
      longConn!.write('part2\n');
      await new Promise((r) => setTimeout(r, 3000));
      await vm.resume();
      longConn!.end('part3\n');
      await waitFor(() => out, /MIRROR: .*\n/, 900_000, 'the end of the script');
      await vm.stop({ timeoutMs: 60_000 }).catch(() => vm.kill());

      expect(out).toContain('inet 10.0.2.15/24');
      expect(out).toContain('nameserver 10.0.2.3');
      expect(out).toContain('GET: hello /from-guest');
      expect(out).toContain('UDP: echo:ping');
      expect(out).toContain('FWD_TCP: FROM_HOST_TCP');
      expect(out).toContain('FWD_UDP: FROM_HOST_UDP');
      expect(out).toMatch(/LONG: part1 part2 part3/);
      expect(out).toMatch(/MIRROR: .*(Origin: Debian|Label: Debian)/);
    } finally {
      for (const f of cleanup.reverse()) await f();
    }
  });

  it('two VMs on one named network: distinct leases, each reaches the other and the host', { timeout: 1_800_000 }, async () => {
    const http = createHttpServer((req, res) => res.end(`hi ${req.url}\n`));
    await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
    const port = (http.address() as AddressInfo).port;
    const name = `lab${process.pid}`;
    const vms: Machine[] = [];
    try {
      // Each learns the other's address from its own lease: the first to ask DHCP gets .15.
      const cmd = (who: string) => [
        'me=$(ip -4 addr show eth0 | grep -o "inet [0-9.]*" | cut -d" " -f2)',
        'if [ "$me" = 10.0.2.15 ]; then peer=10.0.2.16; else peer=10.0.2.15; fi',
        `echo "${who}_ADDR $me"`,
        `echo "${who}_GET $(wget -q -O - http://10.0.2.2:${port}/${who})"`,
        `echo FROM_${who} | nc -l -p 7000 > /dev/null & l=$!`,
        // Try until the peer's listener is up.
        `i=0; until r=$(nc $peer 7000 </dev/null 2>/dev/null) && [ -n "$r" ]; do i=$((i+1)); [ $i -gt 120 ] && break; sleep 1; done; echo "${who}_HEARD $r"`,
        'wait $l',
      ].join('\n');
      const outs = ['', ''];
      for (const [i, who] of ['A', 'B'].entries()) {
        const vm = await Machine.create({ name: `usernet-${who}`, image: 'tiny', nets: [{ user: name }], append: await appendFor(cmd(who)) });
        vms.push(vm);
        vm.console.on('data', (d: Buffer) => (outs[i] += d.toString().replace(/\r/g, '')));
      }
      for (const vm of vms) await vm.start();
      const a = await waitFor(() => outs[0]!, /A_HEARD (\S*)/, 1_500_000, 'A to hear B');
      const b = await waitFor(() => outs[1]!, /B_HEARD (\S*)/, 1_500_000, 'B to hear A');
      expect(a[1]).toBe('FROM_B');
      expect(b[1]).toBe('FROM_A');
      const addrA = /A_ADDR (\S+)/.exec(outs[0]!)?.[1];
      const addrB = /B_ADDR (\S+)/.exec(outs[1]!)?.[1];
      expect(new Set([addrA, addrB])).toEqual(new Set(['10.0.2.15', '10.0.2.16']));
      expect(outs[0]).toContain('A_GET hi /A');
      expect(outs[1]).toContain('B_GET hi /B');
    } finally {
      for (const vm of vms) if (vm.state !== 'stopped') await vm.kill();
      http.close();
    }
  });
});
