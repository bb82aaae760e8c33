/**
 * A validated descriptor chain: the device-readable buffers followed by the device-writable
 * ones (virtio 1.2 §2.7.4.2), as offsets into guest RAM that the queue has already
 * bounds-checked. Devices read and write through it as if it were two flat byte streams.
 */
import { markWritten } from '../../cpu/ram-pager.js';
export interface Segment {
  /** Offset into the RAM array (not a guest address). */
  readonly off: number;
  readonly len: number;
}

export class DescriptorChain {
  constructor(
    private readonly ram: Uint8Array,
    /** RAM pages written (cpu/ram-pager.ts writtenPages): each write marks its pages. */
    private readonly written: Uint8Array,
    /** Head descriptor index: what goes back in the used ring. */
    readonly head: number,
    readonly readable: readonly Segment[],
    readonly writable: readonly Segment[],
    readonly readableLen: number,
    readonly writableLen: number,
  ) {}

  /** Copies readable bytes starting at stream position `pos` into `dst`; returns the count. */
  read(pos: number, dst: Uint8Array): number {
    return copy(this.readable, pos, dst.length, (segOff, dstOff, n) =>
      dst.set(this.ram.subarray(segOff, segOff + n), dstOff),
    );
  }

  /** Copies `src` into the writable stream at position `pos`; returns the count written. */
  write(pos: number, src: Uint8Array): number {
    return copy(this.writable, pos, src.length, (segOff, srcOff, n) => {
      this.ram.set(src.subarray(srcOff, srcOff + n), segOff);
      markWritten(this.written, segOff, n);
    });
  }

  /** All readable bytes in one new array (callers cap sizes before calling). */
  readAll(skip = 0): Uint8Array {
    const out = new Uint8Array(Math.max(0, this.readableLen - skip));
    this.read(skip, out);
    return out;
  }

  /** Writable segments as RAM views, e.g. for a reader that fills guest memory directly (their pages count as written now). */
  writableViews(): Uint8Array[] {
    return this.writable.map((s) => {
      markWritten(this.written, s.off, s.len);
      return this.ram.subarray(s.off, s.off + s.len);
    });
  }
}

function copy(
  segs: readonly Segment[],
  pos: number,
  want: number,
  move: (segOff: number, bufOff: number, n: number) => void,
): number {
  let done = 0;
  for (const s of segs) {
    if (done >= want) break;
    if (pos >= s.len) {
      pos -= s.len;
      continue;
    }
    const n = Math.min(s.len - pos, want - done);
    move(s.off + pos, done, n);
    done += n;
    pos = 0;
  }
  return done;
}
