/**
 * Sandboxes on the 'tiny' image, through the real guest agent (issue 16 "Proof"): every
 * method, the errors, 20 commands at once, 20 pause/resume cycles, fork. Opt-in: each sandbox
 * is a restored machine (the template costs one boot on first use). VISOR_GUEST_TESTS=1.
 */
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isVisorError } from '../../src/base/errors.js';
import { createServer, type AddressInfo } from 'node:net';
import { CommandExitError, Sandbox, TimeoutError } from '../../src/sdk/index.js';

const ENABLED = process.env.VISOR_GUEST_TESTS === '1';
if (!ENABLED) console.log('test/sdk/sandbox-guest.test.ts skipped: set VISOR_GUEST_TESTS=1 to run sandboxes on the tiny image');
const T = 10 * 60_000;

describe.skipIf(!ENABLED)('Sandbox on tiny', () => {
  let sbx: Sandbox;
  beforeAll(async () => {
    sbx = await Sandbox.create({ image: 'tiny', envs: { SBX: 'sandbox-wide' } });
  }, 30 * 60_000);
  afterAll(async () => {
    await sbx?.kill();
  });

  it('runs commands: streams, exit codes, env, cwd, user', { timeout: T }, async () => {
    const seen: string[] = [];
    const r = await sbx.commands.run('echo out; echo err >&2; echo "$SBX $CMD"; pwd', { envs: { CMD: 'mine' }, cwd: '/tmp', onStdout: (d) => seen.push(d) });
    expect(r).toEqual({ exitCode: 0, stdout: 'out\nsandbox-wide mine\n/tmp\n', stderr: 'err\n' });
    expect(seen.join('')).toBe(r.stdout);
    const e = await sbx.commands.run('echo partial; exit 3').catch((x) => x);
    expect(e).toBeInstanceOf(CommandExitError);
    expect(e.result).toEqual({ exitCode: 3, stdout: 'partial\n', stderr: '' });
    expect((await sbx.commands.run('pwd')).stdout).toBe('/root\n');
    // a user from /etc/passwd (parsed by the agent itself: no NSS in a static binary)
    await sbx.files.write('/etc/passwd', 'root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/tmp:/bin/sh\n');
    expect((await sbx.commands.run('id -u; id -g; echo $HOME', { user: 'alice' })).stdout).toBe('1000\n1000\n/tmp\n');
    await expect(sbx.commands.run('true', { user: 'nobody-here' })).rejects.toSatisfy((x) => isVisorError(x, 'NotFound'));
    await expect(sbx.commands.run('true', { cwd: '/no/such/dir' })).rejects.toSatisfy((x) => isVisorError(x, 'NotFound'));
    const missing = await sbx.commands.run('/no/such/program').catch((x) => x);
    expect(missing.exitCode).toBe(127);
  });

  it('times out, kills process groups, lists, sends stdin', { timeout: T }, async () => {
    const t = await sbx.commands.run('sleep 30', { timeoutMs: 500 }).catch((x) => x);
    expect(t).toBeInstanceOf(TimeoutError);
    const bg = await sbx.commands.run('sleep 300 & sleep 301; echo never', { background: true });
    expect((await sbx.commands.list()).some((p) => p.pid === bg.pid)).toBe(true);
    expect((await sbx.commands.run('ps -o args')).stdout).toMatch(/sleep 301/);
    expect(await sbx.commands.kill(bg.pid)).toBe(true);
    const killed = await bg.wait().catch((x) => x);
    expect(killed).toBeInstanceOf(CommandExitError);
    expect(killed.result.signal).toBe(9);
    // the whole process group went: neither sleep is left (nor the timed-out one)
    expect((await sbx.commands.run('ps -o args')).stdout).not.toMatch(/sleep 30/);
    expect(await sbx.commands.kill(bg.pid)).toBe(false);
    const cat = await sbx.commands.run('cat; echo done', { background: true });
    await cat.sendStdin('hello ');
    await sbx.commands.sendStdin(cat.pid, new Uint8Array([0x77, 0x6f, 0x72, 0x6c, 0x64]));
    await cat.closeStdin();
    expect((await cat.wait()).stdout).toBe('hello worlddone\n');
  });

  it('20 commands at once: every stream gets only its own output', { timeout: T }, async () => {
    const runs = Array.from({ length: 20 }, (_, i) =>
      sbx.commands.run(`i=0; while [ $i -lt 200 ]; do echo "out-${i}-$i"; echo "err-${i}-$i" >&2; i=$((i+1)); done`),
    );
    const results = await Promise.all(runs);
    results.forEach((r, i) => {
      const want = (k: string) => Array.from({ length: 200 }, (_, j) => `${k}-${i}-${j}\n`).join('');
      expect(r.stdout).toBe(want('out'));
      expect(r.stderr).toBe(want('err'));
    });
  });

  it('a terminal: a shell on a pty, resized', { timeout: T }, async () => {
    let out = '';
    const pty = await sbx.pty.create({ cols: 80, rows: 24, onData: (d) => (out += new TextDecoder().decode(d)) });
    await sbx.pty.resize(pty.pid, { cols: 100, rows: 30 });
    await sbx.pty.sendInput(pty.pid, 'stty size; echo $((6*7)); tty; exit\n');
    const r = await pty.wait();
    expect(r.exitCode).toBe(0);
    expect(out).toMatch(/30 100\r\n/);
    expect(out).toMatch(/42\r\n/);
    expect(out).toMatch(/\/dev\/pts\/\d+/);
  });

  it('files: binary-safe write and read, list, exists, makeDir, rename, remove, watch', { timeout: T }, async () => {
    const all = Uint8Array.from({ length: 300_000 }, (_, i) => (i * 31 + (i >> 8)) & 255);
    await sbx.files.write('/root/deep/er/a.bin', all);
    expect(Buffer.from(await sbx.files.read('/root/deep/er/a.bin', { format: 'bytes' })).equals(Buffer.from(all))).toBe(true);
    expect((await sbx.commands.run('sha256sum /root/deep/er/a.bin')).stdout.slice(0, 64)).toBe((await import('node:crypto')).createHash('sha256').update(all).digest('hex'));
    await sbx.files.write('/root/s.txt', 'ünïcode\n');
    expect(await sbx.files.read('/root/s.txt')).toBe('ünïcode\n');
    async function* gen() {
      for (let i = 0; i < 5; i++) yield `line ${i}\n`;
    }
    await sbx.files.write('/root/stream.txt', gen());
    expect(await sbx.files.read('/root/stream.txt')).toBe('line 0\nline 1\nline 2\nline 3\nline 4\n');
    const list = await sbx.files.list('/root');
    expect(list.find((e) => e.name === 'deep')).toMatchObject({ type: 'dir', path: '/root/deep' });
    expect(list.find((e) => e.name === 's.txt')).toMatchObject({ type: 'file', size: Buffer.byteLength('ünïcode\n') });
    expect(await sbx.files.exists('/root/s.txt')).toBe(true);
    expect(await sbx.files.exists('/root/nope')).toBe(false);
    expect(await sbx.files.makeDir('/root/x/y')).toBe(true);
    expect(await sbx.files.makeDir('/root/x/y')).toBe(false);
    expect(await sbx.files.rename('/root/s.txt', '/root/x/y/t.txt')).toMatchObject({ path: '/root/x/y/t.txt', type: 'file' });
    await sbx.files.remove('/root/x');
    expect(await sbx.files.exists('/root/x')).toBe(false);
    await expect(sbx.files.read('/root/x/y/t.txt')).rejects.toSatisfy((x) => isVisorError(x, 'NotFound'));
    await expect(sbx.files.read('/root')).rejects.toThrow(/directory/i);
    const events: string[] = [];
    const w = await sbx.files.watchDir('/tmp', (e) => events.push(`${e.type}:${e.name}`));
    await sbx.commands.run('echo a > /tmp/watched; rm /tmp/watched');
    for (let i = 0; i < 50 && !events.includes('remove:watched'); i++) await new Promise((r) => setTimeout(r, 100));
    await w.stop();
    expect(events).toContain('create:watched');
    expect(events).toContain('remove:watched');
  });

  it('20 pause/resume cycles with writes between keep every file and process', { timeout: T }, async () => {
    const bg = await sbx.commands.run('while :; do sleep 1; done', { background: true, timeoutMs: 0 });
    for (let i = 0; i < 20; i++) {
      await sbx.files.write(`/root/cycle-${i}`, `cycle ${i}`);
      await sbx.pause();
      await expect(sbx.commands.run('true')).rejects.toSatisfy((x) => isVisorError(x, 'NotAllowed'));
      if (i % 2) await sbx.resume();
      else expect(await Sandbox.connect(sbx.sandboxId)).toBe(sbx);
    }
    expect((await sbx.commands.run('cat /root/cycle-*')).stdout).toBe(Array.from({ length: 20 }, (_, i) => `cycle ${i}`).sort().join(''));
    expect((await sbx.commands.list()).some((p) => p.pid === bg.pid)).toBe(true);
    await bg.kill();
  });

  it('forks: children continue from the instant, apart from each other', { timeout: T }, async () => {
    await sbx.files.write('/root/before-fork', 'parent');
    const bg = await sbx.commands.run('sleep 200', { background: true, timeoutMs: 0 });
    const [a, b] = await sbx.fork({ count: 2 });
    try {
      // the parent's command runs on in the child, which can list and kill it
      expect((await a!.commands.list()).some((p) => p.pid === bg.pid)).toBe(true);
      expect(await a!.commands.kill(bg.pid)).toBe(true);
      let gone = false;
      for (let i = 0; i < 50 && !gone; i++) {
        gone = !(await a!.commands.list()).some((p) => p.pid === bg.pid);
        if (!gone) await new Promise((r) => setTimeout(r, 100));
      }
      expect(gone).toBe(true);
      expect((await sbx.commands.list()).some((p) => p.pid === bg.pid)).toBe(true);
      await bg.kill();
      expect(await a!.files.read('/root/before-fork')).toBe('parent');
      await a!.files.write('/root/before-fork', 'child a');
      expect(await b!.files.read('/root/before-fork')).toBe('parent');
      expect(await sbx.files.read('/root/before-fork')).toBe('parent');
      // fresh entropy per child: their random streams differ
      const rand = (s: Sandbox) => s.commands.run('head -c 16 /dev/urandom | od -An -tx1').then((r) => r.stdout);
      expect(await rand(a!)).not.toBe(await rand(b!));
      expect(a!.sandboxId).not.toBe(b!.sandboxId);
      // each child a MAC of its own; its own network's DHCP server leases it the parent's address
      const macOf = (s: Sandbox) => s.commands.run('cat /sys/class/net/eth0/address').then((r) => r.stdout.trim());
      const macs = [await macOf(sbx), await macOf(a!), await macOf(b!)];
      expect(new Set(macs).size).toBe(3);
      expect(macs[1]).toBe(a!.machine.config.nets[0]!.mac);
      expect(macs[2]).toBe(b!.machine.config.nets[0]!.mac);
      for (const k of [a!, b!]) {
        expect((await k.commands.run('ip -4 addr show dev eth0')).stdout).toContain('inet 10.0.2.15/24');
        // a one-shot client on the new MAC (its hook configures nothing) is offered that address
        const lease = await k.commands.run('udhcpc -i eth0 -n -q -t 3 -T 1 -s /bin/true 2>&1', { timeoutMs: 30_000 });
        expect(lease.stdout).toMatch(/lease of 10\.0\.2\.15 obtained/i);
        expect(k.machine.stats().nics[0]!.nat!.dhcpReplies).toBeGreaterThanOrEqual(2); // offer and ack
        // the network answers the new address (ARP, then an echo from its DNS address)
        expect((await k.commands.run('ping -c 1 -W 10 10.0.2.3', { timeoutMs: 30_000 })).stdout).toContain('1 packets received');
      }
    } finally {
      await a?.kill();
      await b?.kill();
    }
    expect((await sbx.commands.run('echo parent-alive')).stdout).toBe('parent-alive\n');
  });

  it('forks while files and output stream both ways: each child takes the agent stream up where the snapshot cut it, the parent loses nothing', { timeout: T }, async () => {
    const total = 8_000_000;
    await sbx.commands.run(`head -c ${total} /dev/urandom > /tmp/stream.bin; sha256sum /tmp/stream.bin > /tmp/stream.sum`);
    const want = (await sbx.commands.run('cut -d" " -f1 /tmp/stream.sum')).stdout.trim();
    let got = 0;
    const h = await sbx.commands.run(`yes 0123456789abcdef | head -c ${total}`, { background: true, timeoutMs: 0, onStdout: (d) => (got += d.length) });
    const file = sbx.files.read('/tmp/stream.bin', { format: 'bytes' });
    const upload = new Uint8Array(total).map((_, i) => (i * 7919) >>> 5);
    const up = sbx.files.write('/tmp/up.bin', upload);
    const kids: Sandbox[] = [];
    try {
      for (let i = 0; i < 3; i++) {
        const seen = got;
        while (got === seen) await new Promise((r) => setTimeout(r, 5));
        const [k] = await sbx.fork();
        kids.push(k!);
        // It continued its parent's agent stream (no new connection), cut wherever it was.
        expect((k as unknown as { adopted: boolean }).adopted).toBe(true);
        expect((await k!.commands.run(`echo child ${i}`)).stdout).toBe(`child ${i}\n`);
      }
      expect((await h.wait()).exitCode).toBe(0);
      expect(got).toBe(total);
      expect(createHash('sha256').update(await file).digest('hex')).toBe(want);
      await up;
      expect((await sbx.commands.run('sha256sum /tmp/up.bin')).stdout.split(' ')[0]).toBe(createHash('sha256').update(upload).digest('hex'));
      expect((await kids[0]!.commands.run('echo again')).stdout).toBe('again\n');
    } finally {
      await Promise.all(kids.map((k) => k.kill()));
    }
  });

  it('forks of forks: each child pages in its RAM from stacked images and loses nothing', { timeout: T }, async () => {
    // Random data in the guest's page cache (tmpfs): every page a child reads comes from the
    // image layer that last held it (src/cpu/ram-pager.ts); a lost page changes the hash.
    const sum = async (s: Sandbox, f: string) => (await s.commands.run(`sha256sum ${f}`)).stdout.split(' ')[0];
    await sbx.commands.run('head -c 6000000 /dev/urandom > /tmp/one');
    const one = await sum(sbx, '/tmp/one');
    const [child] = await sbx.fork();
    const kids: Sandbox[] = [child!];
    try {
      // The parent writes on after its first fork: its second fork's image lies on the first.
      await sbx.commands.run('head -c 3000000 /dev/urandom > /tmp/two; rm /tmp/one');
      const two = await sum(sbx, '/tmp/two');
      const [second] = await sbx.fork();
      kids.push(second!);
      expect(await sum(child!, '/tmp/one')).toBe(one);
      expect((await child!.commands.run('ls /tmp/two 2>&1 || true')).stdout).toContain('No such file');
      expect(await sum(second!, '/tmp/two')).toBe(two);
      expect((await second!.commands.run('ls /tmp/one 2>&1 || true')).stdout).toContain('No such file');
      // A child's own fork: its image lies on the one the child was restored from.
      await child!.commands.run('head -c 2000000 /dev/urandom > /tmp/three');
      const three = await sum(child!, '/tmp/three');
      const [grandchild] = await child!.fork();
      kids.push(grandchild!);
      expect(await sum(grandchild!, '/tmp/one')).toBe(one);
      expect(await sum(grandchild!, '/tmp/three')).toBe(three);
      const st = grandchild!.machine.stats().ram;
      expect(st.pagedIn).toBeGreaterThan(0);
      expect(st.pending).toBeGreaterThan(0); // it copied what it read, not the parent's whole RAM
    } finally {
      await Promise.all(kids.map((k) => k.kill()));
    }
  });

  it('prewarm: a create takes a reserved sandbox and gives it its own network policy', { timeout: T }, async () => {
    let reached = 0;
    const server = createServer((s) => {
      reached++;
      s.end('HOST_REPLY\n');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const dial = `nc -w 3 10.0.2.2 ${(server.address() as AddressInfo).port} </dev/null; echo "rc=$?"`;
    try {
      await Sandbox.prewarm(1);
      const open = await Sandbox.create({ image: 'tiny', network: { denyHost: false } });
      try {
        expect(open.timings.reserved).toBe(1);
        // reserved with a policy that reaches nothing; this sandbox's own reaches the host
        expect((await open.commands.run(dial, { timeoutMs: 30_000 })).stdout).toContain('HOST_REPLY');
        expect(reached).toBe(1);
        await Sandbox.prewarm(1); // refilled
        const fenced = await Sandbox.create({ image: 'tiny' });
        try {
          expect(fenced.timings.reserved).toBe(1);
          expect((await fenced.commands.run(dial, { timeoutMs: 30_000 })).stdout).not.toContain('HOST_REPLY');
          expect(reached).toBe(1);
          const rand = (s: Sandbox) => s.commands.run('head -c 16 /dev/urandom | od -An -tx1').then((r) => r.stdout);
          expect(await rand(open)).not.toBe(await rand(fenced));
        } finally {
          await fenced.kill();
        }
      } finally {
        await open.kill();
      }
    } finally {
      await Sandbox.prewarm(0);
      server.close();
    }
  });

  it('a dead guest is a typed error, never a hang', { timeout: T }, async () => {
    const [c] = await sbx.fork();
    // settled into values at once: they reject while kill() runs, before any expect() awaits them
    const long = c!.commands.run('sleep 100', { timeoutMs: 0 }).then(() => 'finished', (e: unknown) => e);
    const files = c!.files.read('/dev/zero', { maxBytes: 2 ** 40 }).then(() => 'finished', (e: unknown) => e);
    await new Promise((r) => setTimeout(r, 200));
    await c!.kill();
    expect(isVisorError(await long, 'GuestGone')).toBe(true);
    expect(isVisorError(await files, 'GuestGone')).toBe(true);
    await expect(c!.commands.run('true')).rejects.toSatisfy((x) => isVisorError(x, 'GuestGone'));
    const [d] = await sbx.fork({ newAddress: false }); // the parent's MAC
    expect(d!.machine.config.nets[0]!.mac).toMatch(/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/);
    expect(d!.machine.config.nets[0]!.mac).toBe(sbx.machine.config.nets[0]!.mac);
    expect(d!.timings.renew).toBeUndefined();
    await d!.setTimeout(300);
    await new Promise((r) => setTimeout(r, 1500));
    expect(await d!.isRunning()).toBe(false);
    await expect(d!.commands.run('true')).rejects.toSatisfy((x) => isVisorError(x, 'GuestGone'));
  });

  it('getHost: the host fetches from a server in the guest through 127.0.0.1', { timeout: T }, async () => {
    const body = 'hello from the sandbox';
    // busybox nc answers one connection with a whole HTTP response, again and again.
    const srv = await sbx.commands.run(`while true; do printf 'HTTP/1.0 200 OK\\r\\nContent-Length: ${body.length}\\r\\n\\r\\n${body}' | nc -l -p 8080; done`, { background: true, timeoutMs: 0 });
    try {
      const host = await sbx.getHost(8080);
      expect(host).toMatch(/^127\.0\.0\.1:\d+$/);
      expect(await sbx.getHost(8080)).toBe(host); // one forward per guest port
      let text = '';
      for (let i = 0; i < 30 && text === ''; i++) {
        text = await fetch(`http://${host}/`).then((r) => r.text(), () => '');
        if (text === '') await new Promise((r) => setTimeout(r, 500)); // nc not listening yet
      }
      expect(text).toBe(body);
      await expect(sbx.getHost(0)).rejects.toSatisfy((x) => isVisorError(x, 'InvalidArgument'));
    } finally {
      await srv.kill();
    }
  });

  it('network: the host itself is denied by default (denyHost), allowed on request; bad options are refused', { timeout: T }, async () => {
    let reached = 0;
    const server = createServer((s) => {
      reached++;
      s.end('HOST_REPLY\n');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as AddressInfo).port;
    // 10.0.2.2 is the host's loopback as the guest sees it (QEMU's user-mode addresses).
    const dial = `nc -w 3 10.0.2.2 ${port} </dev/null; echo "rc=$?"`;
    const open = await Sandbox.create({ image: 'tiny', network: { denyHost: false } });
    try {
      const denied = await sbx.commands.run(dial, { timeoutMs: 30_000 });
      expect(denied.stdout).not.toContain('HOST_REPLY');
      expect(reached).toBe(0);
      const allowed = await open.commands.run(dial, { timeoutMs: 30_000 });
      expect(allowed.stdout).toContain('HOST_REPLY');
      expect(reached).toBe(1);
      const [child] = await open.fork(); // a fork keeps its parent's policy
      expect((await child!.commands.run(dial, { timeoutMs: 30_000 })).stdout).toContain('HOST_REPLY');
      await child!.kill();
      expect(reached).toBe(2);
      const fenced = await Sandbox.create({ image: 'tiny', network: { denyHost: false, denyOut: ['10.0.2.0/24'] } });
      const out = await fenced.commands.run(dial, { timeoutMs: 30_000 }).finally(() => fenced.kill());
      expect(out.stdout).not.toContain('HOST_REPLY');
      expect(reached).toBe(2);
    } finally {
      await open.kill();
      server.close();
    }
    const noSandbox = await Sandbox.create({ image: 'tiny', network: { denyOut: ['not-a-cidr'] } }).catch((x) => x);
    expect(isVisorError(noSandbox, 'InvalidArgument')).toBe(true);
  });
});
