/**
 * How `visor run` starts its machine: from the image's boot snapshot when there is one for
 * this machine's shape (src/sdk/boot-snapshot.ts), else by booting, and a first boot that
 * could have a snapshot saves one where /init waits for the run's arguments.
 */
import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { encodeCommand } from '../../images/index.js';
import { parsePublish } from '../../net/user/spec.js';
import { bootArgsLine, bootSnapshotPath, bootWaitAppend, pruneBootSnapshots } from '../../sdk/boot-snapshot.js';
import { Machine, type MachineConfig } from '../../sdk/index.js';
import type { ResolvedRun } from './run.js';

export interface BootFlags {
  coldBoot?: boolean;
  deterministic?: boolean;
  init?: string;
  name?: string;
  keep?: string;
  disk: string[];
  balloon?: boolean;
  vsock?: string;
  console: string;
  netRate?: string;
}

export interface StartedMachine {
  vm: Machine;
  /** How it started: restored from the boot snapshot, booted and saving one at the wait point, or booted. */
  how: 'restored' | 'booted, saving a boot snapshot' | 'booted';
  /** runOnTerminal's onBootWait (a booted machine with bootwait: save, then send the line). */
  onBootWait?: () => void;
}

/** Why this run cannot use a boot snapshot (undefined: it can). */
export function bootSnapshotRefusal(flags: BootFlags, run: ResolvedRun, config: MachineConfig): string | undefined {
  if (flags.coldBoot || process.env['VISOR_BOOT_SNAPSHOT'] === '0') return 'asked to boot cold';
  if (!run.freshImage) return 'not an image booted as pulled (own kernel, initrd, command line or a kept disk)';
  if (flags.init !== undefined && flags.init !== 'visor') return '--init systemd';
  if (flags.deterministic) return '--deterministic (a run repeats from boot)';
  if (flags.name !== undefined || flags.keep !== undefined) return '--name/--keep';
  if (flags.disk.length > 0 || flags.balloon || flags.vsock !== undefined) return 'extra devices';
  // The saved /init reads its line from the serial console; with --console hvc the keyboard goes to hvc0.
  if (flags.console !== 'serial') return '--console hvc';
  // A named network is shared with other machines: they would all have the saved MAC address.
  if (flags.netRate !== undefined || (config.nets ?? []).some((n) => !('user' in n) || n.user !== true)) return 'a shared network or rate limits';
  return undefined;
}

/** Creates (or restores) the run's machine; `note` says what happened (--verbose). */
export async function startRunMachine(flags: BootFlags, run: ResolvedRun, config: MachineConfig, note: (text: string) => void): Promise<StartedMachine> {
  const refusal = bootSnapshotRefusal(flags, run, config);
  const line = refusal === undefined ? bootArgsLine(run.command ? [encodeCommand(run.command)] : []) : undefined;
  if (refusal !== undefined || line === undefined || !run.freshImage) {
    if (refusal === undefined) note('boot snapshot: the command is too long for its line; booting');
    else note(`boot snapshot: not used (${refusal})`);
    return { vm: await Machine.create(config), how: 'booted' };
  }
  const img = run.freshImage;
  const waiting: MachineConfig = { ...config, append: bootWaitAppend(run.baseAppend) };
  const path = await bootSnapshotPath(img, waiting);
  const net = userNet(config);
  if (existsSync(path)) {
    let vm: Machine | undefined;
    try {
      vm = await Machine.restore(path, {
        start: false,
        // The guest goes on to run new code: warm the interpreter first (farm-bench n 5 on a
        // restored Debian `-- true`: wall 0.96x, CPU 0.96x; docs/benchmarks.md session 10).
        warmUp: true,
        interpretFirst: interpretFirst(),
        ...(config.accel ? { accel: config.accel } : {}),
        disks: (config.disks ?? []).map((d) => d.path),
        // The saved machine's forwards and firewall were its first run's: this run's instead.
        ...(net ? { netPolicy: { firewall: net.firewall ?? [], hostAccess: net.hostAccess ?? true } } : {}),
      });
    } catch (err) {
      // A snapshot of an older visor, a damaged file, a base that changed under it: boot, and save a new one.
      note(`boot snapshot: ${path} did not restore (${(err as Error).message}); booting`);
      await rm(path, { force: true });
    }
    if (vm) {
      try {
        for (const p of net?.publish ?? []) {
          const f = typeof p === 'string' ? parsePublish(p) : p;
          if (typeof f === 'string') throw new Error(`--publish: ${f}`);
          await vm.addForward(f);
        }
      } catch (err) {
        await vm.kill().catch(() => {});
        throw err;
      }
      vm.console.write(line);
      note(`boot snapshot: restored ${path}`);
      return { vm, how: 'restored' };
    }
  }
  const vm = await Machine.create(waiting);
  const onBootWait = () => {
    void saveAtWait(vm, path, img.dir, note).finally(() => vm.console.write(line));
  };
  return { vm, how: 'booted, saving a boot snapshot', onBootWait };
}

/**
 * Instructions a restored run interprets before its JIT starts: what the guest runs after the
 * wait point is a short stretch of new code (`true`: ~36 M instructions to the exit, a python3
 * one-liner ~105 M), cheaper interpreted than compiled; a longer command gets the JIT after it.
 * Measured in docs/benchmarks.md (session 10). VISOR_INTERPRET_FIRST overrides it (0: JIT at once).
 */
const INTERPRET_FIRST = 150_000_000;
function interpretFirst(): number {
  const v = process.env['VISOR_INTERPRET_FIRST'];
  return v !== undefined && /^\d{1,12}$/.test(v) ? Number(v) : INTERPRET_FIRST;
}

function userNet(config: MachineConfig) {
  const n = config.nets?.[0];
  return n !== undefined && 'user' in n ? n : undefined;
}

/** Saves the machine waiting for its line, if nothing has written its disks yet (they stand in for every later run's). */
async function saveAtWait(vm: Machine, path: string, dir: string, note: (text: string) => void): Promise<void> {
  try {
    await vm.pause();
    try {
      const writes = vm.stats().io.blkWrites;
      if (writes !== 0) {
        note(`boot snapshot: not saved (the guest wrote its disk ${writes} times before the wait point)`);
        return;
      }
      const s = await vm.snapshot(path);
      note(`boot snapshot: saved ${path} (${(s.bytes / 2 ** 20).toFixed(0)} MiB in ${s.ms.toFixed(0)} ms)`);
      await pruneBootSnapshots(dir, path);
    } finally {
      await vm.resume();
    }
  } catch (err) {
    // The file is written whole or not at all (an atomic rename): nothing to clean up.
    note(`boot snapshot: not saved (${(err as Error).message})`);
  }
}
