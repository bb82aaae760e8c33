import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { encodeValue, findNode, readFdt, writeFdt, node } from '../../src/machine/fdt/fdt.js';
import { buildVirtDtb, isaString } from '../../src/machine/fdt/virt-dt.js';

function which(tool: string): boolean {
  try {
    execFileSync('which', [tool], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

const config = {
  harts: 1,
  ramBase: 0x8000_0000,
  ramSize: 512 << 20,
  bootargs: 'console=ttyS0 earlycon',
  initrd: { start: 0x9f00_0000, end: 0x9f80_0000 },
  isaExtensions: ['i', 'm', 'a', 'f', 'd', 'c', 'zicsr', 'zifencei', 'sstc'],
  mmuType: 'riscv,sv39',
  virtioSlots: [0, 2],
};

describe('FDT writer', () => {
  it('encodes values as the spec spells them', () => {
    expect([...encodeValue(0x11223344)]).toEqual([0x11, 0x22, 0x33, 0x44]);
    expect([...encodeValue(['a', 'bc'])]).toEqual([0x61, 0, 0x62, 0x63, 0]);
    expect([...encodeValue(0x1_0000_0002n)]).toEqual([0, 0, 0, 1, 0, 0, 0, 2]);
    expect(encodeValue(null).length).toBe(0);
    expect(() => encodeValue(-1)).toThrow();
  });

  it('round-trips through its own reader', () => {
    const blob = writeFdt(node('', { a: 1 }, [node('x@1', { s: 'str', e: null })]), { reserved: [{ address: 0x1000, size: 0x2000 }] });
    expect(new DataView(blob.buffer).getUint32(0)).toBe(0xd00dfeed);
    const root = readFdt(blob);
    expect([...root.props.get('a')!]).toEqual([0, 0, 0, 1]);
    expect(new TextDecoder().decode(findNode(root, '/x')!.props.get('s')!)).toBe('str\0');
    expect(() => writeFdt(node('', [], [node('bad name')]))).toThrow(/node name/);
  });

  it('builds the legacy ISA string', () => {
    expect(isaString(config.isaExtensions)).toBe('rv64imafdc_zicsr_zifencei_sstc');
  });
});

describe('virt device tree', () => {
  it('passes an rng seed in /chosen when given one, as QEMU does, and none otherwise', () => {
    const seed = Uint8Array.from({ length: 32 }, (_, i) => (i * 37 + 11) & 0xff);
    const withSeed = findNode(readFdt(buildVirtDtb({ ...config, rngSeed: seed })), '/chosen')!;
    expect([...withSeed.props.get('rng-seed')!]).toEqual([...seed]);
    expect(findNode(readFdt(buildVirtDtb(config)), '/chosen')!.props.has('rng-seed')).toBe(false);
  });

  it('decodes with dtc into the expected nodes', (ctx) => {
    if (!which('dtc')) {
      if (process.env.CI) throw new Error('dtc (device-tree-compiler) is required in CI');
      console.warn('skipping: dtc not installed (apt-get install device-tree-compiler)');
      ctx.skip();
      return;
    }
    const dir = mkdtempSync(join(tmpdir(), 'visor-dt-'));
    try {
      const file = join(dir, 'virt.dtb');
      writeFileSync(file, buildVirtDtb(config));
      // dtc prints warnings on stderr; a clean tree has none.
      const res = spawnSync('dtc', ['-I', 'dtb', '-O', 'dts', file], { encoding: 'utf8' });
      expect(res.status).toBe(0);
      expect(res.stderr).toBe('');
      const dts = res.stdout.replace(/\s+/g, ' ');
      expect(dts).toContain('bootargs = "console=ttyS0 earlycon";');
      expect(dts).toContain('stdout-path = "/soc/serial@10000000";');
      expect(dts).toContain('linux,initrd-start = <0x00 0x9f000000>;');
      expect(dts).toContain('memory@80000000 { device_type = "memory"; reg = <0x00 0x80000000 0x00 0x20000000>; };');
      expect(dts).toContain('timebase-frequency = <0x989680>;');
      expect(dts).toContain('riscv,isa = "rv64imafdc_zicsr_zifencei_sstc";');
      expect(dts).toContain('riscv,isa-extensions = "i\\0m\\0a\\0f\\0d\\0c\\0zicsr\\0zifencei\\0sstc";');
      expect(dts).toContain('mmu-type = "riscv,sv39";');
      expect(dts).toMatch(/serial@10000000 \{ interrupts = <0x0a>; interrupt-parent = <0x02>;/);
      expect(dts).toContain('compatible = "sifive,plic-1.0.0\\0riscv,plic0";');
      expect(dts).toContain('interrupts-extended = <0x01 0x0b 0x01 0x09>;');
      expect(dts).toContain('riscv,ndev = <0x5f>;');
      expect(dts).toContain('virtio_mmio@10001000 { interrupts = <0x01>;');
      expect(dts).toContain('virtio_mmio@10003000 { interrupts = <0x03>;');
      expect(dts).not.toContain('virtio_mmio@10002000');
      expect(dts).toContain('compatible = "google,goldfish-rtc";');
      expect(dts).toContain('compatible = "syscon-poweroff";');
      // And dtc accepts its own output back as source.
      execFileSync('dtc', ['-I', 'dtb', '-O', 'dtb', '-o', join(dir, 'again.dtb'), file], { stdio: 'ignore' });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
