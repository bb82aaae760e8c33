/**
 * virtio-blk (virtio 1.2 §5.2) over the storage layer's BlockDevice.
 *
 * Requests are asynchronous: notify() only pops chains and starts I/O; each request
 * completes later (status byte, used ring, interrupt). Data goes through a bounce buffer so
 * that a request finishing after a device reset never writes guest RAM (the epoch check),
 * and at most `maxInFlight` requests run at once, which bounds host memory to
 * maxInFlight × the largest request we advertise (size_max × seg_max).
 */
import type { BlockDevice } from '../../storage/block-device.js';
import { VIRTIO_ID_BLOCK, bit, readConfigBytes, type DeviceContext, type VirtioDevice } from '../device.js';
import { readU64, writeU64 } from '../guest-memory.js';
import type { DescriptorChain } from '../queue/chain.js';
import { isObject, isU16, restoreCounters, stateError } from '../state.js';

// §5.2.3 Feature bits
export const VIRTIO_BLK_F_SIZE_MAX = 1;
export const VIRTIO_BLK_F_SEG_MAX = 2;
export const VIRTIO_BLK_F_GEOMETRY = 4;
export const VIRTIO_BLK_F_RO = 5;
export const VIRTIO_BLK_F_BLK_SIZE = 6;
export const VIRTIO_BLK_F_FLUSH = 9;
export const VIRTIO_BLK_F_TOPOLOGY = 10;
export const VIRTIO_BLK_F_CONFIG_WCE = 11;
export const VIRTIO_BLK_F_MQ = 12;
export const VIRTIO_BLK_F_DISCARD = 13;
export const VIRTIO_BLK_F_WRITE_ZEROES = 14;

// §5.2.6 Device Operation: request types and status values
export const VIRTIO_BLK_T_IN = 0;
export const VIRTIO_BLK_T_OUT = 1;
export const VIRTIO_BLK_T_FLUSH = 4;
export const VIRTIO_BLK_T_GET_ID = 8;
export const VIRTIO_BLK_T_GET_LIFETIME = 10;
export const VIRTIO_BLK_T_DISCARD = 11;
export const VIRTIO_BLK_T_WRITE_ZEROES = 13;
export const VIRTIO_BLK_T_SECURE_ERASE = 14;
export const VIRTIO_BLK_S_OK = 0;
export const VIRTIO_BLK_S_IOERR = 1;
export const VIRTIO_BLK_S_UNSUPP = 2;
export const VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP = 1;
export const VIRTIO_BLK_ID_BYTES = 20;

const SECTOR = 512;
const HEADER = 16; // struct virtio_blk_req: le32 type, le32 reserved, le64 sector
const SEG = 16; // struct virtio_blk_discard_write_zeroes

// §5.2.4 Device configuration layout (byte offsets)
const CFG_CAPACITY = 0;
const CFG_SIZE_MAX = 8;
const CFG_SEG_MAX = 12;
const CFG_BLK_SIZE = 20;
const CFG_MAX_DISCARD_SECTORS = 36;
const CFG_MAX_DISCARD_SEG = 40;
const CFG_DISCARD_SECTOR_ALIGNMENT = 44;
const CFG_MAX_WRITE_ZEROES_SECTORS = 48;
const CFG_MAX_WRITE_ZEROES_SEG = 52;
const CFG_WRITE_ZEROES_MAY_UNMAP = 56;
const CFG_SIZE = 60;

export interface BlkOptions {
  disk: BlockDevice;
  /** Forces read-only even if the disk is writable. */
  readOnly?: boolean;
  /** Up to 20 bytes, returned by VIRTIO_BLK_T_GET_ID (/sys/block/vda/serial). */
  serial?: string;
  queueSize?: number;
  /** Largest data segment we advertise (size_max), bytes. */
  sizeMax?: number;
  maxInFlight?: number;
}

export interface BlkCounters {
  reads: number;
  writes: number;
  bytesRead: number;
  bytesWritten: number;
  flushes: number;
  discards: number;
  writeZeroes: number;
  errors: number;
  unsupported: number;
}

/** What a snapshot keeps of a virtio-blk (the transport keeps registers and queue indices). */
export interface BlkState {
  version: 1;
  /** Sectors, as the guest saw them: a disk of another size is not the same disk. */
  capacity: number;
  readOnly: boolean;
  /**
   * Heads of requests taken from the queue and not yet completed, in the order they were
   * taken. Their descriptors live in the saved RAM; a restored device runs them again
   * (reads and writes of the same bytes are idempotent).
   */
  inFlight: number[];
  counters: BlkCounters;
}

/** Max sectors per discard / write-zeroes segment we advertise (32 MiB). */
const MAX_DISCARD_SECTORS = 65536;

export class VirtioBlk implements VirtioDevice {
  readonly deviceId = VIRTIO_ID_BLOCK;
  readonly name = 'blk';
  readonly features: bigint;
  readonly queueSizes: readonly number[];
  readonly maxChainBytes: number;
  readonly readOnly: boolean;
  readonly counters: BlkCounters = {
    reads: 0, writes: 0, bytesRead: 0, bytesWritten: 0, flushes: 0, discards: 0, writeZeroes: 0, errors: 0, unsupported: 0,
  };
  private readonly disk: BlockDevice;
  private readonly serial: Uint8Array;
  private readonly config = new Uint8Array(CFG_SIZE);
  private readonly maxInFlight: number;
  private readonly maxData: number;
  private ctx: DeviceContext | null = null;
  /** Bumped on reset; completions of an older epoch are dropped. */
  private epoch = 0;
  private inFlight = 0;
  /** Heads of the requests in flight, in submission order (for snapshots). */
  private readonly inFlightHeads = new Set<number>();
  /** Restored heads to run again at activation. */
  private resubmit: number[] = [];
  private idle: (() => void)[] = [];

  constructor(opts: BlkOptions) {
    this.disk = opts.disk;
    this.readOnly = opts.readOnly === true || opts.disk.readOnly;
    const queueSize = opts.queueSize ?? 128;
    this.queueSizes = [queueSize];
    const sizeMax = opts.sizeMax ?? 128 * 1024;
    const segMax = queueSize - 2; // header and status take a descriptor each
    this.maxData = sizeMax * segMax;
    this.maxChainBytes = this.maxData + HEADER + 1;
    this.maxInFlight = opts.maxInFlight ?? 16;
    this.serial = new TextEncoder().encode(opts.serial ?? '').subarray(0, VIRTIO_BLK_ID_BYTES);
    let f = bit(VIRTIO_BLK_F_SIZE_MAX) | bit(VIRTIO_BLK_F_SEG_MAX) | bit(VIRTIO_BLK_F_BLK_SIZE) | bit(VIRTIO_BLK_F_FLUSH);
    if (this.readOnly) f |= bit(VIRTIO_BLK_F_RO);
    else f |= bit(VIRTIO_BLK_F_DISCARD) | bit(VIRTIO_BLK_F_WRITE_ZEROES);
    this.features = f;
    const v = new DataView(this.config.buffer);
    writeU64(v, CFG_CAPACITY, Math.floor(opts.disk.size / SECTOR));
    v.setUint32(CFG_SIZE_MAX, sizeMax, true);
    v.setUint32(CFG_SEG_MAX, segMax, true);
    v.setUint32(CFG_BLK_SIZE, SECTOR, true);
    v.setUint32(CFG_MAX_DISCARD_SECTORS, MAX_DISCARD_SECTORS, true);
    v.setUint32(CFG_MAX_DISCARD_SEG, 1, true);
    v.setUint32(CFG_DISCARD_SECTOR_ALIGNMENT, 4096 / SECTOR, true);
    v.setUint32(CFG_MAX_WRITE_ZEROES_SECTORS, MAX_DISCARD_SECTORS, true);
    v.setUint32(CFG_MAX_WRITE_ZEROES_SEG, 1, true);
    this.config[CFG_WRITE_ZEROES_MAY_UNMAP] = 1;
  }

  /** Capacity in 512-byte sectors, as the guest sees it. */
  get capacity(): number {
    return readU64(new DataView(this.config.buffer), CFG_CAPACITY);
  }

  readConfig(offset: number, size: 1 | 2 | 4): number {
    return readConfigBytes(this.config, offset, size);
  }
  writeConfig(): void {} // §5.2.4: writeback is only writable with CONFIG_WCE, not offered

  activate(ctx: DeviceContext): void {
    this.ctx = ctx;
    const again = this.resubmit.splice(0);
    for (const head of again) {
      const chain = ctx.queues[0]!.chainAt(head);
      if (!chain) break; // malformed: the queue is broken and the transport needs a reset
      this.start(chain);
    }
    this.pump();
  }

  reset(): void {
    this.ctx = null;
    this.epoch++;
    this.inFlight = 0;
    this.inFlightHeads.clear();
    this.resubmit = [];
    for (const r of this.idle.splice(0)) r();
  }

  saveState(): BlkState {
    return {
      version: 1,
      capacity: this.capacity,
      readOnly: this.readOnly,
      inFlight: [...this.inFlightHeads],
      counters: { ...this.counters },
    };
  }

  restore(state: unknown): void {
    const bad = (why: string) => stateError(this.name, why);
    if (!isObject(state) || state.version !== 1) throw bad('unknown version');
    const s = state as unknown as BlkState;
    if (s.capacity !== this.capacity) throw bad(`the disk has ${this.capacity} sectors, the snapshot's had ${String(s.capacity)}`);
    if (s.readOnly !== this.readOnly) throw bad('read-only differs from the snapshot');
    const qsize = this.queueSizes[0]!;
    if (!Array.isArray(s.inFlight) || s.inFlight.length > this.maxInFlight || !s.inFlight.every((h) => isU16(h) && h < qsize)) {
      throw bad('requests in flight');
    }
    if (new Set(s.inFlight).size !== s.inFlight.length) throw bad('a request is in flight twice');
    restoreCounters(this.counters, s.counters, this.name);
    this.resubmit = [...s.inFlight];
  }

  notify(queue: number): void {
    if (queue === 0) this.pump();
  }

  /** Resolves when no request is in flight (tests, snapshots, shutdown). */
  whenIdle(): Promise<void> {
    if (this.inFlight === 0) return Promise.resolve();
    return new Promise((r) => this.idle.push(r));
  }

  private pump(): void {
    const ctx = this.ctx;
    if (!ctx) return;
    const q = ctx.queues[0]!;
    while (this.inFlight < this.maxInFlight) {
      const chain = q.pop();
      if (!chain) break;
      this.start(chain);
    }
  }

  private start(chain: DescriptorChain): void {
    this.inFlight++;
    this.inFlightHeads.add(chain.head);
    const epoch = this.epoch;
    this.execute(chain, epoch).then(
      (r) => this.complete(epoch, chain, r),
      () => this.complete(epoch, chain, this.fail(VIRTIO_BLK_S_IOERR)),
    );
  }

  private complete(epoch: number, chain: DescriptorChain, r: Result): void {
    if (epoch !== this.epoch || !this.ctx) return; // reset meanwhile: the guest forgot it
    this.inFlight--;
    this.inFlightHeads.delete(chain.head);
    const q = this.ctx.queues[0]!;
    // §5.2.6: the status is the last writable byte; without one there is nothing to report.
    let used = 0;
    if (chain.writableLen >= 1) {
      chain.write(chain.writableLen - 1, Uint8Array.of(r.status));
      used = r.written + 1;
    }
    q.pushUsed(chain.head, used);
    this.ctx.usedBuffers(0);
    if (this.inFlight === 0) for (const r of this.idle.splice(0)) r();
    this.pump();
  }

  private fail(status: number): Result {
    if (status === VIRTIO_BLK_S_UNSUPP) this.counters.unsupported++;
    else this.counters.errors++;
    return { status, written: 0 };
  }

  /** Runs one request; returns the used length (bytes written into the chain). */
  private async execute(chain: DescriptorChain, epoch: number): Promise<Result> {
    // §5.2.6.1: header first, status byte last; without both there is nothing to answer.
    if (chain.readableLen < HEADER || chain.writableLen < 1) return this.fail(VIRTIO_BLK_S_IOERR);
    const hdr = new Uint8Array(HEADER);
    chain.read(0, hdr);
    const hv = new DataView(hdr.buffer);
    const type = hv.getUint32(0, true);
    const sector = readU64(hv, 8);
    const size = this.capacity * SECTOR;
    switch (type) {
      case VIRTIO_BLK_T_IN: {
        const len = chain.writableLen - 1;
        if (len % SECTOR || len > this.maxData || !inRange(sector, len, size)) return this.fail(VIRTIO_BLK_S_IOERR);
        const buf = new Uint8Array(len);
        await this.disk.read(sector * SECTOR, buf);
        if (epoch !== this.epoch) return OK; // reset meanwhile: RAM is no longer ours to write
        chain.write(0, buf);
        this.counters.reads++;
        this.counters.bytesRead += len;
        return { status: VIRTIO_BLK_S_OK, written: len };
      }
      case VIRTIO_BLK_T_OUT: {
        const len = chain.readableLen - HEADER;
        if (this.readOnly) return this.fail(VIRTIO_BLK_S_IOERR);
        if (len % SECTOR || len > this.maxData || !inRange(sector, len, size)) return this.fail(VIRTIO_BLK_S_IOERR);
        const buf = chain.readAll(HEADER);
        await this.disk.write(sector * SECTOR, buf);
        this.counters.writes++;
        this.counters.bytesWritten += len;
        return OK;
      }
      case VIRTIO_BLK_T_FLUSH:
        await this.disk.flush();
        this.counters.flushes++;
        return OK;
      case VIRTIO_BLK_T_GET_ID: {
        // §5.2.6: 20 bytes, NUL-padded; not NUL-terminated when all 20 are used.
        const id = new Uint8Array(VIRTIO_BLK_ID_BYTES);
        id.set(this.serial);
        const n = chain.write(0, id.subarray(0, Math.max(0, chain.writableLen - 1)));
        return { status: VIRTIO_BLK_S_OK, written: n };
      }
      case VIRTIO_BLK_T_DISCARD:
      case VIRTIO_BLK_T_WRITE_ZEROES:
        return this.discardOrZero(chain, type, size);
      default:
        // GET_LIFETIME, SECURE_ERASE and unknown types: not offered.
        return this.fail(VIRTIO_BLK_S_UNSUPP);
    }
  }

  /** §5.2.6.2: one segment (max_*_seg = 1), range- and flag-checked. */
  private async discardOrZero(chain: DescriptorChain, type: number, size: number): Promise<Result> {
    if (this.readOnly) return this.fail(VIRTIO_BLK_S_IOERR);
    const segBytes = chain.readableLen - HEADER;
    if (segBytes !== SEG) return this.fail(segBytes % SEG ? VIRTIO_BLK_S_IOERR : VIRTIO_BLK_S_UNSUPP);
    const seg = new Uint8Array(SEG);
    chain.read(HEADER, seg);
    const sv = new DataView(seg.buffer);
    const sector = readU64(sv, 0);
    const num = sv.getUint32(8, true);
    const flags = sv.getUint32(12, true);
    const unmap = (flags & VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP) !== 0;
    // Discard takes no flags; write-zeroes only the unmap bit. Reserved bits → UNSUPP.
    if (flags & ~(type === VIRTIO_BLK_T_WRITE_ZEROES ? VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP : 0)) {
      return this.fail(VIRTIO_BLK_S_UNSUPP);
    }
    if (num > MAX_DISCARD_SECTORS || !inRange(sector, num * SECTOR, size)) return this.fail(VIRTIO_BLK_S_IOERR);
    if (type === VIRTIO_BLK_T_DISCARD) {
      await this.disk.discard(sector * SECTOR, num * SECTOR);
      this.counters.discards++;
    } else {
      await this.disk.writeZeroes(sector * SECTOR, num * SECTOR, unmap);
      this.counters.writeZeroes++;
    }
    return OK;
  }
}

/** A finished request: its status byte and how many data bytes it wrote into the chain. */
interface Result {
  status: number;
  written: number;
}
const OK: Result = { status: VIRTIO_BLK_S_OK, written: 0 };

function inRange(sector: number, len: number, size: number): boolean {
  return Number.isSafeInteger(sector * SECTOR) && sector * SECTOR + len <= size;
}

/** Factory for the board: one virtio-blk per `--disk`. */
export function createVirtioBlk(opts: BlkOptions): VirtioBlk {
  return new VirtioBlk(opts);
}
