import { describe, expect, it } from 'vitest';
import { MockDriver, collect } from '../testing/driver.js';
import { VirtioRng, type EntropySource } from './device.js';

describe('virtio-rng', () => {
  it('fills each writable buffer from the entropy source', () => {
    let n = 0;
    const counting: EntropySource = { fill: (b) => b.forEach((_, i) => (b[i] = n++ & 0xff)) };
    const rng = new VirtioRng({ source: counting });
    const { driver } = MockDriver.create(rng);
    driver.probe(1);
    expect(driver.r(0x8)).toBe(4);
    driver.add(0, [], [3, 5]);
    const [u] = driver.used(0);
    expect(u!.len).toBe(8);
    expect([...collect(u!)]).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(rng.counters.bytes).toBe(8);
  });

  it('gives different random bytes from Web Crypto by default and caps a request', () => {
    const rng = new VirtioRng({ maxRequest: 1000 });
    const { driver } = MockDriver.create(rng);
    driver.probe(1);
    driver.add(0, [], [4096]);
    driver.add(0, [], [64]);
    const [a, b] = driver.used(0);
    expect(a!.len).toBe(1000);
    expect(b!.len).toBe(64);
    const x = collect(a!, 64);
    expect(x).not.toEqual(collect(b!));
    expect(new Set(x).size).toBeGreaterThan(20);
  });

  it('works on rings and buffers past 2 GiB of RAM (DMA offsets beyond an int32)', () => {
    const rng = new VirtioRng({ source: { fill: (b) => b.fill(0xa5) } });
    const { driver } = MockDriver.create(rng, 3 * 2 ** 30, 2 ** 31 + 0x1000);
    driver.probe(1);
    driver.add(0, [], [16, 4096]);
    const [u] = driver.used(0);
    expect(u!.len).toBe(16 + 4096);
    expect(collect(u!).every((b) => b === 0xa5)).toBe(true);
  });
});
