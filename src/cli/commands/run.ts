import type { Command } from 'commander';
import { VisorError } from '../../base/errors.js';
import { parseDiskSpec, parseNetFlag, parseVsockSpec, type DiskSpec } from '../flags.js';
import { encodeCommand, ensureImage } from '../../images/index.js';
import { MAX_MEMORY_MIB, MIN_MEMORY_MIB } from '../../machine/ram-size.js';
import { DEFAULT_APPEND } from '../../vm/spec.js';
import { Machine, type MachineConfig } from '../../sdk/index.js';
import { ACCEL_HELP, parseAccel, printStats, statsFormat } from './stats-report.js';
import { runOnTerminal, terminalExitCode } from './terminal.js';


interface RunFlags {
  kernel?: string;
  initrd?: string;
  append?: string;
  bios: string;
  memory?: string;
  disk: string[];
  net: string[];
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
}

export interface ResolvedRun {
  kernel: string;
  initrd?: string;
  append: string;
  bios: string;
  memoryMiB?: number;
  disks: DiskSpec[];
  command?: string[];
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
  const disks = flags.disk.map(parseDiskSpec);
  let kernel = flags.kernel;
  let initrd = flags.initrd;
  let append = flags.append;
  let bios = flags.bios;
  if (kernel === undefined || bios === 'opensbi') {
    const opts: { progress: boolean; mirror?: string } = { progress: process.stderr.isTTY === true };
    if (flags.mirror) opts.mirror = flags.mirror;
    const img = await ensureImage(flags.image, opts);
    if (kernel === undefined) {
      kernel = img.kernel;
      initrd ??= img.initrd;
      append ??= img.append;
    }
    if (bios === 'opensbi') {
      const fw = img.firmwareDynamic ?? img.firmware;
      if (!fw) throw new VisorError('NotFound', `image '${flags.image}' carries no OpenSBI firmware; pass --bios FILE`);
      bios = fw;
    }
  }
  append ??= DEFAULT_APPEND;
  const cmd = command.length > 0 ? command : undefined;
  if (cmd) append = `${append} ${encodeCommand(cmd)}`;
  const r: ResolvedRun = { kernel, append, bios, disks };
  if (initrd !== undefined) r.initrd = initrd;
  if (memoryMiB !== undefined) r.memoryMiB = memoryMiB;
  if (cmd) r.command = cmd;
  return r;
}

export function registerRunCommand(program: Command): void {
  program
    .command('run')
    .description('Boot a RISC-V 64 Linux guest on the serial console (Ctrl-A x quits, Ctrl-A h lists the keys)')
    .argument('[command...]', 'after --: a command to run in the guest; visor exits with its status')
    .option('--kernel <file>', 'kernel: RISC-V Image (EFI stub fine) or ELF vmlinux (default: the image\'s)')
    .option('--initrd <file>', 'initramfs (default: the image\'s when no --kernel is given)')
    .option('--append <args>', 'kernel command line, replacing the default')
    .option('--bios <builtin|opensbi|file>', 'firmware: visor\'s built-in SBI, the image\'s OpenSBI, or an M-mode firmware file', 'builtin')
    .option('--memory <MiB>', `guest RAM in MiB (${MIN_MEMORY_MIB}-${MAX_MEMORY_MIB}, default 512)`)
    .option('--disk <file[,format=raw|qcow2][,readonly]>', 'attach a virtio-blk disk (repeatable)', (v: string, acc: string[]) => [...acc, v], [] as string[])
    .option('--net <switch=NAME>', 'attach a virtio-net NIC to a host-wide virtual switch (repeatable)', (v: string, acc: string[]) => [...acc, v], [] as string[])
    .option('--balloon', 'attach a virtio-balloon (the SDK\'s vm.balloon(MiB) asks the guest for memory)')
    .option('--vsock <path[,cid=N]>', 'attach a virtio-vsock: guest connects to CID 2 port P reach PATH_P; host programs connect to PATH and write "CONNECT P\\n" (guest CID 3 unless given)')
    .option('--name <name>', 'machine name (seeds the NICs\' stable MAC addresses)')
    .option('--image <name>', 'guest image to use when no --kernel is given', 'debian')
    .option('--mirror <url>', 'Debian mirror for pulling the image (default: from the host\'s apt configuration)')
    .option('--deterministic', 'guest time follows retired instructions, not the host clock: runs repeat exactly')
    .option('--snapshot-file <file>', 'where Ctrl-A s saves a snapshot (visor restore FILE resumes it)', 'visor.snap')
    .option('--console <serial|hvc>', 'the guest\'s console: the serial port, or the virtio console (hvc0; visor\'s images run the shell there)', 'serial')
    .option('--accel <interp|jit>', ACCEL_HELP)
    .option('--stats [text|json]', 'on exit, print to stderr what the machine did: instructions, JIT compiles, cache hits, invalidations, traps, I/O')
    .action(async (command: string[], flags: RunFlags) => {
      const accel = parseAccel(flags.accel);
      const stats = statsFormat(flags.stats);
      const run = await resolveRun(flags, command);
      const commandMode = run.command !== undefined;
      // visor run is a client of the SDK: the machine runs on its own worker thread.
      const config: MachineConfig = {
        kernel: run.kernel,
        append: run.append,
        bios: run.bios,
        disks: run.disks.map((d) => ({ path: d.path, readOnly: d.readOnly, ...(d.format ? { format: d.format } : {}) })),
        deterministic: flags.deterministic === true,
        nets: flags.net.map(parseNetFlag),
      };
      if (flags.name !== undefined) config.name = flags.name;
      if (run.initrd !== undefined) config.initrd = run.initrd;
      if (run.memoryMiB !== undefined) config.memoryMiB = run.memoryMiB;
      if (accel) config.accel = accel;
      if (flags.balloon) config.balloon = true;
      if (flags.vsock !== undefined) config.vsock = parseVsockSpec(flags.vsock);
      if (flags.console !== 'serial' && flags.console !== 'hvc') throw new VisorError('InvalidArgument', `--console must be serial or hvc, got '${flags.console}'`);
      config.console = flags.console === 'hvc' ? 'virtio' : 'serial';
      // visor's images start the guest agent (graceful stop on SIGTERM); a kernel of your own may not.
      config.agent = flags.kernel === undefined || flags.console === 'hvc';
      const vm = await Machine.create(config);
      const res = await runOnTerminal(vm, {
        snapshotPath: flags.snapshotFile,
        commandMode,
        maxReboots: 3,
        // Piped input waits for visor's init (the image's own); a person at a TTY types when they see a prompt.
        holdInputUntilInit: flags.kernel === undefined && process.stdin.isTTY !== true,
      });
      if (stats) printStats(vm.stats(), stats);
      // stdin may still hold the event loop; the run is over.
      process.exit(terminalExitCode(res, commandMode));
    });
}
