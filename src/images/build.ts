/**
 * Builds an image directory from the three Debian packages: the kernel Image, an initramfs
 * (busybox, the board's modules decompressed, visor's /init) and OpenSBI's firmware.
 */
import { gzipSync } from 'node:zlib';
import { createHash } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { VisorError } from '../base/errors.js';
import type { ManifestFile } from './cache.js';
import { writeCpio, type CpioEntry } from './cpio.js';
import { extractDeb, type DebEntry } from './deb.js';
import { decompressBuffer } from './decompress.js';
import { agentFiles } from '../guest/agent-files.js';
import { AGENT_SCRIPT, AGENT_SH, ARGV_AWK, JSON_ARGV_AWK, MODULE_ORDER_FILE, POWER_SCRIPT, POWER_SH, PROFILE_SCRIPT, SHUTDOWN_SCRIPT, SHUTDOWN_SH, initScript } from './init-script.js';
import { stripModuleSignature } from './module-signature.js';
import { unnameAssemblerLabels } from './module-symbols.js';
import { moduleLoadOrder, moduleName, parseModinfo, type ModuleInfo } from './modinfo.js';
import { ETC_FILESYSTEMS, MODALIAS_FILE, MODDEPS_FILE, MODPROBE_PATH, MODPROBE_SCRIPT, moduleTables } from './modprobe.js';
import type { Progress } from './progress.js';

export const KERNEL_FILE = 'Image';
/** gzip'd on disk; the host inflates it before the guest boots (src/host/initrd.ts). */
export const INITRD_FILE = 'initramfs.cpio.gz';
export const FW_JUMP_FILE = 'fw_jump.bin';
export const FW_DYNAMIC_FILE = 'fw_dynamic.bin';

// Documentation/arch/riscv/boot-image-header.rst: magic "RISCV\0\0\0" at 0x30 (deprecated
// but still written) and magic2 "RSC\x05" at 0x38.
export const RISCV_IMAGE_MAGIC2 = 0x05435352;

export function isRiscvImage(b: Uint8Array): boolean {
  if (b.length < 0x40) return false;
  return new DataView(b.buffer, b.byteOffset, b.byteLength).getUint32(0x38, true) === RISCV_IMAGE_MAGIC2;
}

export interface BuildInput {
  kernelDeb: string;
  busyboxDeb: string;
  firmwareDeb?: string;
  outDir: string;
  modules: string[];
  progress: Progress;
}

export interface BuildResult {
  kernelRelease: string;
  modules: string[];
  builtinModules: string[];
  skippedSoftdeps: string[];
  files: { kernel: ManifestFile; initrd: ManifestFile; firmware?: ManifestFile; firmwareDynamic?: ManifestFile };
}

const MODULE_RE = /^(?:usr\/)?lib\/modules\/([^/]+)\/kernel\/.*\/([^/]+)\.ko(?:\.(?:xz|zst|gz))?$/;
const BUILTIN_RE = /^(?:usr\/)?lib\/modules\/([^/]+)\/modules\.builtin$/;
const KERNEL_RE = /^boot\/(?:vmlinux|vmlinuz)-(.+)$/;

async function writeOut(dir: string, name: string, data: Uint8Array): Promise<ManifestFile> {
  await writeFile(join(dir, name), data);
  return { name, size: data.length, sha256: createHash('sha256').update(data).digest('hex') };
}

/** Resolves module names to the files of the kernel package, parsing modinfo on demand. */
class ModuleSet {
  private readonly byName = new Map<string, DebEntry>();
  private readonly info = new Map<string, ModuleInfo>();
  private readonly plain = new Map<string, Buffer>();

  constructor(entries: DebEntry[]) {
    for (const e of entries) {
      const m = MODULE_RE.exec(e.path);
      if (m && e.data) this.byName.set(moduleName(m[2]!), e);
    }
  }

  get count(): number {
    return this.byName.size;
  }

  async load(name: string): Promise<ModuleInfo | undefined> {
    const have = this.info.get(name);
    if (have) return have;
    const e = this.byName.get(name);
    if (!e) return undefined;
    const ko = await decompressBuffer(e.data!, e.path);
    const info = parseModinfo(ko, e.path);
    this.info.set(info.name, info);
    this.plain.set(info.name, ko);
    return info;
  }

  /**
   * Soft dependencies name aliases ("crypto-crc32c"). Decompressing all ~3000 modules to
   * read every alias takes 20 s, so only modules whose file name contains the alias's stem
   * are parsed, and their aliases are then checked exactly.
   */
  async resolveAlias(alias: string): Promise<string | undefined> {
    const stem = moduleName(alias.replace(/^crypto-/, ''));
    for (const name of this.byName.keys()) {
      if (!name.includes(stem)) continue;
      const info = await this.load(name);
      if (info && (info.name === stem || info.aliases.includes(alias))) return info.name;
    }
    return undefined;
  }

  /** Loads the closure of `wanted` (hard and soft pre-dependencies) into `info`. */
  async closure(wanted: string[]): Promise<Map<string, ModuleInfo>> {
    const queue = wanted.map(moduleName);
    const seen = new Set<string>();
    while (queue.length) {
      const n = queue.shift()!;
      if (seen.has(n)) continue;
      seen.add(n);
      const info = await this.load(n);
      if (!info) continue; // built in or missing: moduleLoadOrder decides which
      queue.push(...info.depends);
      for (const soft of info.softdepPre) {
        const target = (await this.load(moduleName(soft))) ? moduleName(soft) : await this.resolveAlias(soft);
        if (target) queue.push(target);
      }
    }
    return this.info;
  }

  data(name: string): Buffer {
    return this.plain.get(name)!;
  }

  /**
   * The module as the initramfs carries it: without its appended signature
   * (module-signature.ts) and with its assembler labels unnamed (module-symbols.ts).
   */
  forInitramfs(name: string): Uint8Array {
    return unnameAssemblerLabels(stripModuleSignature(this.data(name), `${name}.ko`), `${name}.ko`).ko;
  }
}

export async function buildImage(input: BuildInput): Promise<BuildResult> {
  const { progress } = input;

  let t = progress.task('extracting the kernel package');
  const kernelEntries = await extractDeb(input.kernelDeb, (p, type) =>
    type === 'file' && (KERNEL_RE.test(p) || MODULE_RE.test(p) || BUILTIN_RE.test(p)));
  const kernels = kernelEntries.filter((e) => KERNEL_RE.test(e.path));
  if (kernels.length !== 1) {
    throw new VisorError('BadImage', `${input.kernelDeb}: expected one boot/vmlinux-* file, found ${kernels.length}`);
  }
  const kernel = kernels[0]!;
  const kernelRelease = KERNEL_RE.exec(kernel.path)![1]!;
  if (!isRiscvImage(kernel.data!)) {
    throw new VisorError('BadKernel', `${kernel.path} in ${input.kernelDeb} is not a RISC-V kernel Image (no RSC\\x05 magic)`);
  }
  const builtinText = kernelEntries.find((e) => BUILTIN_RE.test(e.path) && BUILTIN_RE.exec(e.path)![1] === kernelRelease)?.data?.toString('utf8') ?? '';
  const builtin = new Set(builtinText.split('\n').filter(Boolean).map((l) => moduleName(posix.basename(l).replace(/\.ko$/, ''))));
  const mods = new ModuleSet(kernelEntries.filter((e) => MODULE_RE.exec(e.path)?.[1] === kernelRelease));
  t.finish(`Linux ${kernelRelease}, ${mods.count} modules`);

  t = progress.task('resolving module dependencies');
  const available = await mods.closure(input.modules);
  const plan = moduleLoadOrder(input.modules, available, builtin);
  const tables = moduleTables(plan.order, available, builtin);
  t.finish(plan.order.join(' '));

  const busybox = (await extractDeb(input.busyboxDeb, (p, type) => type === 'file' && /^(usr\/)?bin\/busybox$/.test(p)))[0];
  if (!busybox?.data) throw new VisorError('BadImage', `${input.busyboxDeb} has no bin/busybox`);

  t = progress.task('building the initramfs');
  const moddir = `lib/modules/${kernelRelease}`;
  const entries: CpioEntry[] = [
    ...['bin', 'dev', 'etc', 'lib', 'lib/modules', moddir, 'lib/visor', 'proc', 'run', 'sbin', 'sys', 'usr', 'usr/bin', 'usr/sbin']
      .map((path): CpioEntry => ({ type: 'dir', path, mode: 0o755 })),
    { type: 'dir', path: 'root', mode: 0o700 },
    { type: 'dir', path: 'tmp', mode: 0o1777 },
    // The kernel opens /dev/console for init's stdio before anything is mounted
    // (init/main.c console_on_rootfs), so the node must be in the archive itself.
    { type: 'char', path: 'dev/console', mode: 0o600, major: 5, minor: 1 },
    { type: 'char', path: 'dev/null', mode: 0o666, major: 1, minor: 3 },
    { type: 'file', path: 'bin/busybox', mode: 0o755, data: busybox.data },
    { type: 'symlink', path: 'bin/sh', target: 'busybox' },
    { type: 'file', path: 'init', mode: 0o755, data: Buffer.from(initScript({ kernelRelease })) },
    { type: 'file', path: ARGV_AWK, mode: 0o644, data: Buffer.from(JSON_ARGV_AWK) },
    { type: 'file', path: AGENT_SH, mode: 0o755, data: Buffer.from(AGENT_SCRIPT) },
    { type: 'file', path: SHUTDOWN_SH, mode: 0o644, data: Buffer.from(SHUTDOWN_SCRIPT) },
    ...agentFiles().map((f): CpioEntry => ({ type: 'file', path: f.path, mode: f.mode, data: Buffer.from(f.data) })),
    { type: 'file', path: POWER_SH, mode: 0o755, data: Buffer.from(POWER_SCRIPT) },
    { type: 'file', path: 'etc/profile', mode: 0o644, data: Buffer.from(PROFILE_SCRIPT) },
    { type: 'file', path: 'etc/passwd', mode: 0o644, data: Buffer.from('root:x:0:0:root:/root:/bin/sh\n') },
    { type: 'file', path: 'etc/group', mode: 0o644, data: Buffer.from('root:x:0:\n') },
    { type: 'file', path: 'etc/hosts', mode: 0o644, data: Buffer.from('127.0.0.1 localhost visor\n') },
    ...plan.order.map((m): CpioEntry => ({ type: 'file', path: `${moddir}/${m}.ko`, mode: 0o644, data: mods.forInitramfs(m) })),
    { type: 'file', path: `${moddir}/${MODULE_ORDER_FILE}`, mode: 0o644, data: Buffer.from(plan.order.join('\n') + '\n') },
    { type: 'file', path: `${moddir}/${MODALIAS_FILE}`, mode: 0o644, data: Buffer.from(tables.alias) },
    { type: 'file', path: `${moddir}/${MODDEPS_FILE}`, mode: 0o644, data: Buffer.from(tables.deps) },
    { type: 'file', path: MODPROBE_PATH, mode: 0o755, data: Buffer.from(MODPROBE_SCRIPT) },
    { type: 'file', path: 'etc/filesystems', mode: 0o644, data: Buffer.from(ETC_FILESYSTEMS) },
  ];
  const initrd = gzipSync(writeCpio(entries), { level: 6 });
  t.finish(`${plan.order.length} modules, ${(initrd.length / 1048576).toFixed(1)} MiB`);

  const files: BuildResult['files'] = {
    kernel: await writeOut(input.outDir, KERNEL_FILE, kernel.data!),
    initrd: await writeOut(input.outDir, INITRD_FILE, initrd),
  };
  if (input.firmwareDeb) {
    const fw = await extractDeb(input.firmwareDeb, (p, type) =>
      type === 'file' && /^usr\/lib\/riscv64-linux-gnu\/opensbi\/generic\/fw_(jump|dynamic)\.bin$/.test(p));
    const jump = fw.find((e) => e.path.endsWith('fw_jump.bin'));
    const dyn = fw.find((e) => e.path.endsWith('fw_dynamic.bin'));
    if (jump?.data) files.firmware = await writeOut(input.outDir, FW_JUMP_FILE, jump.data);
    if (dyn?.data) files.firmwareDynamic = await writeOut(input.outDir, FW_DYNAMIC_FILE, dyn.data);
  }
  return { kernelRelease, modules: plan.order, builtinModules: plan.builtin, skippedSoftdeps: plan.skippedSoftdeps, files };
}
