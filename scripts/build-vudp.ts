/**
 * Builds test/net/guest/vudp.c (the UDP helper the in-guest network test fetches into the
 * tiny image) into a static riscv64 binary with no libc, with Debian's cross compiler
 * (`apt-get install gcc-riscv64-linux-gnu`). The binary is committed beside its source.
 *
 *   npx tsx scripts/build-vudp.ts
 */
import { execFileSync } from 'node:child_process';
import { statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const cc = process.env.VISOR_AGENT_CC ?? 'riscv64-linux-gnu-gcc';
const dir = fileURLToPath(new URL('../test/net/guest/', import.meta.url));
const out = `${dir}vudp.riscv64`;
// --no-relax: no gp-relative accesses (nothing here sets gp up, there being no libc start code).
execFileSync(cc, ['-static', '-nostdlib', '-ffreestanding', '-fno-pie', '-no-pie', '-fno-stack-protector', '-Os', '-s', '-Wall', '-Wextra', '-Wl,--no-relax', '-Wl,--build-id=none', '-o', out, `${dir}vudp.c`], { stdio: 'inherit' });
console.log(`${out}: ${statSync(out).size} bytes`);
