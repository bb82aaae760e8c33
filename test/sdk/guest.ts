/**
 * Tiny guests for lifecycle and snapshot tests, assembled here (no Debian needed, boots in
 * microseconds). Each is a RISC-V Image started by the built-in SBI in S-mode.
 */
import { writeFileSync } from 'node:fs';
import {
  Asm, CSR, X, add, addi, andi, csrr, csrs, csrw, ecall, lbu, ld, mul, sb, sd, slli, srli, sw, wfi, xor,
} from '../support/riscv-asm.js';

export const UART = 0x1000_0000;
const SBI_EXT_SRST = 0x53525354;

/** A RISC-V Image (Linux boot-image-header.rst) around `body`. */
export function kernelImage(body: (a: Asm) => void): Uint8Array {
  const a = new Asm(0x8020_0000);
  a.j('start');
  a.space(0x30 - a.size);
  a.ascii('RISCV\0\0\0');
  a.ascii('RSC\x05');
  a.word(0);
  a.label('start');
  body(a);
  return a.bytes();
}

export function writeKernel(path: string, body: (a: Asm) => void): string {
  writeFileSync(path, kernelImage(body));
  return path;
}

/** Prints a constant string on the UART (t0, t1 clobbered). */
export function print(a: Asm, s: string): void {
  a.li(X.t0, UART);
  for (const c of s) a.li(X.t1, c.charCodeAt(0)).emit(sb(X.t1, X.t0, 0));
}

/** Prints register `r` (not t0-t2) as 16 hex digits (t0-t2 clobbered). */
export function printHex(a: Asm, r: number, id: string): void {
  a.li(X.t0, UART).li(X.t2, 60);
  a.label(`hex${id}`);
  a.emit(srlReg(X.t1, r, X.t2), andi(X.t1, X.t1, 15), addi(X.t1, X.t1, 48));
  a.li(X.t3, 58).blt(X.t1, X.t3, `digit${id}`).emit(addi(X.t1, X.t1, 39));
  a.label(`digit${id}`).emit(sb(X.t1, X.t0, 0), addi(X.t2, X.t2, -4));
  a.bge(X.t2, X.zero, `hex${id}`);
}

function srlReg(rd: number, rs1: number, rs2: number): number {
  // srl rd, rs1, rs2 (R-type, opcode OP, funct3 5, funct7 0)
  return (0 << 25) | (rs2 << 20) | (rs1 << 15) | (5 << 12) | (rd << 7) | 0x33;
}

export function sbiShutdown(a: Asm, reason = 0): void {
  a.li(X.a7, SBI_EXT_SRST).li(X.a6, 0).li(X.a0, 0).li(X.a1, reason).emit(ecall());
  a.label('hang').j('hang');
}

export interface CounterGuestOptions {
  /** Lines to print before powering off (0: forever). */
  ticks: number;
  /** Busy-loop iterations between lines (each a few instructions that write RAM). */
  work: number;
  /** Sleep in wfi for this many timer ticks (10 MHz) after each line; 0: no sleep. */
  sleepTicks: number;
  /** Print the `time` CSR on each line (identical across runs only in deterministic mode). */
  printTime?: boolean;
}

/**
 * A guest loop: line i is "i hash [time]\n" where hash mixes RAM it keeps writing (a 64 KiB
 * table at 0x8080_0000), so a snapshot that lost or damaged RAM, a register or the timer shows
 * up in the output. Sleeps in wfi between lines so idle and timer paths are exercised.
 */
export function counterGuest(o: CounterGuestOptions): Uint8Array {
  return kernelImage((a) => {
    print(a, 'counter guest\n');
    a.li(X.s0, 0); // line number
    a.li(X.s1, 0x1234_5678); // hash
    a.li(X.s2, 0x8080_0000); // table (inside a 16 MiB guest)
    a.li(X.s3, o.ticks);
    a.li(X.t1, 1 << 5).emit(csrs(CSR.sie, X.t1)); // STIE: wfi wakes on the S timer
    a.label('line');
    // work: for k in 0..work: table[k % 8192] ^= hash; hash = hash * 31 + k
    a.li(X.s4, 0).li(X.s5, o.work);
    a.label('work');
    a.beq(X.s4, X.s5, 'worked');
    a.emit(andi(X.t3, X.s4, 0x7ff), slli(X.t3, X.t3, 3), add(X.t3, X.t3, X.s2));
    a.emit(ld(X.t4, X.t3, 0), xor(X.t4, X.t4, X.s1), sd(X.t4, X.t3, 0));
    a.li(X.t5, 31).emit(mul(X.s1, X.s1, X.t5), add(X.s1, X.s1, X.t4), add(X.s1, X.s1, X.s4), addi(X.s4, X.s4, 1));
    a.j('work');
    a.label('worked');
    printHex(a, X.s0, 'n');
    print(a, ' ');
    printHex(a, X.s1, 'h');
    if (o.printTime) {
      print(a, ' ');
      a.emit(csrr(X.s6, CSR.time));
      printHex(a, X.s6, 't');
    }
    print(a, '\n');
    if (o.sleepTicks > 0) {
      a.emit(csrr(X.t1, CSR.time));
      a.li(X.t2, o.sleepTicks).emit(add(X.t1, X.t1, X.t2), csrw(CSR.stimecmp, X.t1));
      a.emit(wfi());
      a.li(X.t1, -1).emit(csrw(CSR.stimecmp, X.t1)); // clear STIP
    }
    a.emit(addi(X.s0, X.s0, 1));
    a.beqz(X.s3, 'line');
    a.blt(X.s0, X.s3, 'line');
    print(a, 'done\n');
    sbiShutdown(a);
  });
}

/** Echoes console input back, upper-cased by one (a -> b), forever. */
export function echoGuest(): Uint8Array {
  return kernelImage((a) => {
    print(a, 'echo ready\n');
    a.li(X.t0, UART);
    a.label('wait').emit(lbu(X.t1, X.t0, 5), andi(X.t1, X.t1, 1));
    a.beqz(X.t1, 'wait');
    a.emit(lbu(X.t1, X.t0, 0), addi(X.t1, X.t1, 1), sb(X.t1, X.t0, 0));
    a.j('wait');
  });
}

/** Prints a Linux-style panic line, then spins (as a panicked kernel with panic=0 would). */
export function panicGuest(): Uint8Array {
  return kernelImage((a) => {
    print(a, 'booting\n');
    print(a, '[    1.234567] Kernel panic - not syncing: VFS: Unable to mount root fs\n');
    a.label('spin').j('spin');
  });
}

/** A panic as Linux with panic=-1 ends one: the message, then a reboot at once. */
export function panicRebootGuest(): Uint8Array {
  return kernelImage((a) => {
    print(a, '[    1.234567] Kernel panic - not syncing: Attempted to kill init!\n');
    a.li(X.t0, 0x10_0000).li(X.t1, 0x7777).emit(sw(X.t1, X.t0, 0));
    a.label('hang').j('hang');
  });
}

/** Prints a line and asks the test finisher (syscon) for a reboot, every boot. */
export function rebootGuest(): Uint8Array {
  return kernelImage((a) => {
    print(a, 'boot\n');
    a.li(X.t0, 0x10_0000).li(X.t1, 0x7777).emit(sw(X.t1, X.t0, 0));
    a.label('hang').j('hang');
  });
}

/** Spins forever, printing nothing after its banner. */
export function spinGuest(): Uint8Array {
  return kernelImage((a) => {
    print(a, 'spin\n');
    a.label('spin').emit(srli(X.t1, X.t1, 1)).j('spin');
  });
}

export { wfi };
