/**
 * Builds the guest agent (src/guest/agent/*.c) into a static, stripped riscv64 binary with
 * Debian's cross compiler (`apt-get install gcc-riscv64-linux-gnu libc6-dev-riscv64-cross`).
 * The binary is committed beside its sources (users' `npm install` has no cross compiler);
 * it embeds the sha256 of the sources, which a test compares (agent-files.test.ts).
 *
 *   npm run build:agent
 */
import { execFileSync } from 'node:child_process';
import { renameSync, statSync } from 'node:fs';
import { AGENT_BINARY_NAME, agentDir, agentSourceHash, agentSourceNames } from '../src/guest/agent-files.js';

const cc = process.env.VISOR_AGENT_CC ?? 'riscv64-linux-gnu-gcc';
const dir = agentDir();
const hash = agentSourceHash(dir);
const out = dir + AGENT_BINARY_NAME;
const sources = agentSourceNames(dir).filter((n) => n.endsWith('.c')).map((n) => dir + n);
const args = [
  '-static', '-Os', '-s', '-std=gnu11', '-Wall', '-Wextra', '-Wno-unused-parameter',
  '-ffunction-sections', '-fdata-sections', '-Wl,--gc-sections', '-Wl,--build-id=none',
  `-ffile-prefix-map=${dir}=`,
  `-DVISOR_AGENT_SRC_SHA256="${hash}"`,
  '-o', out + '.tmp', ...sources,
];
try {
  execFileSync(cc, args, { stdio: 'inherit' });
} catch (err) {
  console.error(`build-agent: ${cc} failed (${(err as Error).message}); install gcc-riscv64-linux-gnu and libc6-dev-riscv64-cross`);
  process.exit(1);
}
renameSync(out + '.tmp', out);
console.log(`${out}: ${statSync(out).size} bytes, sources sha256 ${hash}`);
