/**
 * Tiny static riscv64 Linux programs for the in-guest vsock test: BusyBox has no vsock
 * client, and there is no cross toolchain, so it is assembled here with our own assembler
 * (test/support/riscv-asm.ts) and wrapped in a minimal ELF64 executable.
 *
 * What it does, with raw system calls (Linux's generic syscall table, which riscv64 uses):
 *   fd = socket(AF_VSOCK, SOCK_STREAM, 0)
 *   connect(fd, { AF_VSOCK, port, cid }, 16)
 *   write(fd, message)
 *   read(fd, ...) until message.length bytes came back (or EOF)
 *   write(1, what came back); exit_group(0)
 * A failing call exits with its errno as the status; a short echo exits with SHORT_ECHO.
 * buildVsockServer is the other direction: it listens on a port, accepts one connection
 * (from the host), echoes what it reads until EOF and exits 0.
 */
import { Asm, a0, a1, a2, a7, s0, s1, t0 } from '../support/riscv-asm.js';
import * as A from '../support/riscv-asm.js';

// Linux include/uapi/asm-generic/unistd.h (riscv64 has no legacy numbers).
const __NR_read = 63;
const __NR_write = 64;
const __NR_exit_group = 94;
const __NR_socket = 198;
const __NR_bind = 200;
const __NR_listen = 201;
const __NR_accept = 202;
const __NR_connect = 203;
// include/linux/socket.h, include/uapi/linux/vm_sockets.h
const AF_VSOCK = 40;
const SOCK_STREAM = 1;
export const VMADDR_CID_HOST = 2;
/** VMADDR_CID_ANY: bind to whatever CID this guest has. */
const VMADDR_CID_ANY = 0xffff_ffff;
/** Exit status when the peer closed before the whole message came back. */
export const SHORT_ECHO = 200;

// ELF (System V gABI; RISC-V psABI for e_machine and e_flags).
const LOAD_ADDR = 0x10000;
const EHDR_SIZE = 64;
const PHDR_SIZE = 56;
const EM_RISCV = 243;
const ET_EXEC = 2;
const PT_LOAD = 1;
const PF_RWX = 7;
const EF_RISCV_RVC = 0x1;
const EF_RISCV_FLOAT_ABI_DOUBLE = 0x4;
const BSS = 4096;

export interface VsockClientOptions {
  port: number;
  cid?: number;
  message: string;
}

export function buildVsockClient(o: VsockClientOptions): Uint8Array {
  const msg = new TextEncoder().encode(o.message);
  if (msg.length === 0 || msg.length > BSS) throw new RangeError('message must be 1-4096 bytes');
  const a = new Asm(LOAD_ADDR + EHDR_SIZE + PHDR_SIZE);
  const sys = (nr: number) => a.li(a7, nr).emit(A.ecall());
  a.label('_start');
  a.li(a0, AF_VSOCK).li(a1, SOCK_STREAM).li(a2, 0);
  sys(__NR_socket);
  a.bltz(a0, 'fail');
  a.emit(A.mv(s0, a0));
  a.emit(A.mv(a0, s0)).la(a1, 'addr').li(a2, 16);
  sys(__NR_connect);
  a.bltz(a0, 'fail');
  a.emit(A.mv(a0, s0)).la(a1, 'msg').li(a2, msg.length);
  sys(__NR_write);
  a.bltz(a0, 'fail');
  a.li(s1, 0);
  a.label('read');
  a.emit(A.mv(a0, s0)).la(a1, 'buf').emit(A.add(a1, a1, s1));
  a.li(t0, msg.length).emit(A.sub(a2, t0, s1));
  sys(__NR_read);
  a.bltz(a0, 'fail');
  a.beqz(a0, 'done'); // EOF
  a.emit(A.add(s1, s1, a0));
  a.li(t0, msg.length).blt(s1, t0, 'read');
  a.label('done');
  a.li(a0, 1).la(a1, 'buf').emit(A.mv(a2, s1));
  sys(__NR_write);
  a.li(a0, 0).li(t0, msg.length).beq(s1, t0, 'exit');
  a.li(a0, SHORT_ECHO).j('exit');
  a.label('fail');
  a.emit(A.neg(a0, a0)); // -errno → errno as the exit status
  a.label('exit');
  sys(__NR_exit_group);
  // struct sockaddr_vm: u16 family, u16 reserved1, u32 port, u32 cid, u8 flags, u8 zero[3].
  a.align(8).label('addr').half(AF_VSOCK, 0).word(o.port >>> 0, (o.cid ?? VMADDR_CID_HOST) >>> 0).byte(0, 0, 0, 0);
  a.label('msg').data(msg);
  a.align(8).label('buf');
  return elf(a);
}

/** Wraps assembled code in an ELF64 executable: one PT_LOAD (headers included) plus BSS. */
function elf(a: Asm): Uint8Array {
  const code = a.bytes();

  const fileSize = EHDR_SIZE + PHDR_SIZE + code.length;
  const out = new Uint8Array(fileSize);
  const v = new DataView(out.buffer);
  out.set([0x7f, 0x45, 0x4c, 0x46, 2 /* ELFCLASS64 */, 1 /* ELFDATA2LSB */, 1 /* EV_CURRENT */, 0 /* ELFOSABI_NONE */]);
  v.setUint16(16, ET_EXEC, true);
  v.setUint16(18, EM_RISCV, true);
  v.setUint32(20, 1, true);
  v.setBigUint64(24, BigInt(a.addr('_start')), true);
  v.setBigUint64(32, BigInt(EHDR_SIZE), true); // e_phoff
  v.setBigUint64(40, 0n, true); // e_shoff: no sections
  v.setUint32(48, EF_RISCV_RVC | EF_RISCV_FLOAT_ABI_DOUBLE, true);
  v.setUint16(52, EHDR_SIZE, true);
  v.setUint16(54, PHDR_SIZE, true);
  v.setUint16(56, 1, true); // e_phnum
  v.setUint16(58, 64, true); // e_shentsize
  // One PT_LOAD for the whole file (headers included, as linkers do), plus the read buffer.
  const p = EHDR_SIZE;
  v.setUint32(p, PT_LOAD, true);
  v.setUint32(p + 4, PF_RWX, true);
  v.setBigUint64(p + 8, 0n, true);
  v.setBigUint64(p + 16, BigInt(LOAD_ADDR), true);
  v.setBigUint64(p + 24, BigInt(LOAD_ADDR), true);
  v.setBigUint64(p + 32, BigInt(fileSize), true);
  v.setBigUint64(p + 40, BigInt(fileSize + BSS), true);
  v.setBigUint64(p + 48, 0x1000n, true);
  out.set(code, EHDR_SIZE + PHDR_SIZE);
  return out;
}

/** Listens on `port` (any CID), accepts one connection, echoes until EOF, exits 0. */
export function buildVsockServer(o: { port: number }): Uint8Array {
  const a = new Asm(LOAD_ADDR + EHDR_SIZE + PHDR_SIZE);
  const sys = (nr: number) => a.li(a7, nr).emit(A.ecall());
  a.label('_start');
  a.li(a0, AF_VSOCK).li(a1, SOCK_STREAM).li(a2, 0);
  sys(__NR_socket);
  a.bltz(a0, 'fail');
  a.emit(A.mv(s0, a0));
  a.emit(A.mv(a0, s0)).la(a1, 'addr').li(a2, 16);
  sys(__NR_bind);
  a.bltz(a0, 'fail');
  a.emit(A.mv(a0, s0)).li(a1, 1);
  sys(__NR_listen);
  a.bltz(a0, 'fail');
  a.emit(A.mv(a0, s0)).li(a1, 0).li(a2, 0);
  sys(__NR_accept);
  a.bltz(a0, 'fail');
  a.emit(A.mv(s1, a0));
  a.label('loop');
  a.emit(A.mv(a0, s1)).la(a1, 'buf').li(a2, BSS);
  sys(__NR_read);
  a.bltz(a0, 'fail');
  a.beqz(a0, 'ok');
  a.emit(A.mv(a2, a0), A.mv(a0, s1)).la(a1, 'buf');
  sys(__NR_write);
  a.bltz(a0, 'fail');
  a.j('loop');
  a.label('ok');
  a.li(a0, 0).j('exit');
  a.label('fail');
  a.emit(A.neg(a0, a0));
  a.label('exit');
  sys(__NR_exit_group);
  a.align(8).label('addr').half(AF_VSOCK, 0).word(o.port >>> 0, VMADDR_CID_ANY).byte(0, 0, 0, 0);
  a.align(8).label('buf');
  return elf(a);
}
