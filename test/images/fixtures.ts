/**
 * Builders for test fixtures: tiny kernel modules (ELF64 with a .modinfo section), .deb
 * packages, and a fake Debian mirror (InRelease, Packages.gz, pool/) served over local HTTP.
 */
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gzipSync } from 'node:zlib';
import * as tar from 'tar-stream';
import { buildAr } from '../../src/images/ar.js';
import { RISCV_IMAGE_MAGIC2 } from '../../src/images/build.js';

/** A minimal little-endian ELF64 relocatable with `.modinfo` (and `.shstrtab`). */
export function fakeModule(fields: Record<string, string | string[]>): Buffer {
  const modinfo = Buffer.from(
    Object.entries(fields).flatMap(([k, v]) => (Array.isArray(v) ? v : [v]).map((x) => `${k}=${x}\0`)).join(''),
  );
  const shstrtab = Buffer.from('\0.modinfo\0.shstrtab\0');
  const dataOff = 64;
  const strOff = dataOff + modinfo.length;
  const shoff = (strOff + shstrtab.length + 7) & ~7;
  const buf = Buffer.alloc(shoff + 3 * 64);
  buf.set([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1], 0);
  buf.writeUInt16LE(1, 0x10); // ET_REL
  buf.writeUInt16LE(243, 0x12); // EM_RISCV
  buf.writeUInt32LE(1, 0x14);
  buf.writeBigUInt64LE(BigInt(shoff), 0x28);
  buf.writeUInt16LE(64, 0x34);
  buf.writeUInt16LE(64, 0x3a);
  buf.writeUInt16LE(3, 0x3c);
  buf.writeUInt16LE(2, 0x3e);
  modinfo.copy(buf, dataOff);
  shstrtab.copy(buf, strOff);
  const sect = (i: number, name: number, type: number, off: number, size: number) => {
    const at = shoff + i * 64;
    buf.writeUInt32LE(name, at);
    buf.writeUInt32LE(type, at + 4);
    buf.writeBigUInt64LE(BigInt(off), at + 0x18);
    buf.writeBigUInt64LE(BigInt(size), at + 0x20);
  };
  sect(1, 1, 1, dataOff, modinfo.length); // SHT_PROGBITS
  sect(2, 10, 3, strOff, shstrtab.length); // SHT_STRTAB
  return buf;
}

export function fakeKernelImage(size = 4096): Buffer {
  const b = Buffer.alloc(size, 0x13);
  b.write('RISCV\0\0\0', 0x30, 'latin1');
  b.writeUInt32LE(RISCV_IMAGE_MAGIC2, 0x38);
  return b;
}

export type TarFile = { path: string; data?: Buffer; type?: 'file' | 'directory' | 'symlink'; linkname?: string; mode?: number };

export async function makeTar(files: TarFile[]): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  const done = new Promise<void>((resolve, reject) => {
    pack.on('data', (c: unknown) => { chunks.push(c as Buffer); });
    pack.on('end', () => resolve());
    pack.on('error', reject);
  });
  for (const f of files) {
    const type = f.type ?? 'file';
    const header = { name: `./${f.path}`, type, mode: f.mode ?? (type === 'directory' ? 0o755 : 0o644), ...(f.linkname ? { linkname: f.linkname } : {}) };
    if (type === 'file') pack.entry(header, f.data ?? Buffer.alloc(0));
    else pack.entry(header, '');
  }
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

/** A .deb with gzip-compressed members (the codec is chosen by member name, as dpkg does). */
export async function makeDeb(files: TarFile[], opts: { compress?: (b: Buffer) => Buffer; ext?: string; control?: string } = {}): Promise<Buffer> {
  const compress = opts.compress ?? ((b: Buffer) => gzipSync(b));
  const ext = opts.ext ?? '.gz';
  const control = gzipSync(await makeTar([{ path: 'control', data: Buffer.from(opts.control ?? 'Package: fake\nVersion: 1\n') }]));
  return Buffer.from(buildAr([
    { name: 'debian-binary', data: Buffer.from('2.0\n') },
    { name: 'control.tar.gz', data: control },
    { name: `data.tar${ext}`, data: compress(await makeTar(files)) },
  ]));
}

export const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

export const KREL = '6.1.0-test-riscv64';

/** The three packages of the tiny recipe, in miniature. */
export async function fakePackages(): Promise<Map<string, { version: string; deb: Buffer; filename: string; depends?: string }>> {
  const mod = (name: string, depends = '', extra: Record<string, string | string[]> = {}) =>
    gzipSync(fakeModule({ name, depends, vermagic: KREL, ...extra }));
  const m = `usr/lib/modules/${KREL}`;
  const kernel = await makeDeb([
    { path: 'boot/', type: 'directory' },
    { path: `boot/vmlinux-${KREL}`, data: fakeKernelImage() },
    { path: `boot/config-${KREL}`, data: Buffer.from('CONFIG_VIRTIO=y\n') },
    { path: `${m}/modules.builtin`, data: Buffer.from('kernel/drivers/virtio/virtio.ko\n') },
    { path: `${m}/kernel/drivers/virtio/virtio_mmio.ko.gz`, data: mod('virtio_mmio', 'virtio') },
    { path: `${m}/kernel/drivers/block/virtio_blk.ko.gz`, data: mod('virtio_blk') },
    { path: `${m}/kernel/drivers/net/virtio_net.ko.gz`, data: mod('virtio_net', 'net_failover') },
    { path: `${m}/kernel/drivers/net/net_failover.ko.gz`, data: mod('net_failover', 'failover') },
    { path: `${m}/kernel/net/core/failover.ko.gz`, data: mod('failover') },
    { path: `${m}/kernel/drivers/char/hw_random/virtio-rng.ko.gz`, data: mod('virtio_rng') },
    { path: `${m}/kernel/drivers/virtio/virtio_balloon.ko.gz`, data: mod('virtio_balloon') },
    { path: `${m}/kernel/net/vmw_vsock/vsock.ko.gz`, data: mod('vsock') },
    { path: `${m}/kernel/net/vmw_vsock/vmw_vsock_virtio_transport_common.ko.gz`, data: mod('vmw_vsock_virtio_transport_common', 'vsock') },
    { path: `${m}/kernel/net/vmw_vsock/vmw_vsock_virtio_transport.ko.gz`, data: mod('vmw_vsock_virtio_transport', 'vmw_vsock_virtio_transport_common,vsock') },
    { path: `${m}/kernel/fs/ext4/ext4.ko.gz`, data: mod('ext4', 'jbd2,mbcache,crc16', { softdep: 'pre: crypto-crc32c' }) },
    { path: `${m}/kernel/fs/jbd2/jbd2.ko.gz`, data: mod('jbd2', '', { softdep: 'pre: crypto-crc32c' }) },
    { path: `${m}/kernel/fs/mbcache.ko.gz`, data: mod('mbcache') },
    { path: `${m}/kernel/lib/crc16.ko.gz`, data: mod('crc16') },
    { path: `${m}/kernel/crypto/crc32c_generic.ko.gz`, data: mod('crc32c_generic', '', { alias: ['crypto-crc32c', 'crc32c'] }) },
    { path: `${m}/kernel/drivers/gpu/unrelated.ko.gz`, data: mod('unrelated') },
  ]);
  const busybox = await makeDeb([{ path: 'usr/bin/busybox', data: Buffer.from('\x7fELF fake busybox'), mode: 0o755 }]);
  const opensbi = await makeDeb([
    { path: 'usr/lib/riscv64-linux-gnu/opensbi/generic/fw_jump.bin', data: Buffer.from('fw_jump') },
    { path: 'usr/lib/riscv64-linux-gnu/opensbi/generic/fw_dynamic.bin', data: Buffer.from('fw_dynamic') },
  ]);
  const kname = `linux-image-${KREL}`;
  return new Map([
    ['linux-image-riscv64', { version: '6.1.0-1', deb: await makeDeb([]), filename: 'pool/main/l/linux/linux-image-riscv64_6.1.0-1_riscv64.deb', depends: `${kname} (= 6.1.0-1)` }],
    [kname, { version: '6.1.0-1', deb: kernel, filename: `pool/main/l/linux/${kname}_6.1.0-1_riscv64.deb` }],
    ['busybox-static', { version: '1:1.36.1-9', deb: busybox, filename: 'pool/main/b/busybox/busybox-static_1.36.1-9_riscv64.deb' }],
    ['opensbi', { version: '1.5-1', deb: opensbi, filename: 'pool/main/o/opensbi/opensbi_1.5-1_all.deb' }],
  ]);
}

export interface FakeMirror {
  url: string;
  /** Requests served, by path. */
  hits: Map<string, number>;
  /** Per-path overrides: return true when the handler answered the request itself. */
  fault?: (path: string, req: IncomingMessage, res: ServerResponse) => boolean;
  /** Replace a served file's bytes (after the indices were computed: a hash mismatch). */
  files: Map<string, Buffer>;
  close(): Promise<void>;
}

export function packagesText(pkgs: Awaited<ReturnType<typeof fakePackages>>): string {
  let text = 'Package: unrelated\nVersion: 1\nArchitecture: riscv64\nFilename: pool/x.deb\nSize: 1\nSHA256: ' + '0'.repeat(64) + '\n\n';
  for (const [name, p] of pkgs) {
    text += `Package: ${name}\nVersion: ${p.version}\nArchitecture: riscv64\n` +
      (p.depends ? `Depends: ${p.depends}\n` : '') +
      `Description: fake ${name}\n multi-line description\nFilename: ${p.filename}\nSize: ${p.deb.length}\nSHA256: ${sha256(p.deb)}\n\n`;
  }
  return text;
}

export function releaseText(files: Map<string, Buffer>, suite = 'trixie'): string {
  const entries = [...files].map(([p, b]) => ` ${sha256(b)} ${String(b.length).padStart(10)} ${p}`).join('\n');
  return `Origin: Debian\nLabel: Debian\nSuite: stable\nCodename: ${suite}\nDate: Sat, 01 Jun 2030 00:00:00 UTC\nAcquire-By-Hash: yes\nArchitectures: riscv64\nComponents: main\nSHA256:\n${entries}\n`;
}

/** Starts a fake mirror on 127.0.0.1. `inRelease` may transform the Release text (signing). */
/**
 * The packages the debian recipe asks for, each a one-file .deb with a real control file
 * (Essential, so the configure order has a required set), for pulls that reach the
 * unpack, ext4 and configure steps.
 */
export async function fakeRootfsPackages(names: string[]): Promise<Awaited<ReturnType<typeof fakePackages>>> {
  const out: Awaited<ReturnType<typeof fakePackages>> = new Map();
  for (const name of names) {
    const deb = await makeDeb([{ path: `usr/share/doc/${name}/copyright`, data: Buffer.from(`${name}\n`) }], {
      control: `Package: ${name}\nVersion: 1.0\nArchitecture: riscv64\nEssential: yes\nMaintainer: t <t@example.org>\nDescription: fake ${name}\n`,
    });
    out.set(name, { version: '1.0', deb, filename: `pool/main/f/${name}/${name}_1.0_riscv64.deb` });
  }
  return out;
}

export async function startMirror(opts: { inRelease?: (release: string) => string | Buffer; suite?: string; extra?: Awaited<ReturnType<typeof fakePackages>> } = {}): Promise<FakeMirror> {
  const pkgs = await fakePackages();
  for (const [n, p] of opts.extra ?? []) pkgs.set(n, p);
  const files = new Map<string, Buffer>();
  for (const p of pkgs.values()) files.set(`/${p.filename}`, p.deb);
  const packagesGz = gzipSync(Buffer.from(packagesText(pkgs)));
  const indices = new Map([['main/binary-riscv64/Packages.gz', packagesGz]]);
  const release = releaseText(indices, opts.suite);
  const base = '/debian';
  files.set(`${base}/dists/trixie/InRelease`, Buffer.from(opts.inRelease ? opts.inRelease(release) : release));
  files.set(`${base}/dists/trixie/main/binary-riscv64/by-hash/SHA256/${sha256(packagesGz)}`, packagesGz);
  files.set(`${base}/dists/trixie/main/binary-riscv64/Packages.gz`, packagesGz);
  for (const p of pkgs.values()) {
    files.delete(`/${p.filename}`);
    files.set(`${base}/${p.filename}`, p.deb);
  }
  const hits = new Map<string, number>();
  const mirror: FakeMirror = { url: '', hits, files, close: async () => {} };
  const server: Server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    hits.set(path, (hits.get(path) ?? 0) + 1);
    if (mirror.fault?.(path, req, res)) return;
    const body = files.get(path);
    if (!body) {
      res.writeHead(404).end('not found');
      return;
    }
    res.writeHead(200, { 'content-length': body.length }).end(body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  mirror.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}${base}`;
  mirror.close = () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); });
  return mirror;
}
