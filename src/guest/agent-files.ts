/**
 * The guest agent as files to install in an image: the committed static riscv64 binary
 * (built from src/guest/agent/*.c by `npm run build:agent`) and where it goes. Both the
 * busybox initramfs (src/images/build.ts) and the Debian image install it through agentFiles().
 */
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** Where images install the agent; init starts it (src/images/init-script.ts). */
export const AGENT_BIN = 'lib/visor/visor-agent';
/** The string the build embeds before the sources' hash (agent.c). */
export const AGENT_HASH_PREFIX = 'visor-agent-src-sha256=';
export const AGENT_BINARY_NAME = 'visor-agent.riscv64';

/**
 * The agent's directory, src/guest/agent: beside this module in the sources; from the built
 * dist/guest/ the package ships it as is (package.json "files").
 */
export function agentDir(): string {
  const here = import.meta.url;
  return fileURLToPath(new URL(here.endsWith('.ts') ? './agent/' : '../../src/guest/agent/', here));
}

/** The agent's source files (names), sorted: what the hash covers. */
export function agentSourceNames(dir = agentDir()): string[] {
  return readdirSync(dir)
    .filter((n) => n.endsWith('.c') || n.endsWith('.h'))
    .sort();
}

/** sha256 over each source's name and bytes, in name order (`name\0bytes\0`…). */
export function agentSourceHash(dir = agentDir()): string {
  const h = createHash('sha256');
  for (const n of agentSourceNames(dir)) {
    h.update(n + '\0');
    h.update(readFileSync(dir + n));
    h.update('\0');
  }
  return h.digest('hex');
}

/** The hash a built agent carries, or undefined when the marker is missing. */
export function embeddedAgentHash(binary: Uint8Array): string | undefined {
  const text = Buffer.from(binary.buffer, binary.byteOffset, binary.byteLength).toString('latin1');
  const at = text.indexOf(AGENT_HASH_PREFIX);
  if (at < 0) return undefined;
  const m = /^[0-9a-f]{64}/.exec(text.slice(at + AGENT_HASH_PREFIX.length));
  return m?.[0];
}

export interface AgentFile {
  /** Path inside the image, without the leading slash. */
  path: string;
  mode: number;
  data: Uint8Array;
}

/** The files an image needs for the agent: one static binary. */
export function agentFiles(): AgentFile[] {
  const data = readFileSync(agentDir() + AGENT_BINARY_NAME);
  return [{ path: AGENT_BIN, mode: 0o755, data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) }];
}
