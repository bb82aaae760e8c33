/**
 * The Machine API end to end on worker threads, with tiny assembled guests: every lifecycle
 * transition on a live machine, snapshots at random points that continue exactly, several
 * machines at once, and no handle left behind.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { isVisorError, Machine, type MachineState } from '../../src/sdk/index.js';
import { counterGuest, echoGuest, panicGuest, panicRebootGuest, rebootGuest, spinGuest } from './guest.js';
import { collect, settle, waitFor } from './support.js';

const dir = mkdtempSync(join(tmpdir(), 'visor-sdk-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, bytes: Uint8Array): string {
  const p = join(dir, name);
  writeFileSync(p, bytes);
  return p;
}

const counter = file('counter.img', counterGuest({ ticks: 30, work: 300, sleepTicks: 20_000, printTime: true }));
const spin = file('spin.img', spinGuest());
const echo = file('echo.img', echoGuest());

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    if (isVisorError(err)) return `${err.code}: ${err.message}`;
    throw err;
  }
  return 'ok';
}

describe('Machine lifecycle', () => {
  it('allows exactly the table\'s transitions on a live machine, naming the state otherwise', async () => {
    const vm = await Machine.create({ kernel: spin, memoryMiB: 16, rng: false });
    const states: MachineState[] = [];
    vm.on('state', (s) => states.push(s));
    expect(vm.state).toBe('created');
    expect(await code(vm.pause())).toMatch(/^NotAllowed: cannot pause a machine that is created/);
    expect(await code(vm.resume())).toMatch(/^NotAllowed: .*is created/);
    expect(await code(vm.snapshot(join(dir, 'x.snap')))).toMatch(/^NotAllowed: .*is created/);
    await vm.start();
    expect(vm.state).toBe('running');
    expect(await code(vm.start())).toMatch(/^NotAllowed: cannot start a machine that is running/);
    expect(await code(vm.resume())).toMatch(/^NotAllowed: .*is running/);
    await vm.pause();
    expect(vm.state).toBe('paused');
    const at = vm.stats().instructions;
    await new Promise((r) => setTimeout(r, 50));
    expect(vm.stats().instructions).toBe(at); // paused means not running
    expect(await code(vm.pause())).toMatch(/^NotAllowed: .*is paused/);
    expect(await code(vm.start())).toMatch(/^NotAllowed: .*is paused/);
    expect((await vm.snapshot(join(dir, 'paused.snap'))).bytes).toBeGreaterThan(100);
    expect(vm.state).toBe('paused');
    await vm.resume();
    await waitFor(() => vm.stats().instructions > at + 100_000);
    const s = await vm.snapshot(join(dir, 'running.snap'));
    expect(s.presentPages).toBeGreaterThan(0);
    expect(s.presentPages).toBeLessThan(s.ramPages);
    expect(vm.state).toBe('running');
    await vm.stop();
    expect(vm.state).toBe('stopped');
    for (const p of [vm.start(), vm.pause(), vm.resume(), vm.snapshot(join(dir, 'y.snap'))]) {
      expect(await code(p)).toMatch(/^NotAllowed: .*is stopped/);
    }
    // Stopping what is stopped is done already (issue 20: `finally { await vm.kill() }`).
    expect(await code(vm.stop())).toBe('ok');
    expect(await code(vm.kill())).toBe('ok');
    expect(states).toEqual(['running', 'paused', 'running', 'stopped']);
  });

  it('stops from created and kills from running; the guest powering off stops it', async () => {
    const a = await Machine.create({ kernel: spin, memoryMiB: 16, rng: false });
    await a.stop();
    expect(a.state).toBe('stopped');
    const b = await Machine.create({ kernel: spin, memoryMiB: 16, rng: false });
    await b.start();
    await b.kill();
    expect(b.state).toBe('stopped');
    const c = await Machine.create({ kernel: counter, memoryMiB: 16, deterministic: true });
    const events: string[] = [];
    c.on('guest', (e) => events.push(e.kind));
    const reasons: (string | undefined)[] = [];
    c.on('state', (_s, r) => reasons.push(r));
    const out = collect(c);
    await c.start();
    await c.whenStopped();
    expect(c.state).toBe('stopped');
    expect(events).toEqual(['poweroff']);
    expect(reasons).toEqual([undefined, 'poweroff']);
    expect(out.text()).toMatch(/done\n$/);
    const st = c.stats();
    expect(st.instructions).toBeGreaterThan(10_000);
    expect(st.io.consoleOutBytes).toBe(out.text().length);
    expect(st.interrupts).toEqual({});
  });

  it('carries console input to the guest and its output back', async () => {
    const vm = await Machine.create({ kernel: echo, memoryMiB: 16, rng: false });
    const out = collect(vm);
    await vm.start();
    await waitFor(() => out.text().includes('echo ready\n'));
    vm.console.write('HAL');
    await waitFor(() => out.text().endsWith('IBM'));
    await waitFor(() => vm.stats().io.consoleInBytes === 3);
    await vm.stop();
  });
});

describe('runUntil', () => {
  it('pauses where the guest printed a marker, at the same instruction on every run', async () => {
    const counts: number[] = [];
    for (let i = 0; i < 2; i++) {
      const vm = await Machine.create({ kernel: counter, memoryMiB: 16, deterministic: true });
      const out = collect(vm);
      await vm.runUntil({ output: '0000000000000007 ' });
      expect(vm.state).toBe('paused');
      await settle();
      expect(out.text()).toContain('0000000000000007 ');
      expect(out.text()).not.toContain('0000000000000009 ');
      counts.push(vm.stats().instructions);
      // From paused, to an instruction count (the end of a batch: at most 20 000 more); then from running.
      const at = vm.stats().instructions;
      await vm.runUntil({ instructions: at + 50_000 });
      expect(vm.stats().instructions).toBeGreaterThanOrEqual(at + 50_000);
      expect(vm.stats().instructions).toBeLessThanOrEqual(at + 70_000);
      await vm.kill();
    }
    expect(counts[1]).toBe(counts[0]);
    // From running (a guest that never ends): pauses once the count is passed.
    const s = await Machine.create({ kernel: spin, memoryMiB: 16, rng: false });
    await s.start();
    await s.runUntil({ instructions: 3_000_000 });
    expect(s.state).toBe('paused');
    expect(s.stats().instructions).toBeGreaterThanOrEqual(3_000_000);
    await s.kill();
  });

  it('refuses when the guest ends, or the machine is paused, before the point', async () => {
    const a = await Machine.create({ kernel: counter, memoryMiB: 16, deterministic: true });
    expect(await code(a.runUntil({ output: 'never printed' }))).toMatch(/^NotAllowed: runUntil: the machine stopped before the guest printed "never printed"/);
    await a.whenStopped();
    const b = await Machine.create({ kernel: spin, memoryMiB: 16, rng: false });
    const pending = code(b.runUntil({ output: 'x' }));
    await waitFor(() => b.stats().instructions > 0);
    await b.pause();
    expect(await pending).toMatch(/^NotAllowed: runUntil: the machine was paused before/);
    expect(await code(b.runUntil({}))).toMatch(/^InvalidArgument: /);
    expect(await code(b.runUntil({ instructions: -1 }))).toMatch(/^InvalidArgument: /);
    await b.stop();
    expect(await code(b.runUntil({ instructions: 1 }))).toMatch(/^NotAllowed: .*is stopped/);
  });
});

describe('stop', () => {
  it('says why it stopped by force: not running, asked not to ask, or no agent listening', async () => {
    const created = await Machine.create({ kernel: spin, memoryMiB: 16, rng: false, agent: true });
    expect(created.agentListening).toBe(false);
    expect(await created.stop()).toEqual({ graceful: false, forced: 'not-running' });

    const paused = await Machine.create({ kernel: spin, memoryMiB: 16, rng: false, agent: true });
    await paused.start();
    await paused.pause();
    expect(await paused.stop()).toEqual({ graceful: false, forced: 'not-running' });

    const asked = await Machine.create({ kernel: spin, memoryMiB: 16, rng: false, agent: true });
    await asked.start();
    expect(await asked.stop({ graceful: false })).toEqual({ graceful: false, forced: 'requested' });

    // No virtio-console at all (a kernel of your own, agent not asked for): nobody to wait for.
    const bare = await Machine.create({ kernel: spin, memoryMiB: 16, rng: false });
    await bare.start();
    let t = Date.now();
    expect(await bare.stop({ timeoutMs: 5000 })).toEqual({ graceful: false, forced: 'no-agent' });
    expect(Date.now() - t).toBeLessThan(4000);

    // The agent port exists but this guest never opens it: stop waits the timeout for an
    // agent (a guest may still be booting), then stops by force and says so.
    const mute = await Machine.create({ kernel: spin, memoryMiB: 16, rng: false, agent: true });
    await mute.start();
    t = Date.now();
    expect(await mute.stop({ timeoutMs: 400 })).toEqual({ graceful: false, forced: 'no-agent' });
    expect(Date.now() - t).toBeGreaterThanOrEqual(390);
    expect(mute.state).toBe('stopped');
  });

  it('a machine with the virtio-console snapshots and restores exactly', async () => {
    const guest = file('agent-counter.img', counterGuest({ ticks: 12, work: 2000, sleepTicks: 10_000, printTime: true }));
    const config = { kernel: guest, memoryMiB: 16, deterministic: true, agent: true, console: 'virtio' as const };
    const ref = await Machine.create(config);
    const refOut = collect(ref);
    await ref.start();
    await ref.whenStopped();
    const a = await Machine.create(config);
    const aOut = collect(a);
    await a.runUntil({ output: '0000000000000004 ' });
    await settle();
    const path = join(dir, 'agent.snap');
    const zpath = join(dir, 'agent-zlib.snap');
    // The same paused state both ways: stored RAM (the default: read straight into guest RAM) and zlib.
    const stored = await a.snapshot(path);
    const zlib = await a.snapshot(zpath, { compress: true });
    expect(zlib.bytes).toBeLessThan(stored.bytes);
    await a.kill();
    for (const p of [path, zpath]) {
      const b = await Machine.restore(p);
      expect(b.config).toMatchObject({ agent: true, console: 'virtio' });
      const bOut = collect(b);
      await b.whenStopped();
      expect(aOut.text() + bOut.text(), p).toBe(refOut.text());
    }
  });
});

describe('guest events', () => {
  it('a kernel panic is reported and stops the machine; a reboot rebuilds the board and goes on', async () => {
    const p = await Machine.create({ kernel: file('panic.img', panicGuest()), memoryMiB: 16, rng: false });
    const events: string[] = [];
    p.on('guest', (e) => events.push(e.kind === 'panic' ? `panic: ${e.line}` : e.kind));
    const reasons: (string | undefined)[] = [];
    p.on('state', (_s, r) => reasons.push(r));
    await p.start();
    await p.whenStopped();
    expect(events).toEqual(['panic: Kernel panic - not syncing: VFS: Unable to mount root fs']);
    expect(reasons).toEqual([undefined, 'panic']);

    const r = await Machine.create({ kernel: file('reboot.img', rebootGuest()), memoryMiB: 16, rng: false });
    const out = collect(r);
    let reboots = 0;
    r.on('guest', (e) => e.kind === 'reboot' && reboots++);
    await r.start();
    await waitFor(() => reboots >= 3);
    expect(r.state).toBe('running');
    await r.stop();
    expect(out.text().startsWith('boot\nboot\nboot\n')).toBe(true);
  });
});

describe('rough edges (issue 20)', () => {
  it('a panic followed at once by a reboot (panic=-1) is a panic, with no reboot event first', async () => {
    const p = await Machine.create({ kernel: file('panic-reboot.img', panicRebootGuest()), memoryMiB: 16, rng: false });
    const events: string[] = [];
    p.on('guest', (e) => events.push(e.kind));
    const reasons: (string | undefined)[] = [];
    p.on('state', (_s, r) => reasons.push(r));
    await p.start();
    await p.whenStopped();
    expect(events).toEqual(['panic']);
    expect(reasons).toEqual([undefined, 'panic']);
  });

  it('stop() and kill() on a stopped machine resolve; restore() without a path is a clear error', async () => {
    const vm = await Machine.create({ kernel: spin, memoryMiB: 16, rng: false });
    await vm.start();
    await vm.kill();
    await vm.kill();
    expect(await vm.stop()).toEqual({ graceful: false, forced: 'not-running' });
    expect(await code(Machine.restore(undefined as unknown as string))).toMatch(/^InvalidArgument: Machine.restore: give the snapshot file's path/);
  });

  it('runUntil finds output printed just before the call, and gives up after timeoutMs', async () => {
    // A counter that runs long: the 30-tick one ends ~10 ms after it starts, before a pause can reach it.
    const long = file('counter-long.img', counterGuest({ ticks: 100_000, work: 300, sleepTicks: 20_000, printTime: true }));
    const vm = await Machine.create({ kernel: long, memoryMiB: 16, deterministic: true });
    const out = collect(vm);
    await vm.start();
    await waitFor(() => out.text().includes('0000000000000002 '));
    await vm.pause();
    await vm.runUntil({ output: '0000000000000002 ', timeoutMs: 5000 }); // printed already: met at once
    expect(vm.state).toBe('paused');
    await vm.kill();
    const s = await Machine.create({ kernel: spin, memoryMiB: 16, rng: false });
    expect(await code(s.runUntil({ output: 'never printed', timeoutMs: 300 }))).toMatch(/^Timeout: runUntil: 300 ms passed/);
    expect(s.state).toBe('paused');
    await s.kill();
  });
});

describe('snapshots', () => {
  it('a deterministic guest snapshotted at random points continues exactly (restored on a fresh worker)', async () => {
    const long = file('long.img', counterGuest({ ticks: 30, work: 30_000, sleepTicks: 20_000, printTime: true }));
    const ref = await Machine.create({ kernel: long, memoryMiB: 16, deterministic: true });
    const refOut = collect(ref);
    await ref.start();
    await ref.whenStopped();
    const want = refOut.text();
    expect(want).toMatch(/^counter guest\n(?:[0-9a-f]{16} [0-9a-f]{16} [0-9a-f]{16}\n){30}done\n$/);
    const total = ref.stats().instructions;

    let seed = Number(process.env.VISOR_TEST_SEED ?? Date.now() % 100_000);
    console.log(`snapshot points from seed ${seed} (VISOR_TEST_SEED)`);
    for (let round = 0; round < 3; round++) {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      const target = Math.floor(total * (0.1 + 0.8 * (seed / 2 ** 31)));
      const a = await Machine.create({ kernel: long, memoryMiB: 16, deterministic: true });
      const aOut = collect(a);
      // Paused at the first batch boundary past the target, however fast the hart runs.
      await a.runUntil({ instructions: target });
      expect(a.state).toBe('paused');
      expect(a.stats().instructions).toBeGreaterThanOrEqual(target);
      expect(a.stats().instructions).toBeLessThan(target + 20_000);
      await settle();
      const before = aOut.text();
      const path = join(dir, `round${round}.snap`);
      await a.snapshot(path);
      await a.kill();
      const b = await Machine.restore(path);
      const bOut = collect(b);
      await b.whenStopped();
      expect(before + bOut.text(), `seed ${seed}, snapshot at ${target}`).toBe(want);
      expect(b.stats().instructions).toBe(total);
    }
    // VISOR_ACCEL picks the tier in the workers: prove the one asked for ran the guest.
    if (process.env.VISOR_ACCEL === 'jit') expect(ref.stats().jit.instructions).toBeGreaterThan(total / 2);
    else if (process.env.VISOR_ACCEL === 'interp') expect(ref.stats().jit.instructions).toBe(0);
    expect(ref.stats().accel).toBe(process.env.VISOR_ACCEL || ref.stats().accel);
  });

  it('restores a host-clock guest that was running when snapshotted', async () => {
    // Lines forever (10 ms of guest time apart), so however fast or slow the hart is, the
    // snapshot is taken while the guest runs; line n's text depends only on n.
    const guest = file('slow.img', counterGuest({ ticks: 0, work: 100, sleepTicks: 100_000 }));
    const a = await Machine.create({ kernel: guest, memoryMiB: 16, rng: false });
    const aOut = collect(a);
    await a.start();
    await waitFor(() => aOut.text().split('\n').length > 3);
    const printed = aOut.text().length;
    const path = join(dir, 'live.snap');
    await a.snapshot(path); // while running: it goes on
    expect(a.state).toBe('running');
    const b = await Machine.restore(path);
    const bOut = collect(b);
    await waitFor(() => bOut.text().split('\n').length > 3);
    await b.kill();
    await settle();
    // The restored guest goes on from the snapshotted one's counter and hash (and UART state):
    // what it printed is exactly what the original printed after the snapshot point (which may
    // fall inside a line), and that point comes after what the original had printed before.
    const after = bOut.text();
    await waitFor(() => aOut.text().includes(after));
    await a.kill();
    expect(aOut.text().indexOf(after)).toBeGreaterThanOrEqual(printed);
  });
});

describe('prewarmed workers', () => {
  it('create and restore take a warm worker and behave the same', async () => {
    Machine.prewarm(2);
    const a = await Machine.create({ kernel: counter, memoryMiB: 16, deterministic: true });
    const out = collect(a);
    await a.start();
    await a.whenStopped();
    expect(out.text()).toMatch(/done\n$/);
    const b = await Machine.create({ kernel: spin, memoryMiB: 16, rng: false });
    await b.start();
    await waitFor(() => b.stats().instructions > 0);
    const path = join(dir, 'warm.snap');
    await b.snapshot(path);
    await b.stop();
    Machine.prewarm(1);
    const r = await Machine.restore(path);
    await waitFor(() => r.stats().instructions > 0);
    await r.kill();
    expect(await code(Machine.restore(join(dir, 'missing.snap')))).toMatch(/^NotFound/);
    // That restore's worker is terminated in the background: let it go before the handle tests.
    await waitFor(() => !process.getActiveResourcesInfo().includes('MessagePort'), 5000).catch(() => {});
    await settle();
  });
});

describe('network devices', () => {
  it('a machine with a NIC on a host switch snapshots, restores and stops cleanly', async () => {
    const sw = `sdk-test-${process.pid}`;
    // A worker writing to stderr makes this thread open its stderr stream (once, for good).
    void process.stdout.fd;
    void process.stderr.fd;
    const before = process.getActiveResourcesInfo().filter((r) => r !== 'Timeout').sort();
    const a = await Machine.create({ name: 'nic-a', kernel: spin, memoryMiB: 16, rng: false, nets: [{ switch: sw }] });
    const b = await Machine.create({ name: 'nic-b', kernel: spin, memoryMiB: 16, rng: false, nets: [{ switch: sw }] });
    await a.start();
    await b.start();
    const path = join(dir, 'nic.snap');
    await a.snapshot(path);
    await a.stop();
    const r = await Machine.restore(path);
    expect(r.config.nets).toEqual([{ switch: sw, mac: expect.stringMatching(/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/) }]);
    await waitFor(() => r.stats().instructions > 0);
    await r.stop();
    await b.stop();
    await settle();
    for (let i = 0; i < 100 && process.getActiveResourcesInfo().filter((x) => x !== 'Timeout').length > before.length; i++) await new Promise((res) => setTimeout(res, 20));
    expect(process.getActiveResourcesInfo().filter((x) => x !== 'Timeout').sort()).toEqual(before);
  });
});

describe('restored NIC addresses and network policy', () => {
  it('a restore takes new MACs (kept by its own snapshots) and a private network takes a new policy', async () => {
    const a = await Machine.create({ name: 'mac-a', kernel: spin, memoryMiB: 16, rng: false, nets: [{ user: true }] });
    await a.start();
    const path = join(dir, 'mac.snap');
    await a.snapshot(path);
    const old = a.config.nets[0]!.mac!;
    await a.stop();
    expect(await code(Machine.restore(path, { macs: ['03:00:00:00:00:01'] }))).toMatch(/^InvalidArgument: macs: .* not a unicast MAC/);
    expect(await code(Machine.restore(path, { macs: ['02:00:00:00:00:01', '02:00:00:00:00:02'] }))).toMatch(/^InvalidArgument: restore: 2 MAC addresses for 1 NICs/);
    const b = await Machine.restore(path, { macs: ['02:AA:00:00:00:01'] });
    expect(b.config.nets[0]!.mac).toBe('02:aa:00:00:00:01');
    expect(old).not.toBe('02:aa:00:00:00:01');
    await b.setNetPolicy({ firewall: ['deny out:any:any'], hostAccess: false });
    expect(await code(b.setNetPolicy({ firewall: ['sideways'] }))).toMatch(/^InvalidConfig: netPolicy: firewall/);
    const again = join(dir, 'mac2.snap');
    await b.snapshot(again);
    await b.stop();
    // The NIC's saved state names the new address: its snapshot restores (the check would refuse a mismatch).
    const c = await Machine.restore(again);
    expect(c.config.nets[0]!.mac).toBe('02:aa:00:00:00:01');
    await waitFor(() => c.stats().instructions > 0);
    await c.stop();
    const sw = await Machine.create({ name: 'mac-sw', kernel: spin, memoryMiB: 16, rng: false, nets: [{ switch: `sdk-pol-${process.pid}` }] });
    expect(await code(sw.setNetPolicy({ hostAccess: false }))).toMatch(/^NotAllowed: a network policy needs a private user network/);
    await sw.stop();
  });
});

describe('several machines', () => {
  it('run side by side, each on its own worker; one crashing leaves the others running', async () => {
    const vms = await Promise.all([0, 1, 2].map(() => Machine.create({ kernel: spin, memoryMiB: 16, rng: false })));
    await Promise.all(vms.map((v) => v.start()));
    await waitFor(() => vms.every((v) => v.stats().instructions > 50_000));
    const crashed: string[] = [];
    vms[0]!.on('state', (s, r) => crashed.push(`${s} ${r}`));
    // Simulate a crash of one machine's thread.
    await (vms[0] as unknown as { worker: { terminate(): Promise<number> } }).worker.terminate();
    await vms[0]!.whenStopped();
    expect(crashed).toEqual(['stopped crashed']);
    const n1 = vms[1]!.stats().instructions;
    const n2 = vms[2]!.stats().instructions;
    await waitFor(() => vms[1]!.stats().instructions > n1 + 50_000 && vms[2]!.stats().instructions > n2 + 50_000);
    expect(vms.map((v) => v.state)).toEqual(['stopped', 'running', 'running']);
    await Promise.all(vms.slice(1).map((v) => v.stop()));
  });

  it('leave no handle open once stopped', async () => {
    void process.stdout.fd;
    void process.stderr.fd;
    const before = process.getActiveResourcesInfo().filter((r) => r !== 'Timeout').sort();
    // A guest that never ends by itself: the snapshot below must find it running.
    const vm = await Machine.create({ kernel: file('forever.img', counterGuest({ ticks: 0, work: 300, sleepTicks: 20_000 })), memoryMiB: 16 });
    await vm.start();
    await vm.snapshot(join(dir, 'h.snap'));
    await vm.stop();
    const r = await Machine.restore(join(dir, 'h.snap'));
    await r.kill();
    await settle();
    const after = process.getActiveResourcesInfo().filter((r) => r !== 'Timeout').sort();
    expect(after).toEqual(before);
  });
});
