import { regBig, regU, setReg, REG_A0, REG_A1 } from '../hart.js';
import type { SbiTarget } from '../../cpu/hart.js';
import { MIP_SSIP } from '../irq.js';
import { markWritten, ramPagerOf, writtenPages } from '../../cpu/ram-pager.js';

/**
 * visor's built-in SBI (RISC-V Supervisor Binary Interface spec v2.0): the kernel runs in
 * S-mode with no M-mode firmware underneath, and its `ecall`s land here. a7 = EID, a6 = FID,
 * a0-a5 arguments; the result is a0 = error, a1 = value (§3 "Binary Encoding").
 */
export const SBI_SPEC_VERSION = (2 << 24) | 0; // v2.0
/** Not a registered implementation ID (§4.9 lists them); reads as "visr". */
export const SBI_IMPL_ID = 0x76697372;
export const SBI_IMPL_VERSION = 1;

// §3 extension IDs
export const SBI_EXT_0_1_SET_TIMER = 0x00;
export const SBI_EXT_0_1_CONSOLE_PUTCHAR = 0x01;
export const SBI_EXT_0_1_CONSOLE_GETCHAR = 0x02;
export const SBI_EXT_0_1_CLEAR_IPI = 0x03;
export const SBI_EXT_0_1_SEND_IPI = 0x04;
export const SBI_EXT_0_1_REMOTE_FENCE_I = 0x05;
export const SBI_EXT_0_1_REMOTE_SFENCE_VMA = 0x06;
export const SBI_EXT_0_1_REMOTE_SFENCE_VMA_ASID = 0x07;
export const SBI_EXT_0_1_SHUTDOWN = 0x08;
export const SBI_EXT_BASE = 0x10;
export const SBI_EXT_TIME = 0x54494d45;
export const SBI_EXT_IPI = 0x735049;
export const SBI_EXT_RFENCE = 0x52464e43;
export const SBI_EXT_HSM = 0x48534d;
export const SBI_EXT_SRST = 0x53525354;
export const SBI_EXT_DBCN = 0x4442434e;

// §3.2 standard errors
export const SBI_SUCCESS = 0;
export const SBI_ERR_FAILED = -1;
export const SBI_ERR_NOT_SUPPORTED = -2;
export const SBI_ERR_INVALID_PARAM = -3;
export const SBI_ERR_DENIED = -4;
export const SBI_ERR_INVALID_ADDRESS = -5;
export const SBI_ERR_ALREADY_AVAILABLE = -6;

// §9 HSM states
export const SBI_HSM_STATE_STARTED = 0;
export const SBI_HSM_STATE_STOPPED = 1;

// §10 SRST types
export const SBI_SRST_RESET_TYPE_SHUTDOWN = 0;
export const SBI_SRST_RESET_TYPE_COLD_REBOOT = 1;
export const SBI_SRST_RESET_TYPE_WARM_REBOOT = 2;
export const SBI_SRST_RESET_REASON_SYSFAILURE = 1;

const CSR_MIP = 0x344;
const CSR_STIMECMP = 0x14d;

export type SbiResetEvent = { kind: 'poweroff' | 'reboot'; reason: number };

/** What the SBI sees of the calling hart: cpu/hart.ts declares it (Hart.sbiCall's argument). */
export type SbiHart = SbiTarget;

export interface SbiEnvironment {
  ram: Uint8Array;
  ramBase: number;
  /** Console output (DBCN and legacy putchar). */
  consoleWrite(bytes: Uint8Array): void;
  /** Console input: up to `max` bytes, possibly none. */
  consoleRead(max: number): Uint8Array;
  /** The SBI wrote guest RAM at this offset (DBCN read): the hart drops code decoded there. */
  ramWritten?(offset: number, length: number): void;
  reset(e: SbiResetEvent): void;
}

export interface SbiCounters {
  calls: number;
  unsupported: number;
}

export class BuiltinSbi {
  readonly counters: SbiCounters = { calls: 0, unsupported: 0 };
  constructor(
    private readonly env: SbiEnvironment,
    private readonly harts = 1,
  ) {}

  /** The hart's sbiCall hook: handles every ecall from S-mode. */
  handle = (hart: SbiHart): boolean => {
    this.counters.calls++;
    const eid = regU(hart, 17);
    const fid = regU(hart, 16);
    if (eid <= SBI_EXT_0_1_SHUTDOWN) {
      // Legacy extensions (§5): the result is a0 alone.
      setReg(hart, REG_A0, this.legacy(hart, eid));
      return true;
    }
    const [err, value] = this.call(hart, eid, fid);
    if (err === SBI_ERR_NOT_SUPPORTED) this.counters.unsupported++;
    setReg(hart, REG_A0, err);
    setReg(hart, REG_A1, value);
    return true;
  };

  private legacy(hart: SbiHart, eid: number): number | bigint {
    switch (eid) {
      case SBI_EXT_0_1_SET_TIMER:
        hart.writeCsr(CSR_STIMECMP, regBig(hart, 10));
        return 0;
      case SBI_EXT_0_1_CONSOLE_PUTCHAR:
        this.env.consoleWrite(new Uint8Array([regU(hart, 10) & 0xff]));
        return 0;
      case SBI_EXT_0_1_CONSOLE_GETCHAR: {
        const b = this.env.consoleRead(1);
        return b.length ? b[0]! : -1;
      }
      case SBI_EXT_0_1_CLEAR_IPI:
        hart.writeCsr(CSR_MIP, hart.readCsr(CSR_MIP) & ~BigInt(MIP_SSIP));
        return 0;
      case SBI_EXT_0_1_SEND_IPI:
        this.raiseSoftware(hart);
        return 0;
      case SBI_EXT_0_1_SHUTDOWN:
        this.reset(hart, 'poweroff', 0);
        return 0;
      default: // remote fences: one hart, nothing remote to flush
        hart.flushTlb?.();
        return 0;
    }
  }

  private call(hart: SbiHart, eid: number, fid: number): [number, number | bigint] {
    const a = (i: number) => regU(hart, 10 + i);
    switch (eid) {
      case SBI_EXT_BASE:
        switch (fid) {
          case 0: return [SBI_SUCCESS, SBI_SPEC_VERSION];
          case 1: return [SBI_SUCCESS, SBI_IMPL_ID];
          case 2: return [SBI_SUCCESS, SBI_IMPL_VERSION];
          case 3: return [SBI_SUCCESS, this.probe(a(0)) ? 1 : 0];
          case 4: case 5: case 6: return [SBI_SUCCESS, 0]; // mvendorid, marchid, mimpid
          default: return [SBI_ERR_NOT_SUPPORTED, 0];
        }
      case SBI_EXT_TIME:
        if (fid !== 0) return [SBI_ERR_NOT_SUPPORTED, 0];
        // §6.1: programs the next event and clears the pending timer interrupt; with Sstc the
        // hart derives STIP from stimecmp, so writing it does both.
        hart.writeCsr(CSR_STIMECMP, regBig(hart, 10));
        return [SBI_SUCCESS, 0];
      case SBI_EXT_IPI:
        if (fid !== 0) return [SBI_ERR_NOT_SUPPORTED, 0];
        if (this.maskHas(hart, 0)) this.raiseSoftware(hart);
        return [SBI_SUCCESS, 0];
      case SBI_EXT_RFENCE:
        if (fid > 6) return [SBI_ERR_NOT_SUPPORTED, 0];
        if (fid >= 3) return [SBI_ERR_NOT_SUPPORTED, 0]; // hypervisor fences: no H extension
        if (this.maskHas(hart, 0)) hart.flushTlb?.();
        return [SBI_SUCCESS, 0];
      case SBI_EXT_HSM:
        switch (fid) {
          case 0: // hart_start
            return a(0) < this.harts ? [SBI_ERR_ALREADY_AVAILABLE, 0] : [SBI_ERR_INVALID_PARAM, 0];
          case 1: // hart_stop: the only hart stopping is a machine that can never wake
            return [SBI_ERR_FAILED, 0];
          case 2: // hart_get_status
            return a(0) < this.harts ? [SBI_SUCCESS, SBI_HSM_STATE_STARTED] : [SBI_ERR_INVALID_PARAM, 0];
          default:
            return [SBI_ERR_NOT_SUPPORTED, 0];
        }
      case SBI_EXT_SRST: {
        if (fid !== 0) return [SBI_ERR_NOT_SUPPORTED, 0];
        const type = a(0);
        const reason = a(1);
        if (type > SBI_SRST_RESET_TYPE_WARM_REBOOT) return [SBI_ERR_INVALID_PARAM, 0];
        this.reset(hart, type === SBI_SRST_RESET_TYPE_SHUTDOWN ? 'poweroff' : 'reboot', reason);
        return [SBI_SUCCESS, 0];
      }
      case SBI_EXT_DBCN:
        return this.dbcn(fid, a(0), a(1), a(2));
      default:
        return [SBI_ERR_NOT_SUPPORTED, 0];
    }
  }

  private probe(eid: number): boolean {
    return [SBI_EXT_TIME, SBI_EXT_IPI, SBI_EXT_RFENCE, SBI_EXT_HSM, SBI_EXT_SRST, SBI_EXT_DBCN].includes(eid) ||
      (eid >= SBI_EXT_0_1_SET_TIMER && eid <= SBI_EXT_0_1_SHUTDOWN);
  }

  /** hart_mask / hart_mask_base (§3.1): base -1 means every hart. */
  private maskHas(hart: SbiHart, id: number): boolean {
    const mask = regBig(hart, 10);
    const base = regBig(hart, 11);
    if (base === 0xffffffffffffffffn) return true;
    const bitIndex = BigInt(id) - base;
    return bitIndex >= 0n && bitIndex < 64n && ((mask >> bitIndex) & 1n) === 1n;
  }

  private raiseSoftware(hart: SbiHart): void {
    hart.writeCsr(CSR_MIP, hart.readCsr(CSR_MIP) | BigInt(MIP_SSIP));
  }

  private reset(hart: SbiHart, kind: 'poweroff' | 'reboot', reason: number): void {
    this.env.reset({ kind, reason });
    hart.requestStop();
  }

  /** §12 Debug Console: a physical buffer in RAM, checked against its bounds. */
  private dbcn(fid: number, n: number, lo: number, hi: number): [number, number] {
    const { ram, ramBase } = this.env;
    if (fid === 2) {
      this.env.consoleWrite(new Uint8Array([n & 0xff]));
      return [SBI_SUCCESS, 0];
    }
    if (fid > 1) return [SBI_ERR_NOT_SUPPORTED, 0];
    // RV64: base_addr_lo holds the whole address; a non-zero high half lies beyond any RAM.
    const off = lo - ramBase;
    if (!(hi === 0 && off >= 0 && n >= 0 && off + n <= ram.length)) return [SBI_ERR_INVALID_PARAM, 0];
    ramPagerOf(ram)?.fetchRange(off, n); // RAM filled on demand (src/cpu/ram-pager.ts)
    if (fid === 0) {
      this.env.consoleWrite(ram.slice(off, off + n));
      return [SBI_SUCCESS, n];
    }
    const got = this.env.consoleRead(n);
    ram.set(got, off);
    markWritten(writtenPages(ram), off, got.length);
    this.env.ramWritten?.(off, got.length);
    return [SBI_SUCCESS, got.length];
  }
}
