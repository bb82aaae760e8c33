import { describe, expect, it } from 'vitest';
import { MAX_MEMORY_MIB } from '../machine/ram-size.js';
import { allocateGuestRam, guestMemoryOf, guestMemoryPages, MAX_WASM_PAGES } from './guest-ram.js';

const MiB = 2 ** 20;

describe('guest RAM in one WebAssembly memory', () => {
  it('MAX_MEMORY_MIB is the most RAM that fits beside the JIT state', () => {
    expect(guestMemoryPages(MAX_MEMORY_MIB * MiB)).toBeLessThanOrEqual(MAX_WASM_PAGES);
    expect(guestMemoryPages((MAX_MEMORY_MIB + 1) * MiB)).toBeGreaterThan(MAX_WASM_PAGES);
  });

  it('allocates the maximum inside a WebAssembly memory (so the JIT can run), a byte-addressable array past 2^31', () => {
    const ram = allocateGuestRam(MAX_MEMORY_MIB * MiB);
    const g = guestMemoryOf(ram);
    expect(g).toBeDefined();
    expect(ram.length).toBe(MAX_MEMORY_MIB * MiB);
    ram[ram.length - 1] = 0xa5;
    expect(new Uint8Array(g!.memory.buffer)[ram.length - 1]).toBe(0xa5);
  });

  it('makes RAM that does not fit a plain array (interpreter only)', () => {
    const ram = allocateGuestRam((MAX_MEMORY_MIB + 1) * MiB);
    expect(guestMemoryOf(ram)).toBeUndefined();
  });
});
