import { VisorError } from '../base/errors.js';
import type { FileHandle, FileOpener } from './block-device.js';

/**
 * In-memory files: a FileHandle/FileOpener for tests and for the browser build. Storage is a
 * growable byte array; holes are just zeros.
 */
export class MemoryFile implements FileHandle {
  private data: Uint8Array;
  private length: number;
  closed = false;
  /** Counts calls so tests can check that caches avoid re-reading metadata. */
  readonly stats = { reads: 0, writes: 0, syncs: 0 };

  constructor(initial?: Uint8Array) {
    this.data = initial ? initial.slice() : new Uint8Array(0);
    this.length = this.data.length;
  }

  /** A copy of the current contents. */
  bytes(): Uint8Array {
    return this.data.slice(0, this.length);
  }

  async size(): Promise<number> {
    return this.length;
  }

  async read(offset: number, into: Uint8Array): Promise<void> {
    this.stats.reads++;
    into.fill(0);
    if (offset < this.length) into.set(this.data.subarray(offset, Math.min(this.length, offset + into.length)));
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    this.stats.writes++;
    this.ensure(offset + data.length);
    this.data.set(data, offset);
    if (offset + data.length > this.length) this.length = offset + data.length;
  }

  async truncate(size: number): Promise<void> {
    this.ensure(size);
    if (size < this.length) this.data.fill(0, size, this.length);
    this.length = size;
  }

  async punchHole(offset: number, length: number): Promise<void> {
    const end = Math.min(this.length, offset + length);
    if (offset < end) this.data.fill(0, offset, end);
  }

  async sync(): Promise<void> {
    this.stats.syncs++;
  }

  async close(): Promise<void> {
    this.closed = true;
  }

  private ensure(size: number): void {
    if (size <= this.data.length) return;
    const grown = new Uint8Array(Math.max(size, this.data.length * 2, 4096));
    grown.set(this.data.subarray(0, this.length));
    this.data = grown;
  }
}

/** A flat namespace of MemoryFiles with '/'-separated paths. */
export class MemoryFileSystem implements FileOpener {
  readonly files = new Map<string, MemoryFile>();

  create(path: string, initial?: Uint8Array): MemoryFile {
    const f = new MemoryFile(initial);
    this.files.set(normalize(path), f);
    return f;
  }

  async open(path: string, _opts: { readOnly: boolean }): Promise<FileHandle> {
    const f = this.files.get(normalize(path));
    if (!f) throw new VisorError('NotFound', `no such file: ${path}`);
    return f;
  }

  resolve(relativeTo: string, path: string): string {
    if (path.startsWith('/')) return normalize(path);
    const slash = relativeTo.lastIndexOf('/');
    const dir = slash > 0 ? relativeTo.slice(0, slash) : slash === 0 ? '/' : '';
    return normalize(dir ? `${dir}/${path}` : path);
  }
}

function normalize(path: string): string {
  const out: string[] = [];
  for (const part of path.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') out.pop();
    else out.push(part);
  }
  return (path.startsWith('/') ? '/' : '') + out.join('/');
}
