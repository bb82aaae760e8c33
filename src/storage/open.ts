import { VisorError } from '../base/errors.js';
import type { BlockDevice, FileHandle, FileOpener } from './block-device.js';
import { RawDevice } from './raw.js';
import { Qcow2Device } from './qcow2/device.js';
import { createQcow2, type Qcow2CreateOptions } from './qcow2/create.js';
import { QCOW_MAGIC } from './qcow2/format.js';

export type DiskFormat = 'raw' | 'qcow2';

/** Longest backing chain we follow; QEMU has no limit, but a loop must end somewhere. */
export const MAX_BACKING_CHAIN = 64;

export interface OpenDiskOptions {
  readOnly: boolean;
  /** Skip probing (a raw file that happens to start with qcow2's magic stays raw). */
  format?: DiskFormat | undefined;
  /** Allow opening an image marked corrupt read-write (repair only). */
  allowCorrupt?: boolean;
}

/** An opened disk and what it is. Backing images are opened read-only, recursively. */
export interface OpenedDisk {
  device: BlockDevice;
  format: DiskFormat;
  path: string;
  backing: OpenedDisk | undefined;
}

export async function probeFormat(file: FileHandle): Promise<DiskFormat> {
  const b = new Uint8Array(4);
  await file.read(0, b);
  return new DataView(b.buffer).getUint32(0) === QCOW_MAGIC ? 'qcow2' : 'raw';
}

export async function openDisk(opener: FileOpener, path: string, opts: OpenDiskOptions): Promise<OpenedDisk> {
  return openChain(opener, path, opts, [], true);
}

async function openChain(opener: FileOpener, path: string, opts: OpenDiskOptions, seen: string[], top: boolean): Promise<OpenedDisk> {
  if (seen.includes(path)) throw new VisorError('BadImage', `backing chain loop: ${[...seen, path].join(' -> ')}`);
  if (seen.length >= MAX_BACKING_CHAIN) throw new VisorError('BadImage', `backing chain longer than ${MAX_BACKING_CHAIN} images`);
  const file = await opener.open(path, { readOnly: opts.readOnly });
  try {
    const format = opts.format ?? (await probeFormat(file));
    if (format === 'raw') return { device: await RawDevice.open(file, { readOnly: opts.readOnly }), format, path, backing: undefined };
    // Peek at the header for the backing file before opening the image itself.
    const { parseHeader } = await import('./qcow2/format.js');
    const peek = new Uint8Array(Math.min(await file.size(), 2 << 20));
    await file.read(0, peek);
    const h = parseHeader(peek, await file.size());
    let backing: OpenedDisk | undefined;
    if (h.backingFile !== undefined) {
      const bpath = opener.resolve(path, h.backingFile);
      const bfmt = h.backingFormat;
      if (bfmt !== undefined && bfmt !== 'raw' && bfmt !== 'qcow2') {
        throw new VisorError('Unsupported', `backing file format '${bfmt}' is not supported (raw or qcow2)`);
      }
      try {
        backing = await openChain(opener, bpath, { readOnly: true, format: bfmt }, [...seen, path], false);
      } catch (err) {
        if (err instanceof VisorError && err.code === 'NotFound') {
          throw new VisorError('NotFound', `backing file ${h.backingFile} of ${path} not found (resolved to ${bpath})`, { cause: err });
        }
        throw err;
      }
    }
    try {
      const device = await Qcow2Device.open(file, { readOnly: opts.readOnly, backing: backing?.device, allowCorrupt: top && opts.allowCorrupt });
      return { device, format, path, backing };
    } catch (err) {
      await backing?.device.close();
      throw err;
    }
  } catch (err) {
    await file.close().catch(() => undefined);
    throw err;
  }
}

export interface CreateDiskOptions {
  format: DiskFormat;
  size?: number | undefined;
  backingFile?: string | undefined;
  backingFormat?: DiskFormat | undefined;
  clusterSize?: number | undefined;
  version?: 2 | 3;
}

/**
 * Creates an image in an empty, writable file. With a backing file the size defaults to the
 * backing image's size (qemu-img does the same); the backing name is stored as given, so a
 * relative name stays relative to the new image's directory.
 */
export async function createDisk(opener: FileOpener, path: string, file: FileHandle, o: CreateDiskOptions): Promise<void> {
  let size = o.size;
  let backingFormat = o.backingFormat;
  if (o.backingFile !== undefined) {
    if (o.format !== 'qcow2') throw new VisorError('InvalidArgument', 'only qcow2 images can have a backing file');
    const b = await openDisk(opener, opener.resolve(path, o.backingFile), { readOnly: true, format: backingFormat });
    size ??= b.device.size;
    backingFormat ??= b.format;
    await closeDisk(b);
  }
  if (size === undefined) throw new VisorError('InvalidArgument', 'a size is needed');
  if (o.format === 'raw') {
    if (!Number.isSafeInteger(size) || size < 0) throw new VisorError('InvalidArgument', `invalid size ${size}`);
    await file.truncate(size);
    return;
  }
  const q: Qcow2CreateOptions = { size, version: o.version ?? 3 };
  if (o.clusterSize !== undefined) q.clusterSize = o.clusterSize;
  if (o.backingFile !== undefined) {
    q.backingFile = o.backingFile;
    q.backingFormat = backingFormat ?? 'qcow2';
  }
  await createQcow2(file, q);
}

/** Closes an opened disk (its device closes its backing chain). */
export async function closeDisk(d: OpenedDisk): Promise<void> {
  await d.device.close();
}
