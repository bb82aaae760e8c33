import { Command, Option } from 'commander';
import { VisorError } from '../../base/errors.js';
import { NodeFileHandle, NodeFileOpener, mapFsError } from '../../host/file-handle.js';
import { NodePoolStore } from '../../host/storage-pool.js';
import { convertDisk } from '../../storage/convert.js';
import { closeDisk, createDisk, openDisk, type DiskFormat, type OpenedDisk } from '../../storage/open.js';
import { DirectoryPool, type VolumeInfo } from '../../storage/pool.js';
import { checkQcow2, type CheckResult } from '../../storage/qcow2/check.js';
import { Qcow2Device } from '../../storage/qcow2/device.js';
import { formatSize, parseSize } from '../../storage/size.js';

const opener = new NodeFileOpener();

/** `visor disk check` exits as `qemu-img check` does (its man page, "check"). */
export const CHECK_EXIT = { clean: 0, corrupt: 2, leaks: 3, unsupported: 63 } as const;

function out(text: string): void {
  process.stdout.write(`${text}\n`);
}

function json(value: unknown): void {
  out(JSON.stringify(value, null, 2));
}

function parseFormat(v: string): DiskFormat {
  if (v !== 'raw' && v !== 'qcow2') throw new VisorError('InvalidArgument', `unknown format '${v}' (raw or qcow2)`);
  return v;
}

async function withDisk<T>(path: string, readOnly: boolean, fn: (d: OpenedDisk) => Promise<T>, allowCorrupt = false): Promise<T> {
  const d = await openDisk(opener, path, { readOnly, allowCorrupt });
  try {
    return await fn(d);
  } finally {
    await closeDisk(d);
  }
}

function qcow2Of(d: OpenedDisk, what: string): Qcow2Device {
  if (!(d.device instanceof Qcow2Device)) throw new VisorError('InvalidArgument', `${what} needs a qcow2 image; ${d.path} is ${d.format}`);
  return d.device;
}

export interface DiskInfo {
  file: string;
  format: DiskFormat;
  virtualSize: number;
  /** Length of the image file. */
  fileLength: number;
  /** Bytes the file occupies on the host. */
  diskUsage: number;
  clusterSize?: number;
  compat?: '0.10' | '1.1';
  compressionType?: 'zlib' | 'zstd';
  dirty?: boolean;
  corrupt?: boolean;
  backingFile?: string;
  backingChain: { file: string; format: DiskFormat; virtualSize: number }[];
  snapshots: { id: string; name: string; date: string; diskSize: number; vmStateSize: number }[];
}

export async function diskInfo(path: string): Promise<DiskInfo> {
  return withDisk(path, true, async (d) => {
    const fh = await NodeFileHandle.open(path, { readOnly: true });
    const [fileLength, diskUsage] = [await fh.size(), await fh.allocated()];
    await fh.close();
    const chain: DiskInfo['backingChain'] = [];
    for (let b = d.backing; b; b = b.backing) chain.push({ file: b.path, format: b.format, virtualSize: b.device.size });
    const info: DiskInfo = { file: path, format: d.format, virtualSize: d.device.size, fileLength, diskUsage, backingChain: chain, snapshots: [] };
    if (d.device instanceof Qcow2Device) {
      const h = d.device.header;
      info.clusterSize = d.device.clusterSize;
      info.compat = h.version === 2 ? '0.10' : '1.1';
      info.compressionType = h.compressionType === 1 ? 'zstd' : 'zlib';
      info.dirty = (h.incompatibleFeatures & 1n) !== 0n;
      info.corrupt = (h.incompatibleFeatures & 2n) !== 0n;
      if (h.backingFile !== undefined) info.backingFile = h.backingFile;
      info.snapshots = d.device.listSnapshots().map((s) => ({ id: s.id, name: s.name, date: s.date.toISOString(), diskSize: s.diskSize, vmStateSize: s.vmStateSize }));
    }
    return info;
  });
}

function printInfo(i: DiskInfo): void {
  out(`image: ${i.file}`);
  out(`file format: ${i.format}`);
  out(`virtual size: ${formatSize(i.virtualSize)} (${i.virtualSize} bytes)`);
  out(`disk size: ${formatSize(i.diskUsage)} (file length ${i.fileLength} bytes)`);
  if (i.clusterSize !== undefined) out(`cluster_size: ${i.clusterSize}`);
  if (i.compat) out(`compat: ${i.compat}${i.compressionType === 'zstd' ? ', compression type: zstd' : ''}`);
  if (i.dirty) out('dirty: yes (refcounts will be rebuilt on the next read-write open)');
  if (i.corrupt) out('corrupt: yes (run `visor disk check --repair`)');
  if (i.backingFile !== undefined) out(`backing file: ${i.backingFile}`);
  for (const [n, b] of i.backingChain.entries()) out(`  ${'  '.repeat(n)}└─ ${b.file} (${b.format}, ${formatSize(b.virtualSize)})`);
  if (i.snapshots.length) {
    out('snapshots:');
    printSnapshots(i.snapshots);
  }
}

function printSnapshots(list: DiskInfo['snapshots']): void {
  out(`${'ID'.padEnd(6)}${'NAME'.padEnd(24)}${'DISK SIZE'.padEnd(12)}DATE`);
  for (const s of list) out(`${s.id.padEnd(6)}${s.name.padEnd(24)}${formatSize(s.diskSize).padEnd(12)}${s.date}`);
}

function printCheck(path: string, r: CheckResult, repaired: boolean): void {
  for (const m of r.messages.slice(0, 50)) out(m);
  if (r.messages.length > 50) out(`... and ${r.messages.length - 50} more`);
  if (repaired && (r.repaired.leaks || r.repaired.corruptions)) {
    out(`Repaired ${r.repaired.leaks} leaked clusters and ${r.repaired.corruptions} corruptions.`);
  } else if (r.corruptions === 0 && r.leaks === 0 && r.leaksPastEnd === 0) {
    out(`No errors were found on ${path}.`);
  } else {
    if (r.corruptions) out(`${r.corruptions} errors were found on the image.`);
    if (r.leaks) out(`${r.leaks} leaked clusters were found on the image (harmless; --repair frees them).`);
    if (r.leaksPastEnd) out(`${r.leaksPastEnd} refcounts past the end of the file are leaked (harmless; --repair clears them).`);
  }
  const pct = r.totalClusters ? ((100 * r.dataClusters) / r.totalClusters).toFixed(2) : '0.00';
  out(`${r.dataClusters}/${r.totalClusters} = ${pct}% allocated`);
}

function printVolumes(vols: VolumeInfo[]): void {
  out(`${'NAME'.padEnd(28)}${'FORMAT'.padEnd(8)}${'CAPACITY'.padEnd(12)}${'ALLOCATION'.padEnd(12)}BACKING`);
  for (const v of vols) out(`${v.name.padEnd(28)}${v.format.padEnd(8)}${formatSize(v.capacity).padEnd(12)}${formatSize(v.allocation).padEnd(12)}${v.backing ?? ''}`);
}

export function registerDiskCommands(program: Command): void {
  const disk = program.command('disk').description('Create and inspect disk images (raw and qcow2, interoperable with qemu-img)');

  disk
    .command('create')
    .description('Create a disk image (SIZE like 10G; optional with --backing)')
    .argument('<file>')
    .argument('[size]')
    .addOption(new Option('-f, --format <format>', 'image format').choices(['qcow2', 'raw']).default('qcow2'))
    .option('-b, --backing <file>', 'backing file (relative names are relative to FILE)')
    .addOption(new Option('-F, --backing-format <format>', 'backing file format (probed if absent)').choices(['qcow2', 'raw']))
    .option('--cluster-size <bytes>', 'qcow2 cluster size', '64K')
    .addOption(new Option('--compat <version>', 'qcow2 version').choices(['0.10', '1.1']).default('1.1'))
    .option('--json', 'machine-readable output')
    .action(async (file: string, size: string | undefined, o: { format: string; backing?: string; backingFormat?: string; clusterSize: string; compat: string; json?: boolean }) => {
      const fh = await NodeFileHandle.open(file, { readOnly: false, create: 'exclusive' });
      try {
        await createDisk(opener, file, fh, {
          format: parseFormat(o.format),
          size: size === undefined ? undefined : parseSize(size),
          backingFile: o.backing,
          backingFormat: o.backingFormat === undefined ? undefined : parseFormat(o.backingFormat),
          clusterSize: parseSize(o.clusterSize),
          version: o.compat === '0.10' ? 2 : 3,
        });
      } catch (err) {
        await fh.close();
        await import('node:fs/promises').then((fs) => fs.unlink(file)).catch(() => undefined);
        throw err;
      }
      await fh.close();
      const info = await diskInfo(file);
      if (o.json) json(info);
      else out(`Formatting '${file}', fmt=${info.format} size=${info.virtualSize}${info.backingFile ? ` backing_file=${info.backingFile}` : ''}`);
    });

  disk
    .command('info')
    .description('Show format, sizes, backing chain and snapshots')
    .argument('<file>')
    .option('--json', 'machine-readable output')
    .action(async (file: string, o: { json?: boolean }) => {
      const info = await diskInfo(file);
      if (o.json) json(info);
      else printInfo(info);
    });

  disk
    .command('resize')
    .description('Change the virtual size (qcow2 images can only grow)')
    .argument('<file>')
    .argument('<size>')
    .action(async (file: string, size: string) => {
      await withDisk(file, false, async (d) => {
        const dev = d.device as { resize?: (n: number) => Promise<void> };
        if (!dev.resize) throw new VisorError('Unsupported', 'this image cannot be resized');
        await dev.resize(parseSize(size));
      });
      out(`Image resized to ${size}.`);
    });

  disk
    .command('convert')
    .description('Copy an image into a new file, changing its format (and compressing)')
    .argument('<source>')
    .argument('<dest>')
    .addOption(new Option('-O, --output-format <format>', 'destination format').choices(['qcow2', 'raw']).default('qcow2'))
    .option('-c, --compress', 'compress qcow2 clusters with deflate')
    .option('--cluster-size <bytes>', 'qcow2 cluster size', '64K')
    .option('--json', 'machine-readable output')
    .action(async (source: string, dest: string, o: { outputFormat: string; compress?: boolean; clusterSize: string; json?: boolean }) => {
      const format = parseFormat(o.outputFormat);
      if (o.compress && format !== 'qcow2') throw new VisorError('InvalidArgument', '--compress needs -O qcow2');
      await withDisk(source, true, async (src) => {
        const fh = await NodeFileHandle.open(dest, { readOnly: false, create: 'exclusive' });
        try {
          await createDisk(opener, dest, fh, { format, size: src.device.size, clusterSize: parseSize(o.clusterSize) });
        } finally {
          await fh.close();
        }
        const r = await withDisk(dest, false, (dst) => convertDisk(src.device, dst.device, { compress: o.compress === true }), false);
        if (o.json) json({ source, dest, format, compressed: o.compress === true, bytesWritten: r.bytesWritten });
        else out(`Converted ${source} to ${dest} (${format}${o.compress ? ', compressed' : ''}): ${formatSize(r.bytesWritten)} of data.`);
      });
    });

  disk
    .command('check')
    .description('Check a qcow2 image for corruption and leaks (like qemu-img check)')
    .argument('<file>')
    .option('-r, --repair', 'fix leaks, wrong refcounts and COPIED flags')
    .option('--json', 'machine-readable output')
    .action(async (file: string, o: { repair?: boolean; json?: boolean }) => {
      const r = await withDisk(file, !o.repair, async (d) => {
        if (!(d.device instanceof Qcow2Device)) return undefined;
        return checkQcow2(d.device, { repair: o.repair === true });
      }, o.repair === true);
      if (!r) {
        process.stderr.write(`visor: ${file}: this image format (raw) has nothing to check\n`);
        process.exitCode = CHECK_EXIT.unsupported;
        return;
      }
      if (o.json) json({ file, ...r });
      else printCheck(file, r, o.repair === true);
      // qemu-img check's statuses, so scripts written for it work: what remains after a repair counts.
      const left = o.repair ? { corruptions: r.corruptions - r.repaired.corruptions, leaks: r.leaks - r.repaired.leaks } : r;
      if (left.corruptions > 0) process.exitCode = CHECK_EXIT.corrupt;
      else if (left.leaks > 0) process.exitCode = CHECK_EXIT.leaks;
    });

  const snap = disk.command('snapshot').description('Internal qcow2 snapshots');
  snap
    .command('create')
    .argument('<file>')
    .argument('<name>')
    .option('--json', 'machine-readable output')
    .action(async (file: string, name: string, o: { json?: boolean }) => {
      const s = await withDisk(file, false, (d) => qcow2Of(d, 'snapshots').createSnapshot(name));
      if (o.json) json({ ...s, date: s.date.toISOString() });
      else out(`Created snapshot ${s.id} '${s.name}'.`);
    });
  snap
    .command('list')
    .argument('<file>')
    .option('--json', 'machine-readable output')
    .action(async (file: string, o: { json?: boolean }) => {
      const info = await diskInfo(file);
      if (o.json) json(info.snapshots);
      else if (info.snapshots.length === 0) out('No snapshots.');
      else printSnapshots(info.snapshots);
    });
  snap
    .command('apply')
    .description('Revert the image to a snapshot (by id or name)')
    .argument('<file>')
    .argument('<snapshot>')
    .action(async (file: string, id: string) => {
      await withDisk(file, false, (d) => qcow2Of(d, 'snapshots').applySnapshot(id));
      out(`Applied snapshot '${id}'.`);
    });
  snap
    .command('delete')
    .argument('<file>')
    .argument('<snapshot>')
    .action(async (file: string, id: string) => {
      await withDisk(file, false, (d) => qcow2Of(d, 'snapshots').deleteSnapshot(id));
      out(`Deleted snapshot '${id}'.`);
    });

  registerPoolCommands(program);
}

function registerPoolCommands(program: Command): void {
  const pool = program.command('pool').description('Directory storage pools: a directory of volumes');
  const p = (dir: string) => new DirectoryPool(new NodePoolStore(dir));

  pool
    .command('init')
    .description('Create the pool directory')
    .argument('<dir>')
    .action(async (dir: string) => {
      const fs = await import('node:fs/promises');
      try {
        await fs.mkdir(dir, { recursive: true });
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'EEXIST' || code === 'ENOTDIR') throw new VisorError('InvalidArgument', `pool init: ${dir} exists and is not a directory`, { cause: err });
        throw mapFsError(err, dir);
      }
      out(`Pool ready at ${dir}.`);
    });
  pool
    .command('info')
    .description('Capacity, free space and allocation of the pool')
    .argument('<dir>')
    .option('--json', 'machine-readable output')
    .action(async (dir: string, o: { json?: boolean }) => {
      const i = await p(dir).info();
      if (o.json) json({ dir, ...i });
      else {
        out(`pool: ${dir}`);
        out(`capacity: ${formatSize(i.capacity)}`);
        out(`available: ${formatSize(i.available)}`);
        out(`allocation: ${formatSize(i.allocation)} in ${i.volumes} volume(s)`);
      }
    });
  pool
    .command('list')
    .description('List the volumes')
    .argument('<dir>')
    .option('--json', 'machine-readable output')
    .action(async (dir: string, o: { json?: boolean }) => {
      const v = await p(dir).list();
      if (o.json) json(v);
      else printVolumes(v);
    });
  pool
    .command('create')
    .description('Create a volume')
    .argument('<dir>')
    .argument('<name>')
    .argument('<size>')
    .addOption(new Option('-f, --format <format>', 'volume format').choices(['qcow2', 'raw']).default('qcow2'))
    .option('--json', 'machine-readable output')
    .action(async (dir: string, name: string, size: string, o: { format: string; json?: boolean }) => {
      const v = await p(dir).create(name, parseSize(size), parseFormat(o.format));
      if (o.json) json(v);
      else printVolumes([v]);
    });
  pool
    .command('clone')
    .description('Create a linked clone: a qcow2 volume backed by SOURCE')
    .argument('<dir>')
    .argument('<source>')
    .argument('<name>')
    .option('--json', 'machine-readable output')
    .action(async (dir: string, source: string, name: string, o: { json?: boolean }) => {
      const v = await p(dir).clone(source, name);
      if (o.json) json(v);
      else printVolumes([v]);
    });
  pool
    .command('resize')
    .argument('<dir>')
    .argument('<name>')
    .argument('<size>')
    .option('--json', 'machine-readable output')
    .action(async (dir: string, name: string, size: string, o: { json?: boolean }) => {
      const v = await p(dir).resize(name, parseSize(size));
      if (o.json) json(v);
      else printVolumes([v]);
    });
  pool
    .command('delete')
    .description('Delete a volume (refused while another volume uses it as backing file)')
    .argument('<dir>')
    .argument('<name>')
    .action(async (dir: string, name: string) => {
      await p(dir).delete(name);
      out(`Deleted ${name}.`);
    });
}
