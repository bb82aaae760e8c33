import { VisorError } from '../base/errors.js';
import type { FileHandle, FileOpener } from './block-device.js';
import { closeDisk, createDisk, openDisk, probeFormat, type DiskFormat } from './open.js';
import { RawDevice } from './raw.js';
import { Qcow2Device } from './qcow2/device.js';

/** What a directory pool needs from the host: its files, their space, the file system's space. */
export interface PoolStore {
  readonly opener: FileOpener;
  /** Path of volume `name`, as the opener understands it. */
  path(name: string): string;
  /** Names of regular files in the pool. */
  list(): Promise<string[]>;
  /** Creates an empty file; fails if it exists. */
  createFile(name: string): Promise<FileHandle>;
  remove(name: string): Promise<void>;
  /** Bytes the file really occupies on the host (sparse files count only what is written). */
  allocated(name: string): Promise<number>;
  /** The file system's size and free space, in bytes. */
  space(): Promise<{ capacity: number; available: number }>;
}

export interface VolumeInfo {
  name: string;
  format: DiskFormat;
  /** What the guest sees. */
  capacity: number;
  /** Host bytes in use. */
  allocation: number;
  /** Backing file name as stored in the image, if any. */
  backing: string | undefined;
}

export interface PoolInfo {
  capacity: number;
  available: number;
  /** Sum of the volumes' allocations. */
  allocation: number;
  volumes: number;
}

// Volume names are plain file names: no separators, no leading dot, nothing to escape with.
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$/;

function checkName(name: string): void {
  if (!NAME_RE.test(name)) throw new VisorError('InvalidArgument', `invalid volume name '${name}' (letters, digits, '.', '_', '+', '-'; at most 128)`);
}

/** A storage pool backed by one directory: each volume is an image file in it. */
export class DirectoryPool {
  constructor(readonly store: PoolStore) {}

  async info(): Promise<PoolInfo> {
    const vols = await this.list();
    const space = await this.store.space();
    return { ...space, allocation: vols.reduce((n, v) => n + v.allocation, 0), volumes: vols.length };
  }

  async list(): Promise<VolumeInfo[]> {
    const out: VolumeInfo[] = [];
    for (const name of (await this.store.list()).sort()) {
      if (!NAME_RE.test(name)) continue;
      out.push(await this.volume(name));
    }
    return out;
  }

  async volume(name: string): Promise<VolumeInfo> {
    checkName(name);
    const file = await this.store.opener.open(this.store.path(name), { readOnly: true });
    try {
      const format = await probeFormat(file);
      let capacity: number;
      let backing: string | undefined;
      if (format === 'qcow2') {
        const { parseHeader } = await import('./qcow2/format.js');
        const size = await file.size();
        const head = new Uint8Array(Math.min(size, 2 << 20));
        await file.read(0, head);
        const h = parseHeader(head, size);
        capacity = h.size;
        backing = h.backingFile;
      } else {
        capacity = (await RawDevice.open(file, { readOnly: true })).size;
      }
      return { name, format, capacity, allocation: await this.store.allocated(name), backing };
    } finally {
      await file.close();
    }
  }

  async create(name: string, size: number, format: DiskFormat = 'qcow2'): Promise<VolumeInfo> {
    checkName(name);
    return this.make(name, { format, size });
  }

  /** Linked clone: a new qcow2 volume whose backing file is `source` (by relative name). */
  async clone(source: string, name: string): Promise<VolumeInfo> {
    checkName(source);
    checkName(name);
    const src = await this.volume(source);
    return this.make(name, { format: 'qcow2', backingFile: source, backingFormat: src.format });
  }

  /** Creates volume `name` as `opts` say; a failure leaves no file behind. */
  private async make(name: string, opts: Parameters<typeof createDisk>[3]): Promise<VolumeInfo> {
    const file = await this.store.createFile(name);
    try {
      await createDisk(this.store.opener, this.store.path(name), file, opts);
    } catch (err) {
      await file.close();
      await this.store.remove(name);
      throw err;
    }
    await file.close();
    return this.volume(name);
  }

  async resize(name: string, size: number): Promise<VolumeInfo> {
    checkName(name);
    const d = await openDisk(this.store.opener, this.store.path(name), { readOnly: false });
    try {
      if (d.device instanceof Qcow2Device || d.device instanceof RawDevice) await d.device.resize(size);
    } finally {
      await closeDisk(d);
    }
    return this.volume(name);
  }

  /** Deletes a volume, unless another volume of the pool uses it as its backing file. */
  async delete(name: string): Promise<void> {
    checkName(name);
    await this.volume(name); // exists and is readable
    for (const v of await this.list()) {
      if (v.name !== name && v.backing !== undefined && this.store.opener.resolve(this.store.path(v.name), v.backing) === this.store.path(name)) {
        throw new VisorError('NotAllowed', `volume '${name}' is the backing file of '${v.name}'`);
      }
    }
    await this.store.remove(name);
  }
}
