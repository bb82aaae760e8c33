/**
 * The warm-up program (see warmup.ts): a bare-metal RV64GC program that walks the paths a
 * Linux boot takes through the hart, in M, S and U mode, on the virt board. It is data for
 * V8, not a test: it checks nothing, it only has to run every path once and power off.
 *
 * Physical layout (RAM at 0x8000_0000, offsets below):
 *   0x0000  M code: CSR sweep, traps and interrupts in M, MMIO, PMP, MPRV, delegation, mret
 *   0x3000  S code: paging on (Sv39, then Sv48), SBI calls, S interrupts (Sstc, IPI, PLIC),
 *           page faults, the compressed catalog, the JIT's hot loop, then U and poweroff
 *   0x6000  the catalog page: integer, memory, F/D and atomic routines called from every
 *           mode and mapping, and the hot loop the JIT compiles (so the compiler sees them all)
 *   0x7000  a function the hot loop calls on another page (a page-to-page chain)
 *   0x8000  U code (mapped at U_CODE_VA)
 *   0x10000 data, two pages (accesses cross between them)
 *   0x14000 U data, two pages (mapped at U_DATA_VA)
 *   0x20000 page tables
 *
 * Virtual layout (Sv39 root; the Sv48 root maps its first and last entries to the same table):
 *   [0]   1 GiB identity (MMIO: syscon, CLINT, PLIC, UART), RW
 *   [1]   4 KiB pages: U code at U_CODE_VA, the catalog again at U_CAT_VA (U, RX)
 *   [2]   1 GiB identity of RAM (RWX), for the switch-on of paging, as Linux does
 *   [3]   a 2 MiB megapage of RAM at MEGA_VA with A and D clear (the walk sets them)
 *   [4]   nothing (page faults); [5] a table with no entries; [6] a misaligned gigapage;
 *   [7]   a W-without-R leaf (reserved); [8] RAM read-only (store page faults)
 *   [255] 4 KiB U data pages at U_DATA_VA with A and D clear
 *   [510] the kernel's mapping: RAM at KERNEL_VA (0xffff_ffff_8000_0000), RWX, global
 */
import {
  CSR_FCSR, CSR_FFLAGS, CSR_FRM, CSR_MCAUSE, CSR_MCOUNTEREN, CSR_MCOUNTINHIBIT, CSR_MEDELEG, CSR_MENVCFG,
  CSR_MEPC, CSR_MHARTID, CSR_MIDELEG, CSR_MIE, CSR_MIP, CSR_MISA, CSR_MSCRATCH, CSR_MSTATUS, CSR_MTVAL, CSR_MTVEC,
  CSR_PMPADDR0, CSR_PMPCFG0, CSR_SATP, CSR_SCAUSE, CSR_SCOUNTEREN, CSR_SENVCFG, CSR_SEPC, CSR_SIE, CSR_SIP,
  CSR_SSCRATCH, CSR_SSTATUS, CSR_STIMECMP, CSR_STVAL, CSR_STVEC, CSR_TIME, CSR_CYCLE, CSR_INSTRET, CSR_MCYCLE,
  CSR_MINSTRET, CSR_MVENDORID, CSR_MARCHID, CSR_MIMPID, CSR_MCONFIGPTR, CSR_HPMCOUNTER3, CSR_MHPMCOUNTER3,
  CSR_MHPMEVENT3, CSR_TSELECT, CSR_TDATA1,
  MIP_MSIP, MIP_MTIP, MIP_SEIP, MIP_SSIP, MIP_STIP, MSTATUS_MIE, MSTATUS_MPP, MSTATUS_MPRV,
  MSTATUS_MXR, MSTATUS_SIE, MSTATUS_SPP, MSTATUS_SUM, PTE_A, PTE_D, PTE_G, PTE_R, PTE_U, PTE_V, PTE_W, PTE_X,
  SATP_MODE_SV39, SATP_MODE_SV48,
} from '../../cpu/constants.js';
import { VIRT_IRQ, VIRT_MEMMAP } from '../memmap.js';
import {
  A0, A1, A2, A3, A4, A5, A6, A7, ALU, ALU_I, ALU_W, AMOS, Asm, BRANCHES, C, LOADS, RA, S0, S1, S2, S3, S4, S5, SP,
  STORES, T0, T1, T2, T3, T4, T5, T6, ZERO, type AluOp, type AluWOp, type FpOp,
} from './asm.js';

export const RAM_BASE = VIRT_MEMMAP.dram.base;
const M_CODE = 0x0000, S_CODE = 0x3000, CAT = 0x6000, FAR = 0x7000, U_CODE = 0x8000;
const DATA = 0x10000, U_DATA = 0x14000, PT = 0x20000;
const SV39_ROOT = PT, L1_USER = PT + 0x1000, L0_USER = PT + 0x2000, L1_MEGA = PT + 0x3000, L1_UDATA = PT + 0x4000;
const L0_UDATA = PT + 0x5000, L1_EMPTY = PT + 0x6000, SV48_ROOT = PT + 0x7000;

/** Where the kernel's image is mapped, as in Linux (Sv39 and Sv48 alike). */
export const KERNEL_VA = 0xffff_ffff_8000_0000n;
/** KERNEL_VA minus RAM_BASE: physical + KOFF = kernel virtual. */
const KOFF = KERNEL_VA - BigInt(RAM_BASE);
const U_CODE_VA = 0x4001_0000, U_CAT_VA = 0x4001_6000, MEGA_VA = 0xc000_0000;
const U_DATA_VA = 0x3f_ffff_e000;
const UNMAPPED_VA = 0x1_0000_0000, EMPTY_TABLE_VA = 0x1_4000_0000, MISALIGNED_VA = 0x1_8000_0000;
const RESERVED_VA = 0x1_c000_0000, READ_ONLY_VA = 0x2_0000_0000;

/**
 * The JIT threshold of the warm-up hart: the hot loop's pages pass it, and so do the few pages
 * entered that often in all (a page compiles after `threshold` entries summed over its offsets,
 * src/jit/jit.ts), such as the trap handlers' (~40 entries at each of several offsets).
 */
export const WARMUP_JIT_THRESHOLD = 64;
/** Iterations of the hot loop: past the threshold, and a few in compiled code. */
export const HOT_ITERATIONS = WARMUP_JIT_THRESHOLD + 8;

// CLINT (ACLINT MSWI/MTIMER), PLIC and UART registers the program touches.
const CLINT_MSIP = VIRT_MEMMAP.clint.base;
const CLINT_MTIMECMP = VIRT_MEMMAP.clint.base + 0x4000;
const CLINT_MTIME = VIRT_MEMMAP.clint.base + 0xbff8;
const PLIC = VIRT_MEMMAP.plic.base;
const PLIC_S_CONTEXT = 1; // context 0 is hart 0's M mode, 1 its S mode
const PLIC_S_ENABLE = PLIC + 0x2000 + 0x80 * PLIC_S_CONTEXT;
const PLIC_S_CLAIM = PLIC + 0x200000 + 0x1000 * PLIC_S_CONTEXT + 4;
const UART = VIRT_MEMMAP.uart.base;
const UART_IER = UART + 1, UART_LSR = UART + 5;
const UART_IER_THRI = 2;
const SYSCON = VIRT_MEMMAP.test.base;
const SYSCON_POWEROFF = 0x5555;
const RTC = VIRT_MEMMAP.rtc.base;
const MENVCFG_STCE = 1n << 63n;
const FS_INITIAL = 1 << 13;
const MPP_S = 1 << 11;
/** Exceptions delegated to S, as the built-in SBI's boot path sets them (virt.ts). */
const MEDELEG_AS_BOOT = 0xb1ff;

// SBI (SBI spec v2.0): extension and function ids.
const SBI_EXT_BASE = 0x10, SBI_EXT_TIME = 0x54494d45, SBI_EXT_IPI = 0x735049, SBI_EXT_RFENCE = 0x52464e43;
const SBI_EXT_HSM = 0x48534d, SBI_EXT_DBCN = 0x4442434e, SBI_EXT_0_1_CONSOLE_PUTCHAR = 0x01;

/** The U-mode ecall number that ends the U phase (the S handler resumes S code). */
const U_DONE = -1;

export interface WarmUpImage {
  /** Byte arrays to copy into RAM at these offsets. */
  segments: { ramOffset: number; bytes: Uint8Array }[];
  /** Where the M code starts (the reset ROM jumps here). */
  entry: number;
}

/** Builds the program and its page tables. Deterministic: the same bytes every time. */
export function buildWarmUpImage(): WarmUpImage {
  const cat = catalogPage();
  const segments = [
    { ramOffset: M_CODE, bytes: mCode(cat).assemble() },
    { ramOffset: S_CODE, bytes: sCode(cat).assemble() },
    { ramOffset: CAT, bytes: cat.assemble() },
    { ramOffset: FAR, bytes: new Asm(RAM_BASE + FAR).label('far').addi(T3, T3, 1).ret().assemble() },
    { ramOffset: U_CODE, bytes: uCode(cat).assemble() },
    { ramOffset: PT, bytes: pageTables() },
  ];
  return { segments, entry: RAM_BASE + M_CODE };
}

// ---------------------------------------------------------------- page tables

function pageTables(): Uint8Array {
  const bytes = new Uint8Array(0x8000);
  const dv = new DataView(bytes.buffer);
  const pte = (table: number, index: number, pa: number, flags: number) =>
    dv.setBigUint64(table - PT + index * 8, (BigInt(pa) >> 12n) << 10n | BigInt(flags), true);
  const ptr = (table: number, index: number, next: number) => pte(table, index, RAM_BASE + next, PTE_V);
  const RWX = PTE_V | PTE_R | PTE_W | PTE_X;
  pte(SV39_ROOT, 0, 0, PTE_V | PTE_R | PTE_W | PTE_A | PTE_D);
  ptr(SV39_ROOT, 1, L1_USER);
  ptr(L1_USER, 0, L0_USER);
  pte(L0_USER, (U_CODE_VA >>> 12) & 511, RAM_BASE + U_CODE, PTE_V | PTE_R | PTE_X | PTE_U);
  pte(L0_USER, (U_CAT_VA >>> 12) & 511, RAM_BASE + CAT, PTE_V | PTE_R | PTE_X | PTE_U | PTE_A);
  pte(SV39_ROOT, 2, RAM_BASE, RWX | PTE_A | PTE_D);
  ptr(SV39_ROOT, 3, L1_MEGA);
  pte(L1_MEGA, 0, RAM_BASE, PTE_V | PTE_R | PTE_W); // A and D clear
  ptr(SV39_ROOT, 5, L1_EMPTY);
  pte(SV39_ROOT, 6, RAM_BASE + 0x1000, RWX | PTE_A | PTE_D); // not 1 GiB aligned
  pte(SV39_ROOT, 7, RAM_BASE, PTE_V | PTE_W | PTE_A); // W without R is reserved
  pte(SV39_ROOT, 8, RAM_BASE, PTE_V | PTE_R | PTE_A);
  ptr(SV39_ROOT, 255, L1_UDATA);
  ptr(L1_UDATA, 511, L0_UDATA);
  pte(L0_UDATA, 510, RAM_BASE + U_DATA, PTE_V | PTE_R | PTE_W | PTE_U);
  pte(L0_UDATA, 511, RAM_BASE + U_DATA + 0x1000, PTE_V | PTE_R | PTE_W | PTE_U);
  pte(SV39_ROOT, 510, RAM_BASE, RWX | PTE_G | PTE_A | PTE_D);
  ptr(SV48_ROOT, 0, SV39_ROOT);
  ptr(SV48_ROOT, 511, SV39_ROOT);
  return bytes;
}

const satp = (mode: number, root: number) => (BigInt(mode) << 60n) | BigInt((RAM_BASE + root) >>> 12);

// ---------------------------------------------------------------- M mode

/** CSRs read and written back in M (read-only ones trap as illegal instructions and are skipped). */
const M_SWEEP = [
  CSR_FFLAGS, CSR_FRM, CSR_FCSR, CSR_CYCLE, CSR_TIME, CSR_INSTRET, CSR_HPMCOUNTER3, CSR_SSTATUS, CSR_SIE, CSR_STVEC,
  CSR_SCOUNTEREN, CSR_SENVCFG, CSR_SSCRATCH, CSR_SEPC, CSR_SCAUSE, CSR_STVAL, CSR_SIP, CSR_STIMECMP, CSR_SATP,
  CSR_MVENDORID, CSR_MARCHID, CSR_MIMPID, CSR_MHARTID, CSR_MCONFIGPTR, CSR_MSTATUS, CSR_MISA, CSR_MEDELEG, CSR_MIDELEG,
  CSR_MIE, CSR_MTVEC, CSR_MCOUNTEREN, CSR_MENVCFG, CSR_MCOUNTINHIBIT, CSR_MHPMEVENT3, CSR_MSCRATCH, CSR_MEPC,
  CSR_MCAUSE, CSR_MTVAL, CSR_MIP, CSR_PMPCFG0, CSR_PMPCFG0 + 2, CSR_PMPADDR0, CSR_PMPADDR0 + 1, CSR_MCYCLE,
  CSR_MINSTRET, CSR_MHPMCOUNTER3, CSR_TSELECT, CSR_TDATA1, 0x7c0, // 0x7c0: custom, absent (illegal)
];

function mCode(cat: Asm): Asm {
  const a = new Asm(RAM_BASE + M_CODE);
  a.label('m_entry');
  a.la(T0, 'm_trap').csrw(0x305, T0);
  a.li(S1, KOFF);
  a.li(T0, FS_INITIAL).csrs(CSR_MSTATUS, T0);
  // Every CSR, read and written back; then each instruction form.
  for (const c of M_SWEEP) a.csrr(T0, c).csrw(c, T0);
  a.li(T1, 0x1234_5678_9abc_def0n);
  a.csr('csrrw', T2, CSR_MSCRATCH, T1).csr('csrrs', T2, CSR_MSCRATCH, T1).csr('csrrc', T2, CSR_MSCRATCH, T1);
  a.csr('csrrs', T2, CSR_MSCRATCH, ZERO).csr('csrrc', ZERO, CSR_MSCRATCH, ZERO);
  a.csr('csrrwi', T2, CSR_MSCRATCH, 5).csr('csrrsi', T2, CSR_MSCRATCH, 3).csr('csrrci', T2, CSR_MSCRATCH, 1);
  a.csr('csrrsi', ZERO, CSR_MSCRATCH, 0).csr('csrrwi', ZERO, CSR_FRM, 0).csr('csrrwi', ZERO, CSR_FFLAGS, 0);

  // The catalog on physical addresses (Numbers beyond int32 in every address computation).
  a.li(A0, RAM_BASE + DATA);
  for (const r of ['alu', 'mem', 'fp', 'amo']) a.li(T0, RAM_BASE + CAT + cat.offsetOf(r)).jalr(RA, T0);

  // Synchronous traps in M (the handler skips 4 bytes, or returns to ra for fetch faults).
  a.half(0).half(C.nop()); // c.unimp (illegal), padded to 4 bytes
  a.ebreak().ecall();
  a.li(T0, 0).load('ld', T1, T0, 0).store('sd', T1, T0, 0); // nothing mapped at 0: access faults
  a.li(T0, RAM_BASE + DATA + 1).amo('amoadd', false, T1, T2, T0).amo('lr', true, T1, ZERO, T0); // misaligned AMO and LR
  a.li(T0, 0x4000_0000_0000_0000n).jalr(RA, T0); // beyond any pc: fetch fault at the jump
  a.li(T0, 0).jalr(RA, T0); // fetch from nothing
  // MMIO of every device the kernel reads early.
  a.li(T0, UART).load('lbu', T1, T0, UART_LSR - UART).store('sb', T1, T0, 7).load('lbu', T1, T0, 7);
  a.li(T0, CLINT_MTIME).load('ld', T1, T0, 0).load('lw', T1, T0, 4);
  a.li(T0, RTC).load('lw', T1, T0, 0).load('lw', T2, T0, 4);
  a.li(T0, PLIC + 4 * VIRT_IRQ.uart).load('lw', T1, T0, 0).store('sw', T1, T0, 0);

  // M interrupts: software (CLINT msip), then the timer (mtimecmp), taken after a CSR write.
  a.li(T0, MIP_MSIP | MIP_MTIP).csrs(CSR_MIE, T0).li(T0, MSTATUS_MIE).csrs(CSR_MSTATUS, T0);
  a.li(T0, CLINT_MSIP).li(T1, 1).store('sw', T1, T0, 0).csrr(T1, CSR_MSCRATCH);
  a.li(T0, CLINT_MTIMECMP).store('sd', ZERO, T0, 0).csrr(T1, CSR_MSCRATCH);
  a.li(T0, MSTATUS_MIE).csrc(CSR_MSTATUS, T0).csrw(CSR_MIE, ZERO);
  // wfi with an interrupt pending but masked goes on at once...
  a.li(T0, MIP_SSIP).csrs(CSR_MIP, T0).csrs(CSR_MIE, T0).wfi().csrc(CSR_MIP, T0).csrw(CSR_MIE, ZERO);
  // ...and with none it waits (the driver advances the clock to mtimecmp); MIE is off, so no trap.
  a.li(T0, CLINT_MTIME).load('ld', T1, T0, 0).addi(T1, T1, 50).li(T0, CLINT_MTIMECMP).store('sd', T1, T0, 0);
  a.li(T0, MIP_MTIP).csrw(CSR_MIE, T0).wfi().csrw(CSR_MIE, ZERO);
  a.li(T0, CLINT_MTIMECMP).li(T1, -1).store('sd', T1, T0, 0);
  a.j('m_straddle');
  a.label('m_straddle_back');

  // PMP as the boot sets it (one NAPOT entry over everything), then MPRV loads through Sv39.
  a.li(T0, (1n << 53n) - 1n).csrw(CSR_PMPADDR0, T0).li(T0, 0x1f).csrw(CSR_PMPCFG0, T0);
  a.li(T0, satp(SATP_MODE_SV39, SV39_ROOT)).csrw(CSR_SATP, T0).sfenceVma();
  a.li(T0, MSTATUS_MPP).csrc(CSR_MSTATUS, T0).li(T0, MPP_S | MSTATUS_MPRV).csrs(CSR_MSTATUS, T0);
  a.li(T0, KERNEL_VA + BigInt(DATA)).load('ld', T1, T0, 0).store('sd', T1, T0, 8);
  a.li(T0, MSTATUS_MPRV).csrc(CSR_MSTATUS, T0).csrw(CSR_SATP, ZERO).sfenceVma();

  // Hand over to S as the built-in SBI's boot does (virt.ts startInSupervisor), then mret.
  a.li(T0, MEDELEG_AS_BOOT).csrw(CSR_MEDELEG, T0);
  a.li(T0, MIP_SSIP | MIP_STIP | MIP_SEIP).csrw(CSR_MIDELEG, T0);
  a.li(T0, -1).csrw(CSR_MCOUNTEREN, T0).li(T0, 7).csrw(CSR_SCOUNTEREN, T0);
  a.li(T0, MENVCFG_STCE).csrw(CSR_MENVCFG, T0);
  a.la(T0, 's_entry_phys').csrw(CSR_MEPC, T0);
  a.mret();

  // M trap handler: skip the instruction, or return to ra after a fetch fault; interrupts
  // are cleared at their source.
  a.padTo((a.here + 3) & ~3).label('m_trap');
  a.csrr(T5, CSR_MCAUSE).branch('blt', T5, ZERO, 'm_irq');
  a.addi(T6, T5, -1).branch('beq', T6, ZERO, 'm_fetch');
  a.csrr(T6, CSR_MEPC).addi(T6, T6, 4).csrw(CSR_MEPC, T6).mret();
  a.label('m_fetch').csrw(CSR_MEPC, RA).mret();
  a.label('m_irq').shift('sll', T5, T5, 1).shift('srl', T5, T5, 1).addi(T6, T5, -3).branch('bne', T6, ZERO, 'm_timer');
  a.li(T6, CLINT_MSIP).store('sw', ZERO, T6, 0).mret();
  a.label('m_timer').li(T6, CLINT_MTIMECMP).li(T5, -1).store('sd', T5, T6, 0).mret();

  // A 32-bit instruction across a page boundary (compressed code makes these common).
  a.padTo(((a.here >> 12) + 1 << 12) - 2).label('m_straddle').addi(T0, T0, 1).j('m_straddle_back');
  // S code follows at S_CODE: its entry label lives there; reach it by address.
  a.padTo(S_CODE - M_CODE).label('s_entry_phys');
  return a;
}

// ---------------------------------------------------------------- S mode

function sCode(cat: Asm): Asm {
  const a = new Asm(RAM_BASE + S_CODE);
  const catCall = (label: string) => a.li(T0, KERNEL_VA + BigInt(CAT + cat.offsetOf(label))).jalr(RA, T0);
  // Entered at the physical address with paging off: stvec at the kernel mapping, paging on,
  // then on to the kernel mapping (Linux's relocate_enable_mmu does the same).
  a.la(T0, 's_trap').r('add', T0, T0, S1).csrw(CSR_STVEC, T0);
  a.li(T0, satp(SATP_MODE_SV39, SV39_ROOT)).csrw(CSR_SATP, T0).sfenceVma();
  a.la(T0, 's_high').r('add', T0, T0, S1).jalr(ZERO, T0);
  a.label('s_high');

  // The catalog through each kind of mapping: kernel gigapage, RAM identity, the megapage
  // (A/D set by the walk), the U data pages with SUM; MXR on and off.
  for (const base of [KERNEL_VA + BigInt(DATA), BigInt(RAM_BASE + DATA), BigInt(MEGA_VA + DATA)]) {
    a.li(A0, base);
    for (const r of ['alu', 'mem', 'fp', 'amo']) catCall(r);
  }
  a.li(T0, MSTATUS_SUM).csrs(CSR_SSTATUS, T0).li(A0, U_DATA_VA);
  catCall('mem');
  a.li(T0, MSTATUS_SUM).csrc(CSR_SSTATUS, T0);
  a.li(T0, MSTATUS_MXR).csrs(CSR_SSTATUS, T0).li(A0, KERNEL_VA + BigInt(DATA)).load('ld', T1, A0, 0).csrc(CSR_SSTATUS, T0);
  // MMIO through the identity gigapage.
  a.li(T0, UART).load('lbu', T1, T0, UART_LSR - UART).store('sb', T1, T0, 7);

  // Page faults of each kind (the S handler skips 4 bytes; fetch faults return to ra).
  for (const va of [UNMAPPED_VA, EMPTY_TABLE_VA, MISALIGNED_VA, RESERVED_VA, U_CODE_VA]) a.li(T0, va).load('ld', T1, T0, 0);
  a.li(T0, READ_ONLY_VA).load('ld', T1, T0, 0).store('sd', T1, T0, 0);
  a.li(T0, UNMAPPED_VA).store('sw', T1, T0, 0).jalr(RA, T0);
  a.li(T0, U_CODE_VA).jalr(RA, T0); // S may not execute U pages

  // sfence.vma by address, by ASID, all; an unsupported satp mode (Sv57) is ignored (WARL).
  a.li(T0, KERNEL_VA + BigInt(DATA)).sfenceVma(T0).sfenceVma(ZERO, T1).sfenceVma(T0, T1).sfenceVma();
  a.csrr(T2, CSR_SATP).li(T0, satp(10, SV48_ROOT)).csrw(CSR_SATP, T0).csrw(CSR_SATP, T2);
  // Sv48 (the kernel's probe order is Sv57, Sv48, Sv39), then back.
  a.li(T0, satp(SATP_MODE_SV48, SV48_ROOT)).csrw(CSR_SATP, T0).sfenceVma();
  a.li(A0, KERNEL_VA + BigInt(DATA));
  catCall('mem');
  a.csrw(CSR_SATP, T2).sfenceVma();

  // SBI calls as Linux makes them (a7 = extension, a6 = function).
  const sbi = (ext: number, fn: number, ...args: (number | bigint)[]) => {
    a.li(A7, ext).li(A6, fn);
    args.forEach((v, k) => a.li(A0 + k, v));
    a.ecall();
  };
  sbi(SBI_EXT_BASE, 0); // spec version
  sbi(SBI_EXT_BASE, 3, SBI_EXT_TIME); // probe
  sbi(SBI_EXT_BASE, 4); // mvendorid
  sbi(SBI_EXT_0_1_CONSOLE_PUTCHAR, 0, 0x2e);
  sbi(SBI_EXT_DBCN, 0, 4, RAM_BASE + DATA, 0); // write 4 bytes from physical memory
  sbi(SBI_EXT_DBCN, 2, 0x2e); // write a byte
  sbi(SBI_EXT_TIME, 0, -1);
  sbi(SBI_EXT_RFENCE, 0, 1, 0);
  sbi(SBI_EXT_RFENCE, 1, 1, 0, 0, -1);
  sbi(SBI_EXT_HSM, 2, 0);
  sbi(0x0a00_0000, 0); // an extension nobody implements
  sbi(SBI_EXT_IPI, 0, 1, 0); // an IPI to ourselves: SSIP, taken below

  // S interrupts: the IPI's SSIP, a software SSIP, Sstc's timer, and the UART's THRE
  // interrupt through the PLIC (claimed and completed by the handler).
  a.li(T0, PLIC + 4 * VIRT_IRQ.uart).li(T1, 1).store('sw', T1, T0, 0);
  a.li(T0, PLIC_S_ENABLE).li(T1, 1 << VIRT_IRQ.uart).store('sw', T1, T0, 0);
  a.li(T0, PLIC + 0x200000 + 0x1000 * PLIC_S_CONTEXT).store('sw', ZERO, T0, 0);
  a.li(T0, MIP_SSIP | MIP_STIP | MIP_SEIP).csrs(CSR_SIE, T0).li(T0, MSTATUS_SIE).csrs(CSR_SSTATUS, T0);
  a.li(T0, MIP_SSIP).csrs(CSR_SIP, T0);
  a.csrw(CSR_STIMECMP, ZERO);
  a.li(T0, UART_IER).li(T1, UART_IER_THRI).store('sb', T1, T0, 0).csrr(T1, CSR_SSCRATCH);
  a.li(T0, MSTATUS_SIE).csrc(CSR_SSTATUS, T0);
  // wfi with Sstc's timer pending but SIE off goes on.
  a.csrw(CSR_STIMECMP, ZERO).wfi().li(T0, -1).csrw(CSR_STIMECMP, T0);

  // The compressed catalog (decoder and interpreter), then the JIT's hot loop.
  a.call('ccat');
  a.li(A0, KERNEL_VA + BigInt(DATA));
  catCall('hot');
  // The catalog again, now from compiled code: exits to the interpreter for CSRs, LR/SC,
  // sfence.vma, misaligned and page-crossing accesses, F/D ops through Hart.jitFp.
  for (const r of ['alu', 'mem', 'fp', 'amo']) catCall(r);
  // A store into the compiled page drops its code (as module loading does to freed pages).
  a.li(T0, KERNEL_VA + BigInt(CAT + cat.offsetOf('cat_data'))).store('sd', ZERO, T0, 0);
  a.li(A0, KERNEL_VA + BigInt(DATA));
  catCall('alu');
  a.fence().fenceI();
  a.j('s_straddle');
  a.label('s_straddle_back');

  // To U; its last ecall comes back at s_after_u.
  a.li(T0, MSTATUS_SPP).csrc(CSR_SSTATUS, T0).li(T0, U_CODE_VA).csrw(CSR_SEPC, T0).sret();
  a.label('s_after_u');
  a.li(T0, SYSCON).li(T1, SYSCON_POWEROFF).store('sw', T1, T0, 0);
  a.label('s_spin').j('s_spin');

  // S trap handler (clobbers t5, t6 only).
  a.padTo((a.here + 3) & ~3).label('s_trap');
  a.csrr(T5, CSR_SCAUSE).branch('blt', T5, ZERO, 's_irq');
  a.li(T6, 12).branch('beq', T5, T6, 's_fetch');
  a.li(T6, 3).branch('beq', T5, T6, 's_skip2'); // breakpoints here are c.ebreak
  a.li(T6, 8).branch('bne', T5, T6, 's_skip4');
  a.li(T6, U_DONE).branch('bne', A7, T6, 's_skip4');
  a.la(T5, 's_after_u').csrw(CSR_SEPC, T5).li(T6, MSTATUS_SPP).csrs(CSR_SSTATUS, T6).sret();
  a.label('s_fetch').csrw(CSR_SEPC, RA).sret();
  a.label('s_skip2').csrr(T6, CSR_SEPC).addi(T6, T6, 2).csrw(CSR_SEPC, T6).sret();
  a.label('s_skip4').csrr(T6, CSR_SEPC).addi(T6, T6, 4).csrw(CSR_SEPC, T6).csrr(T5, CSR_STVAL).sret();
  a.label('s_irq').shift('sll', T5, T5, 1).shift('srl', T5, T5, 1);
  a.li(T6, 5).branch('beq', T5, T6, 's_timer');
  a.li(T6, 1).branch('beq', T5, T6, 's_soft');
  // External: claim, silence the UART, complete.
  a.li(T6, PLIC_S_CLAIM).load('lw', T5, T6, 0).li(T6, UART_IER).store('sb', ZERO, T6, 0);
  a.li(T6, PLIC_S_CLAIM).store('sw', T5, T6, 0).sret();
  a.label('s_timer').li(T6, -1).csrw(CSR_STIMECMP, T6).sret();
  a.label('s_soft').li(T6, MIP_SSIP).csrc(CSR_SIP, T6).sret();

  compressedCatalog(a);

  a.padTo(((a.here >> 12) + 1 << 12) - 2).label('s_straddle').addi(T0, T0, 1).j('s_straddle_back');
  return a;
}

/** Every RV64C instruction once (Unpriv ch. 16), on the kernel's data. Keeps s1; uses s0, a0-a5, s2, s5. */
function compressedCatalog(a: Asm): void {
  a.label('ccat').addi(S5, RA, 0).addi(S2, SP, 0).li(SP, KERNEL_VA + BigInt(DATA + 0x800));
  a.half(C.addi4spn(A0, 16)).half(C.addi16sp(32)).half(C.addi16sp(-32));
  a.half(C.li(A1, -3)).half(C.lui(A2, 5)).half(C.addi(A1, 7)).half(C.addiw(A1, -1));
  a.half(C.slli(A1, 3)).half(C.srli(A1, 1)).half(C.srai(A1, 1)).half(C.andi(A1, 15));
  a.half(C.mv(A3, A1)).half(C.add(A3, A2));
  for (const op of ['sub', 'xor', 'or', 'and', 'subw', 'addw'] as const) a.half(C[op](A3, A1));
  a.half(C.sw(A1, A0, 4)).half(C.lw(A2, A0, 4)).half(C.sd(A1, A0, 8)).half(C.ld(A2, A0, 8));
  a.half(C.fsd(S0, A0, 16)).half(C.fld(S0, A0, 16));
  a.half(C.swsp(A1, 8)).half(C.lwsp(A2, 8)).half(C.sdsp(A1, 16)).half(C.ldsp(A2, 16));
  a.half(C.fsdsp(S0, 24)).half(C.fldsp(S0, 24));
  a.half(C.li(A1, 0)).cbeqz(A1, 'c1').half(C.nop()).label('c1').cbnez(A1, 'c2').cbnez(A2, 'c2').half(C.nop()).label('c2');
  a.cj('c3').half(C.nop()).label('c3');
  a.la(A4, 'c_fn').half(C.jalr(A4));
  a.half(C.ebreak());
  a.addi(SP, S2, 0).addi(RA, S5, 0).ret();
  a.label('c_fn').half(C.addi(A5, 1)).half(C.jr(RA));
}

// ---------------------------------------------------------------- U mode

function uCode(cat: Asm): Asm {
  const a = new Asm(RAM_BASE + U_CODE);
  const catCall = (label: string) => a.li(T0, U_CAT_VA + cat.offsetOf(label)).jalr(RA, T0);
  a.li(A0, U_DATA_VA);
  for (const r of ['alu', 'mem', 'fp', 'amo']) catCall(r);
  a.csrr(T1, CSR_TIME).csrr(T1, CSR_CYCLE).csrr(T1, CSR_INSTRET);
  a.li(A7, 64).ecall(); // a system call: delegated to S
  a.csrr(T1, CSR_SSTATUS); // illegal in U
  a.li(T0, KERNEL_VA + BigInt(DATA)).load('ld', T1, T0, 0).store('sd', T1, T0, 0); // page faults
  a.half(C.ebreak());
  a.wfi(); // illegal in U
  a.li(A7, U_DONE).ecall();
  return a;
}

// ---------------------------------------------------------------- the catalog page

function catalogPage(): Asm {
  const a = new Asm(RAM_BASE + CAT);

  // Integer and M: every op on values that take each branch of the 64-bit helpers (carries,
  // signs, INT64_MIN / -1, division by zero).
  a.label('alu');
  a.li(T0, 0x1234_5678_9abc_def0n).li(T1, -7).li(T2, 0x7fff_ffff).li(T3, -(2n ** 63n)).li(T4, -1);
  const pairs: [number, number][] = [[T0, T1], [T3, T4], [T0, ZERO], [T2, T2], [T1, T0]];
  for (const op of Object.keys(ALU) as AluOp[]) for (const [x, y] of pairs) a.r(op, A1, x, y);
  for (const op of Object.keys(ALU_W) as AluWOp[]) for (const [x, y] of pairs) a.rw(op, A1, x, y);
  for (const op of Object.keys(ALU_I) as (keyof typeof ALU_I)[]) a.i(op, A1, T0, -5).i(op, A1, T1, 100).i(op, A1, T2, 100).i(op, A1, T1, -9);
  for (const k of ['sll', 'srl', 'sra'] as const) {
    for (const sh of [0, 5, 33, 63]) a.shift(k, A1, T0, sh);
    for (const sh of [0, 5, 31]) a.shift(k, A1, T1, sh, true);
  }
  a.addiw(A1, T2, 1).lui(A1, 0x80000).auipc(A1, 0).addi(A1, ZERO, 0).addi(A1, T0, 0).addi(ZERO, T0, 1);
  let n = 0;
  for (const op of Object.keys(BRANCHES) as (keyof typeof BRANCHES)[]) {
    for (const [x, y] of [[T0, T1], [T1, T0], [T2, T2]] as const) {
      const l = `b${n++}`;
      a.branch(op, x, y, l).addi(A2, A2, 1).label(l);
    }
  }
  a.ret();

  // Loads and stores of every size: aligned (TLB miss, then the inline fast path),
  // misaligned within a page, across a page; F/D loads and stores. a0 = a page with the
  // next page mapped after it.
  a.label('mem');
  for (let pass = 0; pass < 2; pass++) {
    for (const s of Object.keys(STORES) as (keyof typeof STORES)[]) a.store(s, T0, A0, 16 + 8 * STORES[s]);
    // Each load once on a TLB miss (its own slow-path call), then on a hit. sfence.vma is
    // illegal in U: there it traps and is skipped, and U's loads hit.
    for (const l of Object.keys(LOADS) as (keyof typeof LOADS)[]) a.sfenceVma().load(l, A1, A0, 16 + 8 * LOADS[l]).load(l, A1, A0, 16 + 8 * LOADS[l]);
    a.fstore(false, 1, A0, 80).fstore(true, 1, A0, 88).fload(false, 2, A0, 80).fload(true, 2, A0, 88);
  }
  for (const [l, off] of [['lh', 1], ['lhu', 3], ['lw', 2], ['lwu', 6], ['ld', 4]] as const) a.load(l, A1, A0, off);
  for (const [s, off] of [['sh', 1], ['sw', 2], ['sd', 4]] as const) a.store(s, T1, A0, off);
  a.li(A2, 0x1000).r('add', A2, A2, A0);
  for (const [l, off] of [['lh', -1], ['lhu', -1], ['lw', -2], ['lwu', -2], ['ld', -4]] as const) a.load(l, A1, A2, off);
  for (const [s, off] of [['sh', -1], ['sw', -2], ['sd', -4]] as const) a.store(s, T1, A2, off);
  a.fload(true, 3, A2, -4).fstore(true, 3, A2, -4).fload(false, 3, A2, -2).fstore(false, 3, A2, -2);
  a.ret();

  // F and D: every operation, with ordinary and special operands (NaN, infinities, zero).
  a.label('fp');
  a.li(T0, 0x4009_21fb_5444_2d18n).fp('fmv.from.x', true, 1, T0); // pi
  a.li(T0, 0xc004_0000_0000_0000n).fp('fmv.from.x', true, 2, T0); // -2.5
  a.fp('fmv.from.x', true, 3, ZERO); // +0
  a.li(T0, 0x4049_0fdb).fp('fmv.from.x', false, 4, T0); // pi (single)
  a.li(T0, 0xbf80_0000).fp('fmv.from.x', false, 5, T0); // -1 (single)
  a.li(T0, 0x7ff8_0000_0000_0000n).fp('fmv.from.x', true, 6, T0); // NaN
  const arith: FpOp[] = ['fadd', 'fsub', 'fmul', 'fdiv', 'fsgnj', 'fsgnjn', 'fsgnjx', 'fmin', 'fmax', 'feq', 'flt', 'fle'];
  const unary: FpOp[] = ['fsqrt', 'fcvt.w', 'fcvt.wu', 'fcvt.l', 'fcvt.lu', 'fmv.x', 'fclass'];
  const fromInt: FpOp[] = ['fcvt.from.w', 'fcvt.from.wu', 'fcvt.from.l', 'fcvt.from.lu'];
  for (const d of [true, false]) {
    const [x, y] = d ? [1, 2] : [4, 5];
    const intDest = (op: FpOp) => op.startsWith('fcvt.') || op === 'fmv.x' || op === 'fclass' || op === 'feq' || op === 'flt' || op === 'fle';
    for (const op of arith) a.fp(op, d, intDest(op) ? A1 : 7, x, y).fp(op, d, intDest(op) ? A1 : 7, 6, 3).fp(op, d, intDest(op) ? A1 : 7, y, 3);
    for (const op of unary) a.fp(op, d, intDest(op) ? A1 : 7, x).fp(op, d, intDest(op) ? A1 : 7, y, 0, 1).fp(op, d, intDest(op) ? A1 : 7, 6);
    a.li(T0, -123_456_789_012n);
    for (const op of fromInt) a.fp(op, d, 7, T0).fp(op, d, 7, T2);
    for (const opc of [0x43, 0x47, 0x4b, 0x4f] as const) a.fma(opc, d, 7, x, y, x).fma(opc, d, 7, 6, y, 3);
  }
  a.fcvtSD(7, 1).fcvtDS(7, 4).csrr(A1, CSR_FFLAGS).csrw(CSR_FFLAGS, ZERO);
  a.ret();

  // A: LR/SC that succeed and fail, every AMO in both widths.
  a.label('amo').addi(A1, A0, 0x100).li(T2, -5);
  for (const d of [false, true]) {
    a.amo('lr', d, T0, ZERO, A1).amo('sc', d, T1, T2, A1).amo('sc', d, T1, T2, A1);
    for (const op of Object.keys(AMOS) as (keyof typeof AMOS)[]) if (op !== 'lr' && op !== 'sc') a.amo(op, d, T0, T2, A1, 3);
  }
  a.ret();

  // The hot loop's body: everything above from compiled code (exits to the interpreter for
  // CSRs, LR/SC, misaligned and page-crossing accesses), and a call into another page.
  // The hot loop: a call into another page and back, until this page and that one pass the
  // threshold. The page compiles with every entry seen so far, the routines above included.
  a.label('hot').addi(S4, RA, 0).li(S3, HOT_ITERATIONS).li(T4, KERNEL_VA + BigInt(FAR));
  a.label('hot_loop').jalr(RA, T4).addi(S3, S3, -1).branch('bne', S3, ZERO, 'hot_loop');
  a.addi(RA, S4, 0).ret();

  a.padTo((a.here + 7) & ~7).label('cat_data').dword(0n);
  return a;
}
