import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { AGENT_BIN, AGENT_BINARY_NAME, agentDir, agentFiles, agentSourceHash, agentSourceNames, embeddedAgentHash } from './agent-files.js';

describe('the committed guest agent', () => {
  it('was built from the committed sources (run `npm run build:agent` after changing them)', () => {
    const binary = readFileSync(agentDir() + AGENT_BINARY_NAME);
    expect(agentSourceNames()).toEqual(expect.arrayContaining(['agent.c', 'agent.h', 'fs.c', 'proc.c', 'protocol.h']));
    expect(embeddedAgentHash(binary)).toBe(agentSourceHash());
  });

  it('is a static riscv64 ELF executable, small and stripped', () => {
    const b = readFileSync(agentDir() + AGENT_BINARY_NAME);
    expect([...b.subarray(0, 4)]).toEqual([0x7f, 0x45, 0x4c, 0x46]); // ELF
    expect(b[4]).toBe(2); // 64-bit
    expect(b.readUInt16LE(18)).toBe(243); // EM_RISCV
    expect(b.readUInt16LE(16)).toBe(2); // ET_EXEC: static, no interpreter
    expect(b.includes(Buffer.from('/lib/ld-linux'))).toBe(false);
    expect(b.length).toBeLessThan(1 << 20);
    expect(b.includes(Buffer.from('.symtab'))).toBe(false);
  });

  it('the hash changes with any source byte', () => {
    expect(embeddedAgentHash(Buffer.from('xx visor-agent-src-sha256=' + 'a'.repeat(64)))).toBe('a'.repeat(64));
    expect(embeddedAgentHash(Buffer.from('nothing here'))).toBeUndefined();
  });

  it('agentFiles() installs the binary where init starts it', () => {
    const [f, ...rest] = agentFiles();
    expect(rest).toEqual([]);
    expect(f!.path).toBe(AGENT_BIN);
    expect(f!.mode).toBe(0o755);
    expect(f!.data.length).toBeGreaterThan(10_000);
  });
});
