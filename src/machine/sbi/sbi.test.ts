import { describe, expect, it } from 'vitest';
import { regBig, setReg } from '../hart.js';
import {
  BuiltinSbi, SBI_ERR_ALREADY_AVAILABLE, SBI_ERR_INVALID_PARAM, SBI_ERR_NOT_SUPPORTED, SBI_EXT_BASE, SBI_EXT_DBCN,
  SBI_EXT_HSM, SBI_EXT_IPI, SBI_EXT_SRST, SBI_EXT_TIME, SBI_SPEC_VERSION, type SbiHart, type SbiResetEvent,
} from './sbi.js';

class FakeSbiHart implements SbiHart {
  regs = new Int32Array(64);
  csrs = new Map<number, bigint>();
  stopped = false;
  readCsr(n: number) {
    return this.csrs.get(n) ?? 0n;
  }
  writeCsr(n: number, v: bigint) {
    this.csrs.set(n, v);
  }
  requestStop() {
    this.stopped = true;
  }
}

function setup() {
  const out: number[] = [];
  const input = [...new TextEncoder().encode('xyz')];
  const resets: SbiResetEvent[] = [];
  const ram = new Uint8Array(0x1000);
  const sbi = new BuiltinSbi({
    ram,
    ramBase: 0x8000_0000,
    consoleWrite: (b) => out.push(...b),
    consoleRead: (max) => new Uint8Array(input.splice(0, max)),
    reset: (e) => resets.push(e),
  });
  const hart = new FakeSbiHart();
  const call = (eid: number, fid: number, ...args: (number | bigint)[]) => {
    setReg(hart, 17, eid);
    setReg(hart, 16, fid);
    args.forEach((a, i) => setReg(hart, 10 + i, a));
    expect(sbi.handle(hart)).toBe(true);
    return [BigInt.asIntN(64, regBig(hart, 10)), regBig(hart, 11)] as const;
  };
  return { out, resets, ram, hart, call };
}

describe('BuiltinSbi', () => {
  it('answers the base extension', () => {
    const { call } = setup();
    expect(call(SBI_EXT_BASE, 0)).toEqual([0n, BigInt(SBI_SPEC_VERSION)]);
    expect(call(SBI_EXT_BASE, 3, SBI_EXT_TIME)).toEqual([0n, 1n]);
    expect(call(SBI_EXT_BASE, 3, SBI_EXT_DBCN)).toEqual([0n, 1n]);
    expect(call(SBI_EXT_BASE, 3, 0x504d55)).toEqual([0n, 0n]); // PMU: not implemented
    expect(call(0x12345678, 0)[0]).toBe(BigInt(SBI_ERR_NOT_SUPPORTED));
  });

  it('programs stimecmp for set_timer and raises SSIP for an IPI to itself', () => {
    const { call, hart } = setup();
    call(SBI_EXT_TIME, 0, 0x1_2345_6789n);
    expect(hart.readCsr(0x14d)).toBe(0x1_2345_6789n);
    call(SBI_EXT_IPI, 0, 1, 0);
    expect(hart.readCsr(0x344)).toBe(2n);
    hart.writeCsr(0x344, 0n);
    call(SBI_EXT_IPI, 0, 0b10, 0); // hart 1 only: nothing for us
    expect(hart.readCsr(0x344)).toBe(0n);
    call(SBI_EXT_IPI, 0, 0, -1n); // every hart
    expect(hart.readCsr(0x344)).toBe(2n);
  });

  it('reports HSM state for the one hart', () => {
    const { call } = setup();
    expect(call(SBI_EXT_HSM, 2, 0)).toEqual([0n, 0n]);
    expect(call(SBI_EXT_HSM, 0, 0, 0x8020_0000, 0)[0]).toBe(BigInt(SBI_ERR_ALREADY_AVAILABLE));
    expect(call(SBI_EXT_HSM, 2, 5)[0]).toBe(BigInt(SBI_ERR_INVALID_PARAM));
  });

  it('writes and reads the debug console through RAM, bounds-checked', () => {
    const { call, out, ram } = setup();
    ram.set(new TextEncoder().encode('hello'), 0x100);
    expect(call(SBI_EXT_DBCN, 0, 5, 0x8000_0100, 0)).toEqual([0n, 5n]);
    expect(new TextDecoder().decode(new Uint8Array(out))).toBe('hello');
    expect(call(SBI_EXT_DBCN, 1, 8, 0x8000_0200, 0)).toEqual([0n, 3n]);
    expect(new TextDecoder().decode(ram.subarray(0x200, 0x203))).toBe('xyz');
    expect(call(SBI_EXT_DBCN, 0, 0x2000, 0x8000_0000, 0)[0]).toBe(BigInt(SBI_ERR_INVALID_PARAM));
    expect(call(SBI_EXT_DBCN, 0, 1, 0x1000, 0)[0]).toBe(BigInt(SBI_ERR_INVALID_PARAM));
    call(SBI_EXT_DBCN, 2, 0x21);
    expect(out.at(-1)).toBe(0x21);
  });

  it('handles legacy console calls and system reset', () => {
    const { call, out, resets, hart } = setup();
    call(0x01, 0, 0x41);
    expect(out).toEqual([0x41]);
    expect(call(0x02, 0)[0]).toBe(0x78n);
    call(SBI_EXT_SRST, 0, 0, 0);
    expect(resets).toEqual([{ kind: 'poweroff', reason: 0 }]);
    expect(hart.stopped).toBe(true);
    call(SBI_EXT_SRST, 0, 1, 1);
    expect(resets[1]).toEqual({ kind: 'reboot', reason: 1 });
    expect(call(SBI_EXT_SRST, 0, 7, 0)[0]).toBe(BigInt(SBI_ERR_INVALID_PARAM));
  });
});
