import { promises as fsp } from 'node:fs';
import { join, resolve } from 'node:path';
import type { FileHandle } from '../storage/block-device.js';
import type { PoolStore } from '../storage/pool.js';
import { NodeFileHandle, NodeFileOpener, mapFsError } from './file-handle.js';

/** A directory on the host as a storage pool. */
export class NodePoolStore implements PoolStore {
  readonly opener = new NodeFileOpener();
  readonly dir: string;

  constructor(dir: string) {
    this.dir = resolve(dir);
  }

  path(name: string): string {
    return join(this.dir, name);
  }

  async list(): Promise<string[]> {
    try {
      const ents = await fsp.readdir(this.dir, { withFileTypes: true });
      return ents.filter((e) => e.isFile()).map((e) => e.name);
    } catch (err) {
      throw mapFsError(err, this.dir);
    }
  }

  createFile(name: string): Promise<FileHandle> {
    return NodeFileHandle.open(this.path(name), { readOnly: false, create: 'exclusive' });
  }

  async remove(name: string): Promise<void> {
    try {
      await fsp.unlink(this.path(name));
    } catch (err) {
      throw mapFsError(err, this.path(name));
    }
  }

  async allocated(name: string): Promise<number> {
    try {
      return (await fsp.stat(this.path(name))).blocks * 512;
    } catch (err) {
      throw mapFsError(err, this.path(name));
    }
  }

  async space(): Promise<{ capacity: number; available: number }> {
    try {
      const s = await fsp.statfs(this.dir);
      return { capacity: s.blocks * s.bsize, available: s.bavail * s.bsize };
    } catch (err) {
      throw mapFsError(err, this.dir);
    }
  }
}
