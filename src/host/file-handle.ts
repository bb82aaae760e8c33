import { execFile } from 'node:child_process';
import { constants, promises as fsp } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { VisorError } from '../base/errors.js';
import type { FileHandle, FileOpener } from '../storage/block-device.js';
import { lockImage } from './image-lock.js';

/**
 * node:fs implementation of the storage FileHandle. Node has no fallocate(2) binding and
 * visor allows no native addons, so punchHole truncates when the hole reaches the end of the
 * file, asks util-linux `fallocate --punch-hole` for large holes, and otherwise writes zeros
 * (the contract allows that fallback).
 */
export class NodeFileHandle implements FileHandle {
  private static fallocateWorks: boolean | undefined;

  private constructor(
    private readonly fh: fsp.FileHandle,
    readonly path: string,
  ) {}

  /**
   * Opens `path` and locks it as QEMU does (image-lock.ts): shared for read-only use, exclusive
   * for a writer; a conflicting user (visor or QEMU) makes this fail with InUse. `lock: false`
   * skips the lock (files that are not disk images).
   */
  static async open(path: string, opts: { readOnly: boolean; create?: 'exclusive' | 'truncate'; lock?: boolean }): Promise<NodeFileHandle> {
    let flags: number = opts.readOnly ? constants.O_RDONLY : constants.O_RDWR;
    if (opts.create === 'exclusive') flags |= constants.O_CREAT | constants.O_EXCL;
    // Not O_TRUNC: emptying a file another process uses must wait for the lock.
    if (opts.create === 'truncate') flags |= constants.O_CREAT;
    let fh: fsp.FileHandle;
    try {
      fh = await fsp.open(path, flags, 0o644);
    } catch (err) {
      throw mapFsError(err, path);
    }
    try {
      // A directory opens read-only on Linux; it is no disk image.
      if ((await fh.stat()).isDirectory()) throw new VisorError('InvalidArgument', `${path} is a directory, not a disk image`);
      if (opts.lock !== false) lockImage(fh.fd, path, opts.readOnly ? 'read' : 'write');
      if (opts.create === 'truncate') await fh.truncate(0);
    } catch (err) {
      await fh.close().catch(() => {});
      throw err;
    }
    return new NodeFileHandle(fh, path);
  }

  async size(): Promise<number> {
    return (await this.fh.stat()).size;
  }

  /** Bytes actually allocated on the host file system (st_blocks). */
  async allocated(): Promise<number> {
    return (await this.fh.stat()).blocks * 512;
  }

  async read(offset: number, into: Uint8Array): Promise<void> {
    try {
      await this.readAt(offset, into);
    } catch (err) {
      throw mapFsError(err, this.path); // EIO and the like: an IoError, not an internal error
    }
  }

  private async readAt(offset: number, into: Uint8Array): Promise<void> {
    let done = 0;
    while (done < into.length) {
      const { bytesRead } = await this.fh.read(into, done, into.length - done, offset + done);
      if (bytesRead === 0) {
        into.fill(0, done); // past the end of file: zeros (FileHandle contract)
        return;
      }
      done += bytesRead;
    }
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    let done = 0;
    try {
      while (done < data.length) {
        const { bytesWritten } = await this.fh.write(data, done, data.length - done, offset + done);
        done += bytesWritten;
      }
    } catch (err) {
      throw mapFsError(err, this.path);
    }
  }

  async truncate(size: number): Promise<void> {
    await this.fh.truncate(size);
  }

  async punchHole(offset: number, length: number): Promise<void> {
    const size = await this.size();
    if (offset >= size) return;
    if (offset + length >= size) {
      // Shrinking then growing back leaves a hole on every file system we care about.
      await this.fh.truncate(offset);
      await this.fh.truncate(size);
      return;
    }
    if (length >= 1 << 20 && (await this.tryFallocate(offset, length))) return;
    const zeros = new Uint8Array(Math.min(length, 1 << 20));
    for (let done = 0; done < length; done += zeros.length) {
      await this.write(offset + done, zeros.subarray(0, Math.min(zeros.length, length - done)));
    }
  }

  private async tryFallocate(offset: number, length: number): Promise<boolean> {
    if (NodeFileHandle.fallocateWorks === false) return false;
    const ok = await new Promise<boolean>((res) => {
      execFile('fallocate', ['--punch-hole', '--offset', String(offset), '--length', String(length), this.path], (err) => res(!err));
    });
    NodeFileHandle.fallocateWorks = ok;
    return ok;
  }

  async sync(): Promise<void> {
    await this.fh.sync();
  }

  async close(): Promise<void> {
    await this.fh.close();
  }
}

/** Opens files by host path; backing file names resolve against the image's directory. */
export class NodeFileOpener implements FileOpener {
  async open(path: string, opts: { readOnly: boolean }): Promise<FileHandle> {
    return NodeFileHandle.open(path, opts);
  }

  resolve(relativeTo: string, path: string): string {
    return isAbsolute(path) ? path : resolve(dirname(relativeTo), path);
  }
}

export function mapFsError(err: unknown, path: string): VisorError {
  const code = (err as { code?: string }).code;
  if (code === 'ENOENT') return new VisorError('NotFound', `no such file: ${path}`, { cause: err });
  if (code === 'EEXIST') return new VisorError('InvalidArgument', `file already exists: ${path}`, { cause: err });
  if (code === 'EISDIR') return new VisorError('InvalidArgument', `${path} is a directory, not a file`, { cause: err });
  if (code === 'ENOTDIR') return new VisorError('NotFound', `no such file: ${path} (a part of the path is not a directory)`, { cause: err });
  if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS') return new VisorError('NotAllowed', `permission denied: ${path}`, { cause: err });
  return new VisorError('IoError', `${path}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
}
