import type { BlockDevice, FileHandle } from './block-device.js';
import { checkRange, checkWritable } from './range.js';

/**
 * A raw image: guest byte n is file byte n. Sparse: discard and unmapping write-zeroes punch
 * holes, so a fresh raw image costs no space until written.
 */
export class RawDevice implements BlockDevice {
  private constructor(
    private readonly file: FileHandle,
    public size: number,
    readonly readOnly: boolean,
  ) {}

  static async open(file: FileHandle, opts: { readOnly: boolean }): Promise<RawDevice> {
    // Sizes round up to whole sectors (as QEMU does); reads past the end of file give zeros.
    return new RawDevice(file, Math.ceil((await file.size()) / 512) * 512, opts.readOnly);
  }

  /** Creates a sparse raw image of `size` bytes in an empty file. */
  static async create(file: FileHandle, size: number): Promise<RawDevice> {
    await file.truncate(size);
    return new RawDevice(file, size, false);
  }

  async read(offset: number, into: Uint8Array): Promise<void> {
    checkRange('read', offset, into.length, this.size);
    await this.file.read(offset, into);
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    checkWritable('write', this.readOnly);
    checkRange('write', offset, data.length, this.size);
    await this.file.write(offset, data);
  }

  async flush(): Promise<void> {
    if (!this.readOnly) await this.file.sync();
  }

  async discard(offset: number, length: number): Promise<void> {
    checkWritable('discard', this.readOnly);
    checkRange('discard', offset, length, this.size);
    await this.file.punchHole(offset, length);
  }

  async writeZeroes(offset: number, length: number, mayUnmap: boolean): Promise<void> {
    checkWritable('writeZeroes', this.readOnly);
    checkRange('writeZeroes', offset, length, this.size);
    if (mayUnmap) {
      await this.file.punchHole(offset, length);
      return;
    }
    const chunk = new Uint8Array(Math.min(length, 1 << 20));
    for (let done = 0; done < length; done += chunk.length) {
      await this.file.write(offset + done, chunk.subarray(0, Math.min(chunk.length, length - done)));
    }
  }

  /** Grows or shrinks the image (the file follows). */
  async resize(size: number): Promise<void> {
    checkWritable('resize', this.readOnly);
    await this.file.truncate(size);
    this.size = size;
  }

  async close(): Promise<void> {
    await this.file.close();
  }
}
