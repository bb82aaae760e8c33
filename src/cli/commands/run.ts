import type { Command } from 'commander';
import { VisorError } from '../../base/errors.js';
import { parseDiskSpec, parseVsockSpec, type DiskSpec } from '../flags.js';
import { imageMinMemoryMiB } from '../../images/recipes.js';
import { cacheRoot } from '../../images/cache.js';
import {
  ROOT_ARG, ROOTINIT_ARG, encodeCommand, ensureImage, ephemeralDisk, findMachine, keepMachine, type GuestImage, type KeptMachine,
} from '../../images/index.js';
import { MAX_MEMORY_MIB, MIN_MEMORY_MIB } from '../../machine/ram-size.js';
import { DEFAULT_APPEND } from '../../vm/spec.js';
import { Machine, type MachineConfig } from '../../sdk/index.js';
import { ACCEL_HELP, parseAccel, printStats, statsFormat } from './stats-report.js';
import { runOnTerminal, terminalExitCode } from './terminal.js';
import { ConsoleLineStamper } from '../../host/console-trace.js';
import { addNetOptions, netsFromFlags, type NetFlags } from './net-flags.js';
import { startRunMachine } from './run-boot.js';


interface RunFlags extends NetFlags {
  kernel?: string;
  initrd?: string;
  append?: string;
  bios: string;
  memory?: string;
  disk: string[];
  image: string;
  mirror?: string;
  deterministic?: boolean;
  balloon?: boolean;
  vsock?: string;
  snapshotFile: string;
  name?: string;
  accel?: string;
  stats?: string | boolean;
  console: string;
  keep?: string;
  init?: string;
  verbose?: boolean;
  coldBoot?: boolean;
}

export interface ResolvedRun {
  kernel: string;
  initrd?: string;
  append: string;
  bios: string;
  memoryMiB?: number;
  disks: DiskSpec[];
  command?: string[];
  /** `append` without the command (boot snapshots send the command on their own line). */
  baseAppend: string;
  /** The image booted, when the kernel is an image's and its root disk (if any) a fresh overlay on its base. */
  freshImage?: GuestImage;
  /** Removes an ephemeral root overlay; call however the run ends. */
  cleanup?: () => Promise<void>;
}

/** Turns flags into what to boot; pulls the image only when no --kernel is given. */
export async function resolveRun(flags: RunFlags, command: string[]): Promise<ResolvedRun> {
  let memoryMiB: number | undefined;
  if (flags.memory !== undefined) {
    memoryMiB = Number(flags.memory);
    if (!/^\d+$/.test(flags.memory) || memoryMiB < MIN_MEMORY_MIB || memoryMiB > MAX_MEMORY_MIB) {
      throw new VisorError('InvalidArgument', `--memory must be a number of MiB from ${MIN_MEMORY_MIB} to ${MAX_MEMORY_MIB}, got '${flags.memory}'`);
    }
  }
  const min = flags.kernel === undefined ? imageMinMemoryMiB(flags.image) : undefined;
  if (memoryMiB !== undefined && min !== undefined && memoryMiB < min) {
    throw new VisorError('InvalidArgument', `--memory ${memoryMiB}: the image '${flags.image}' needs at least ${min} MiB to boot`);
  }
  const disks = flags.disk.map(parseDiskSpec);
  let kernel = flags.kernel;
  let initrd = flags.initrd;
  let append = flags.append;
  let bios = flags.bios;
  let rootDisk: { path: string; cleanup?: () => Promise<void> } | undefined;
  let freshImage: GuestImage | undefined;
  if (kernel === undefined || bios === 'opensbi') {
    const opts: { progress: boolean; mirror?: string } = { progress: process.stderr.isTTY === true };
    if (flags.mirror) opts.mirror = flags.mirror;
    // --name of a kept machine boots it again, on the image it was made from.
    const root = cacheRoot();
    const kept = flags.name !== undefined && flags.keep === undefined ? await findMachine(root, flags.name) : undefined;
    const img = await ensureImage(kept?.image ?? flags.image, opts);
    if (kernel === undefined) {
      kernel = img.kernel;
      initrd ??= img.initrd;
      append ??= img.append;
      if (img.rootfs) rootDisk = await rootDiskFor(flags, img, kept);
      if (initrd === img.initrd && append === img.append && !kept && flags.keep === undefined) freshImage = img;
    }
    if (bios === 'opensbi') {
      const fw = img.firmwareDynamic ?? img.firmware;
      if (!fw) throw new VisorError('NotFound', `image '${flags.image}' carries no OpenSBI firmware; pass --bios FILE`);
      bios = fw;
    }
  }
  append ??= DEFAULT_APPEND;
  const cmd = command.length > 0 ? command : undefined;
  if (flags.init !== undefined && flags.init !== 'visor' && flags.init !== 'systemd') {
    throw new VisorError('InvalidArgument', `--init must be visor or systemd, got '${flags.init}'`);
  }
  if (rootDisk) {
    // The root disk is vda: the initramfs mounts it and hands PID 1 to its init.
    disks.unshift({ path: rootDisk.path, readOnly: false, format: 'qcow2' });
    append = `${append} ${ROOT_ARG}=/dev/vda`;
    if (flags.init === 'systemd') {
      if (cmd) throw new VisorError('InvalidArgument', '--init systemd boots to a login console; run a command with the default init (visor run -- CMD)');
      append = `${append} ${ROOTINIT_ARG}=/lib/systemd/systemd`;
    }
  } else if (flags.init === 'systemd' || flags.keep !== undefined) {
    throw new VisorError('InvalidArgument', `--init and --keep need an image with a root disk (debian); '${flags.image}' has none`);
  }
  const baseAppend = append;
  if (cmd) append = `${append} ${encodeCommand(cmd)}`;
  const r: ResolvedRun = { kernel, append, baseAppend, bios, disks };
  if (freshImage) r.freshImage = freshImage;
  if (initrd !== undefined) r.initrd = initrd;
  if (memoryMiB !== undefined) r.memoryMiB = memoryMiB;
  if (cmd) r.command = cmd;
  if (rootDisk?.cleanup) r.cleanup = rootDisk.cleanup;
  return r;
}

/** The machine's root disk: a kept one (--name), a new kept one (--keep), or an ephemeral overlay. */
async function rootDiskFor(flags: RunFlags, img: GuestImage, kept: KeptMachine | undefined): Promise<{ path: string; cleanup?: () => Promise<void> }> {
  const root = cacheRoot();
  if (kept) return { path: kept.disk };
  if (flags.keep !== undefined) return { path: (await keepMachine(root, flags.keep, img.name, img.rootfs!)).disk };
  const e = await ephemeralDisk(root, img.rootfs!);
  return { path: e.path, cleanup: e.dispose };
}

/**
 * The image `visor run` boots without --image. `tiny` until the full Debian image's first pull
 * takes minutes rather than tens of minutes (configuring its packages in a guest took 46 min on
 * a loaded 2-core machine, docs/benchmarks.md): `npx visor run` must reach a shell quickly on a
 * fresh machine. `--image debian` boots the full system.
 */
export const DEFAULT_RUN_IMAGE = 'tiny';

export function registerRunCommand(program: Command): void {
  const netRules: string[] = [];
  const cmd = program
    .command('run')
    .description('Boot a RISC-V 64 Linux guest on the serial console (Ctrl-A x quits, Ctrl-A h lists the keys)')
    .argument('[command...]', 'after --: a command to run in the guest; visor exits with its status')
    .option('--kernel <file>', 'kernel: RISC-V Image (EFI stub fine) or ELF vmlinux (default: the image\'s)')
    .option('--initrd <file>', 'initramfs (default: the image\'s when no --kernel is given)')
    .option('--append <args>', 'kernel command line, replacing the default')
    .option('--bios <builtin|opensbi|file>', 'firmware: visor\'s built-in SBI, the image\'s OpenSBI, or an M-mode firmware file', 'builtin')
    .option('--memory <MiB>', `guest RAM in MiB (${MIN_MEMORY_MIB}-${MAX_MEMORY_MIB}, default 512)`)
    .option('--disk <file[,format=raw|qcow2][,readonly]>', 'attach a virtio-blk disk (repeatable)', (v: string, acc: string[]) => [...acc, v], [] as string[])
    .option('--balloon', 'attach a virtio-balloon (the SDK\'s vm.balloon(MiB) asks the guest for memory)')
    .option('--vsock <path[,cid=N]>', 'attach a virtio-vsock: guest connects to CID 2 port P reach PATH_P; host programs connect to PATH and write "CONNECT P\\n" (guest CID 3 unless given)')
    .option('--name <name>', 'machine name (seeds the NICs\' stable MAC addresses; without it each NIC gets a random one); the name of a kept machine boots its disk again')
    .option('--keep <name>', 'keep the machine\'s disk (a qcow2 overlay on the image) under NAME; `visor run --name NAME` boots it again')
    .option('--init <visor|systemd>', 'PID 1 on a Debian image: visor\'s init (fast, default) or systemd')
    .option('--image <name>', 'guest image to use when no --kernel is given: tiny (busybox, boots in seconds) or debian (full Debian: apt, python3; its first pull configures packages in a guest)', DEFAULT_RUN_IMAGE)
    .option('--mirror <url>', 'Debian mirror for pulling the image (default: from the host\'s apt configuration)')
    .option('--cold-boot', 'boot from the kernel even where the image\'s boot snapshot could start the machine (docs/guest-init.md "Boot snapshots"; VISOR_BOOT_SNAPSHOT=0 does the same)')
    .option('--deterministic', 'guest time follows retired instructions, not the host clock: runs repeat exactly')
    .option('--snapshot-file <file>', 'where Ctrl-A s saves a snapshot (visor restore FILE resumes it)', 'visor.snap')
    .option('--console <serial|hvc>', 'the guest\'s console: the serial port, or the virtio console (hvc0; visor\'s images run the shell there)', 'serial')
    .option('--accel <interp|jit>', ACCEL_HELP)
    .option('--verbose', 'show the guest\'s serial console on stderr as it comes, each line stamped with seconds since visor started, the guest\'s instructions (millions) and the machine thread\'s CPU seconds; visor\'s own steps too')
    .option('--stats [text|json]', 'on exit, print to stderr what the machine did: instructions, JIT compiles, cache hits, invalidations, traps, I/O');
  addNetOptions(cmd, netRules)
    .action(async (command: string[], flags: RunFlags) => {
      const accel = parseAccel(flags.accel);
      const stats = statsFormat(flags.stats);
      let vm: Machine | undefined;
      const trace = flags.verbose ? new ConsoleLineStamper((l) => process.stderr.write(`${l}\n`), () => performance.now() / 1000, () => {
        if (!vm) return '-';
        const s = vm.stats();
        return `${(s.instructions / 1e6).toFixed(0)} Mi ${((s.threadCpuMs ?? 0) / 1000).toFixed(1)} s`;
      }) : undefined;
      trace?.note('resolving the image and its disk');
      const run = await resolveRun(flags, command);
      trace?.note(`booting ${run.kernel} (${run.append})`);
      const commandMode = run.command !== undefined;
      // visor run is a client of the SDK: the machine runs on its own worker thread.
      const config: MachineConfig = {
        kernel: run.kernel,
        append: run.append,
        bios: run.bios,
        disks: run.disks.map((d) => ({ path: d.path, readOnly: d.readOnly, ...(d.format ? { format: d.format } : {}) })),
        deterministic: flags.deterministic === true,
        nets: netsFromFlags(flags, netRules, flags.kernel === undefined),
      };
      if (flags.name !== undefined) config.name = flags.name;
      else if (flags.keep !== undefined) config.name = flags.keep;
      if (run.initrd !== undefined) config.initrd = run.initrd;
      if (run.memoryMiB !== undefined) config.memoryMiB = run.memoryMiB;
      if (accel) config.accel = accel;
      if (flags.balloon) config.balloon = true;
      if (flags.vsock !== undefined) config.vsock = parseVsockSpec(flags.vsock);
      if (flags.console !== 'serial' && flags.console !== 'hvc') throw new VisorError('InvalidArgument', `--console must be serial or hvc, got '${flags.console}'`);
      config.console = flags.console === 'hvc' ? 'virtio' : 'serial';
      // visor's images start the guest agent (graceful stop on SIGTERM); a kernel of your own may not.
      config.agent = flags.kernel === undefined || flags.console === 'hvc';
      // A command of visor's image with stdin or stdout not a terminal: its stdio are virtio
      // ports (byte-exact output, stdout and stderr apart, end of input reaches it). At a
      // terminal it runs on the console, which is then its controlling terminal.
      const stdio = commandMode && flags.kernel === undefined && !(process.stdin.isTTY === true && process.stdout.isTTY === true) ? 'virtio' : 'console';
      if (stdio === 'virtio') config.stdio = 'virtio';
      let code: number;
      try {
        const started = await startRunMachine(flags, run, config, (t) => trace?.note(t));
        vm = started.vm;
        trace?.note(`machine created (${started.how})`);
        const res = await runOnTerminal(vm, {
          snapshotPath: flags.snapshotFile,
          commandMode,
          maxReboots: 3,
          stdio,
          // Piped input waits for visor's init (the image's own); a person at a TTY types when they see a prompt.
          // A machine waiting at its boot snapshot's point reads its arguments from the console
          // first: keys typed before that would end up in front of them.
          holdInputUntilInit: (flags.kernel === undefined && process.stdin.isTTY !== true) || started.how !== 'booted',
          ...(started.onBootWait ? { onBootWait: started.onBootWait } : {}),
          ...(trace ? { trace } : {}),
        });
        trace?.note(`machine stopped (${res.kind})`);
        if (stats) printStats(vm.stats(), stats);
        code = terminalExitCode(res, commandMode);
      } finally {
        await run.cleanup?.(); // an ephemeral root overlay goes with the run
        trace?.note('done');
      }
      // stdin may still hold the event loop; the run is over.
      process.exit(code);
    });
}
