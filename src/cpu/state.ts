/**
 * Save and restore of a hart's architectural state (issue 7's snapshots build on it).
 * Plain named fields, versioned; restore validates everything before touching the hart,
 * since a snapshot file is untrusted input. 64-bit values are [lo, hi] int32 pairs.
 * Caches (TLB, decode cache) are not state: restore flushes them.
 */
import { VisorError } from '../base/errors.js';
import type { Hart } from './hart.js';
import type { Privilege } from './constants.js';

export const HART_STATE_VERSION = 1;

type Pair = [number, number];

export interface HartState {
  version: 1;
  pc: Pair;
  priv: Privilege;
  /** x0..x31 as 32 [lo, hi] pairs. */
  x: Pair[];
  /** f0..f31 raw bits as 32 [lo, hi] pairs. */
  f: Pair[];
  fflags: number;
  frm: number;
  csr: {
    mstatus: number; medeleg: number; mideleg: number; mie: number; mipSw: number;
    mtvec: Pair; stvec: Pair; mepc: Pair; sepc: Pair; mcause: Pair; scause: Pair;
    mtval: Pair; stval: Pair; mscratch: Pair; sscratch: Pair; satp: Pair; menvcfg: Pair;
    senvcfg: number; stimecmp: Pair; mcounteren: number; scounteren: number; mcountinhibit: number;
    pmpcfg: number[]; pmpaddr: Pair[];
  };
  instret: number;
  reservation: number;
  reserved: Pair;
  waitingForInterrupt: boolean;
}

const TWO32 = 4294967296;

function pair(lo: number, hi: number): Pair {
  return [lo | 0, hi | 0];
}

export function saveHartState(h: Hart): HartState {
  const x: Pair[] = [];
  const f: Pair[] = [];
  for (let i = 0; i < 32; i++) {
    x.push(pair(h.regs[2 * i]!, h.regs[2 * i + 1]!));
    f.push(pair(h.fregs[2 * i]!, h.fregs[2 * i + 1]!));
  }
  const pmpaddr: Pair[] = [];
  for (let i = 0; i < 16; i++) pmpaddr.push(pair(h.pmp.addrLo[i]!, h.pmp.addrHi[i]!));
  return {
    version: HART_STATE_VERSION,
    pc: pair(h.pc % TWO32, Math.floor(h.pc / TWO32)),
    priv: h.priv,
    x, f,
    fflags: h.fpu.fflags,
    frm: h.fpu.frm,
    csr: {
      mstatus: h.mstatus, medeleg: h.medeleg, mideleg: h.mideleg, mie: h.mie, mipSw: h.mipSw,
      mtvec: pair(h.mtvecLo, h.mtvecHi), stvec: pair(h.stvecLo, h.stvecHi),
      mepc: pair(h.mepcLo, h.mepcHi), sepc: pair(h.sepcLo, h.sepcHi),
      mcause: pair(h.mcauseLo, h.mcauseHi), scause: pair(h.scauseLo, h.scauseHi),
      mtval: pair(h.mtvalLo, h.mtvalHi), stval: pair(h.stvalLo, h.stvalHi),
      mscratch: pair(h.mscratchLo, h.mscratchHi), sscratch: pair(h.sscratchLo, h.sscratchHi),
      satp: pair(h.satpLo, h.satpHi), menvcfg: pair(h.menvcfgLo, h.menvcfgHi),
      senvcfg: h.senvcfg, stimecmp: pair(h.stimecmpLo, h.stimecmpHi),
      mcounteren: h.mcounteren, scounteren: h.scounteren, mcountinhibit: h.mcountinhibit,
      pmpcfg: [...h.pmp.cfg], pmpaddr,
    },
    instret: h.instret,
    reservation: h.reservation,
    reserved: pair(h.reservedLo, h.reservedHi),
    waitingForInterrupt: h.waitingForInterrupt,
  };
}

const isInt32 = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= -2147483648 && v <= 4294967295;
const isPair = (v: unknown): v is Pair => Array.isArray(v) && v.length === 2 && isInt32(v[0]) && isInt32(v[1]);
const isPairs = (v: unknown, n: number): v is Pair[] => Array.isArray(v) && v.length === n && v.every(isPair);

function bad(what: string): never {
  throw new VisorError('CorruptImage', `invalid hart state: ${what}`);
}

/** Validates `s` completely, then loads it into `h`. */
export function restoreHartState(h: Hart, s: HartState): void {
  if (typeof s !== 'object' || s === null) bad('not an object');
  if (s.version !== HART_STATE_VERSION) bad(`version ${String(s.version)} (this visor reads ${HART_STATE_VERSION})`);
  if (!isPair(s.pc)) bad('pc');
  if (s.priv !== 0 && s.priv !== 1 && s.priv !== 3) bad('priv');
  if (!isPairs(s.x, 32) || s.x[0]![0] !== 0 || s.x[0]![1] !== 0) bad('x registers');
  if (!isPairs(s.f, 32)) bad('f registers');
  if (!isInt32(s.fflags) || s.fflags > 31 || !isInt32(s.frm) || s.frm > 7) bad('fcsr');
  const c = s.csr;
  if (typeof c !== 'object' || c === null) bad('csr');
  for (const k of ['mstatus', 'medeleg', 'mideleg', 'mie', 'mipSw', 'senvcfg', 'mcounteren', 'scounteren', 'mcountinhibit'] as const) {
    if (!isInt32(c[k])) bad(k);
  }
  for (const k of ['mtvec', 'stvec', 'mepc', 'sepc', 'mcause', 'scause', 'mtval', 'stval', 'mscratch', 'sscratch', 'satp', 'menvcfg', 'stimecmp'] as const) {
    if (!isPair(c[k])) bad(k);
  }
  if (!Array.isArray(c.pmpcfg) || c.pmpcfg.length !== 16 || !c.pmpcfg.every((v) => isInt32(v) && v >= 0 && v < 256)) bad('pmpcfg');
  if (!isPairs(c.pmpaddr, 16)) bad('pmpaddr');
  if (!Number.isSafeInteger(s.instret) || s.instret < 0) bad('instret');
  if (!Number.isSafeInteger(s.reservation) || s.reservation < -1) bad('reservation');
  if (!isPair(s.reserved) || typeof s.waitingForInterrupt !== 'boolean') bad('reservation or wfi state');
  const satpMode = (c.satp[1] >>> 28);
  if (satpMode !== 0 && satpMode !== 8 && satpMode !== 9) bad('satp mode');

  h.pc = (s.pc[1] | 0) * TWO32 + (s.pc[0] >>> 0);
  h.priv = s.priv;
  for (let i = 0; i < 32; i++) {
    h.regs[2 * i] = s.x[i]![0]; h.regs[2 * i + 1] = s.x[i]![1];
    h.fregs[2 * i] = s.f[i]![0]; h.fregs[2 * i + 1] = s.f[i]![1];
  }
  h.fpu.fflags = s.fflags;
  h.fpu.frm = s.frm;
  h.mstatus = c.mstatus | 0; h.medeleg = c.medeleg | 0; h.mideleg = c.mideleg | 0; h.mie = c.mie | 0; h.mipSw = c.mipSw | 0;
  [h.mtvecLo, h.mtvecHi] = c.mtvec; [h.stvecLo, h.stvecHi] = c.stvec;
  [h.mepcLo, h.mepcHi] = c.mepc; [h.sepcLo, h.sepcHi] = c.sepc;
  [h.mcauseLo, h.mcauseHi] = c.mcause; [h.scauseLo, h.scauseHi] = c.scause;
  [h.mtvalLo, h.mtvalHi] = c.mtval; [h.stvalLo, h.stvalHi] = c.stval;
  [h.mscratchLo, h.mscratchHi] = c.mscratch; [h.sscratchLo, h.sscratchHi] = c.sscratch;
  [h.satpLo, h.satpHi] = c.satp; [h.menvcfgLo, h.menvcfgHi] = c.menvcfg;
  h.senvcfg = c.senvcfg | 0;
  [h.stimecmpLo, h.stimecmpHi] = c.stimecmp;
  h.mcounteren = c.mcounteren | 0; h.scounteren = c.scounteren | 0; h.mcountinhibit = c.mcountinhibit | 0;
  for (let i = 0; i < 16; i++) {
    h.pmp.cfg[i] = c.pmpcfg[i]!;
    h.pmp.addrLo[i] = c.pmpaddr[i]![0]; h.pmp.addrHi[i] = c.pmpaddr[i]![1];
  }
  h.pmp.recompute();
  h.instret = s.instret;
  h.reservation = s.reservation;
  [h.reservedLo, h.reservedHi] = s.reserved;
  h.waitingForInterrupt = s.waitingForInterrupt;
  h.flushTlb();
  h.invalidateCode(h.memory.ramBase, h.memory.ram.length);
  h.afterContextChange();
  h.updateTimer();
}
