/**
 * `visor cp SRC DST`: copies a file or directory into or out of a kept machine's disk while
 * it is stopped; one side is `NAME:/path`.
 *
 * Through a guest boot, not by editing the ext4 on the host: writing into a live filesystem
 * in place (allocation, the journal, directory indexes another kernel made) is a much bigger
 * and riskier job than writing a new one (src/storage/ext4/), while the guest's own ext4
 * driver and GNU tar keep the filesystem consistent and carry owners, modes and links. The
 * data crosses as a tar archive on a second virtio disk (raw), so nothing depends on the
 * guest's network.
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { lstat, mkdir, mkdtemp, open, readdir, readlink, rm, stat, symlink, truncate } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join, posix, resolve as resolvePath } from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Command } from 'commander';
import { remoteCp, type RemoteFlags } from './remote.js';
import * as tar from 'tar-stream';
import { VisorError } from '../../base/errors.js';
import { cacheRoot } from '../../images/cache.js';
import { runGuestCommand } from '../../images/configure.js';
import { ensureImage, findMachine } from '../../images/index.js';

/** Room for what a copy out may produce (a sparse file: only what tar writes takes space). */
const OUT_DISK_BYTES = 8 * 2 ** 30;

function parseSide(s: string): { machine?: string; path: string } {
  const m = /^([a-z0-9][a-z0-9._-]{0,63}):(\/.*)$/.exec(s);
  return m ? { machine: m[1]!, path: m[2]! } : { path: s };
}

async function packHostPath(src: string, name: string, out: string): Promise<void> {
  const pack = tar.pack();
  const done = pipeline(pack, createWriteStream(out));
  const add = async (host: string, inTar: string): Promise<void> => {
    const st = await lstat(host);
    const common = { name: inTar, mode: st.mode & 0o7777, mtime: st.mtime, uid: 0, gid: 0 };
    if (st.isSymbolicLink()) {
      pack.entry({ ...common, type: 'symlink', linkname: await readlink(host) });
    } else if (st.isDirectory()) {
      pack.entry({ ...common, type: 'directory' });
      for (const n of (await readdir(host)).sort()) await add(join(host, n), `${inTar}/${n}`);
    } else if (st.isFile()) {
      await new Promise<void>((res, rej) => {
        const e = pack.entry({ ...common, type: 'file', size: st.size }, (err) => (err ? rej(err) : res()));
        createReadStream(host).on('error', rej).pipe(e);
      });
    } else {
      throw new VisorError('InvalidArgument', `visor cp: ${host} is not a file, directory or symlink`);
    }
  };
  await add(src, name);
  pack.finalize();
  await done;
}

/** Extracts a tar archive (from the guest: untrusted) under `destDir`, refusing paths that leave it. */
async function unpackTo(archive: string, destDir: string): Promise<number> {
  const extract = tar.extract();
  const input = createReadStream(archive);
  input.pipe(extract);
  let count = 0;
  for await (const entry of extract) {
    const h = entry.header;
    const rel = posix.normalize(h.name.replace(/^\/+/, ''));
    if (rel.startsWith('..') || rel === '.') { entry.resume(); continue; }
    const dest = join(destDir, rel);
    if (h.type === 'directory') await mkdir(dest, { recursive: true, mode: h.mode ?? 0o755 });
    else if (h.type === 'symlink') await symlink(h.linkname ?? '', dest).catch(() => undefined);
    else if (h.type === 'file' || h.type === 'contiguous-file') {
      await mkdir(dirname(dest), { recursive: true });
      await pipeline(entry, createWriteStream(dest, { mode: h.mode ?? 0o644 }));
      count++;
      continue;
    }
    entry.resume();
    count++;
  }
  input.destroy();
  return count;
}

const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

export function registerCpCommand(program: Command): void {
  program
    .command('cp')
    .description('copy a file or directory into or out of a stopped kept machine\'s disk: visor cp FILE NAME:/path, visor cp NAME:/path FILE; with --remote, a file of a machine on a daemon')
    .argument('<src>')
    .argument('<dst>')
    .option('--remote <url>', 'copy to or from a machine on a daemon (or VISOR_REMOTE)')
    .option('--token <token>', 'API token for --remote (or VISOR_TOKEN)')
    .action(async (srcArg: string, dstArg: string, flags: RemoteFlags) => {
      if (flags.remote ?? process.env.VISOR_REMOTE) return remoteCp(srcArg, dstArg, flags);
      const src = parseSide(srcArg);
      const dst = parseSide(dstArg);
      if (!!src.machine === !!dst.machine) throw new VisorError('InvalidArgument', 'visor cp: exactly one side must be NAME:/path (a kept machine)');
      const name = (src.machine ?? dst.machine)!;
      const kept = await findMachine(cacheRoot(), name);
      if (!kept) throw new VisorError('NotFound', `no kept machine '${name}'; \`visor machine ls\` lists them (visor run --keep NAME makes one)`);
      const img = await ensureImage(kept.image);
      const work = await mkdtemp(join(tmpdir(), 'visor-cp-'));
      try {
        const xfer = join(work, 'xfer.tar');
        let argv: string[];
        if (dst.machine) {
          const host = resolvePath(src.path);
          await stat(host).catch(() => { throw new VisorError('NotFound', `visor cp: no such file ${host}`); });
          const into = dst.path.endsWith('/') ? dst.path : posix.dirname(dst.path);
          const as = dst.path.endsWith('/') ? basename(host) : posix.basename(dst.path);
          await packHostPath(host, as, xfer);
          const size = (await stat(xfer)).size;
          await truncate(xfer, Math.ceil(size / 512) * 512 + 1024); // whole sectors, and tar's end blocks
          argv = ['sh', '-c', `mkdir -p ${q(into)} && tar -x --same-owner -p -f /dev/vdb -C ${q(into)} && sync`];
        } else {
          await (await open(xfer, 'w')).close();
          await truncate(xfer, OUT_DISK_BYTES);
          // --totals says how much tar wrote: the host reads that much, not the whole disk.
          argv = ['sh', '-c', `tar -c --totals -f /dev/vdb -C ${q(posix.dirname(src.path))} ${q(posix.basename(src.path))} 2>&1 && sync`];
        }
        const r = await runGuestCommand({
          kernel: img.kernel, initrd: img.initrd, append: img.append, argv,
          disks: [{ path: kept.disk, format: 'qcow2' }, { path: xfer, format: 'raw', readOnly: !!dst.machine }],
        });
        if (r.status !== 0) {
          const tail = r.log.split('\n').filter((l) => /tar|mkdir|sh:/.test(l)).slice(-5).join('\n');
          throw new VisorError('NotFound', `visor cp: the copy in the guest failed (status ${r.status})${tail ? `:\n${tail}` : ''}`);
        }
        if (src.machine) {
          const written = /Total bytes written: (\d+)/.exec(r.log);
          if (!written) throw new VisorError('Internal', 'visor cp: the guest\'s tar did not say how much it wrote');
          await truncate(xfer, Number(written[1]));
          const destDir = resolvePath(dst.path);
          const isDir = await stat(destDir).then((s) => s.isDirectory(), () => false);
          if (isDir) await unpackTo(xfer, destDir);
          else {
            // Copy to a new name: unpack beside it, then move the one top-level entry.
            const tmp = join(work, 'out');
            await mkdir(tmp);
            await unpackTo(xfer, tmp);
            const { rename } = await import('node:fs/promises');
            await rename(join(tmp, posix.basename(src.path)), destDir);
          }
        }
      } finally {
        await rm(work, { recursive: true, force: true });
      }
    });
}
