/**
 * Reads Debian binary packages (deb(5)): an ar archive whose `data.tar[.xz|.zst|.gz]` member
 * holds the files. Streams: ar member → decompressor → tar parser, keeping only the entries
 * the caller asks for.
 */
import { createReadStream } from 'node:fs';
import { Readable } from 'node:stream';
import * as tar from 'tar-stream';
import { VisorError } from '../base/errors.js';
import { readArFile, type ArMember } from './ar.js';
import { compressionOfName, decompressStream } from './decompress.js';

export interface DebEntry {
  /** Path inside the package without the leading "./" (e.g. "usr/bin/busybox"). */
  path: string;
  type: 'file' | 'directory' | 'symlink' | 'link' | 'chardev' | 'blockdev' | 'fifo' | 'other';
  /** Permission bits (0o7777) as the archive records them. */
  mode: number;
  uid: number;
  gid: number;
  /** Seconds since the epoch. */
  mtime: number;
  /** Device numbers of a chardev or blockdev. */
  major?: number;
  minor?: number;
  /** Contents, for files the filter selected. */
  data?: Buffer;
  /** Target of a symlink or hard link. */
  linkname?: string;
}

export function normalizeTarPath(name: string): string {
  let p = name.replace(/^\.\//, '').replace(/^\/+/, '');
  if (p.endsWith('/')) p = p.slice(0, -1);
  return p;
}

function entryType(t: tar.Header['type'] | undefined): DebEntry['type'] {
  switch (t) {
    case 'file': case 'contiguous-file': return 'file';
    case 'directory': return 'directory';
    case 'symlink': return 'symlink';
    case 'link': return 'link';
    case 'character-device': return 'chardev';
    case 'block-device': return 'blockdev';
    case 'fifo': return 'fifo';
    default: return 'other';
  }
}

/** Parses a (decompressed) tar stream; `want` decides which entries are kept with their data. */
export async function readTar(
  input: Readable,
  want: (path: string, type: DebEntry['type']) => boolean,
  source: string,
): Promise<DebEntry[]> {
  const extract = tar.extract();
  const out: DebEntry[] = [];
  input.on('error', (err) => extract.destroy(err));
  input.pipe(extract);
  try {
    for await (const entry of extract) {
      const path = normalizeTarPath(entry.header.name);
      const type = entryType(entry.header.type);
      if (path !== '' && want(path, type)) {
        const chunks: Buffer[] = [];
        for await (const c of entry as AsyncIterable<Buffer>) chunks.push(c);
        const hd = entry.header;
        const e: DebEntry = {
          path, type, mode: (hd.mode ?? 0o644) & 0o7777, uid: hd.uid ?? 0, gid: hd.gid ?? 0,
          mtime: hd.mtime ? Math.floor(hd.mtime.getTime() / 1000) : 0,
        };
        if (type === 'chardev' || type === 'blockdev') {
          e.major = hd.devmajor ?? 0;
          e.minor = hd.devminor ?? 0;
        }
        if (type === 'file') e.data = Buffer.concat(chunks);
        if (entry.header.linkname) e.linkname = entry.header.linkname;
        out.push(e);
      } else {
        entry.resume(); // drain; tar-stream moves to the next header once this one is consumed
      }
    }
  } catch (err) {
    if (err instanceof VisorError) throw err;
    throw new VisorError('CorruptImage', `${source}: cannot read its tar archive: ${(err as Error).message}`, { cause: err });
  }
  return out;
}

function debMember(members: ArMember[], path: string, which: 'data' | 'control'): ArMember {
  // deb(5): the first member is debian-binary, then control.tar*, then data.tar*.
  if (members[0]?.name !== 'debian-binary') {
    throw new VisorError('BadImage', `${path} is not a Debian package (no debian-binary member)`);
  }
  const re = which === 'data' ? /^data\.tar(\.(xz|zst|gz))?$/ : /^control\.tar(\.(xz|zst|gz))?$/;
  const data = members.find((m) => re.test(m.name));
  if (!data) throw new VisorError('BadImage', `${path} has no ${which}.tar member`);
  return data;
}

/** Extracts the entries of a .deb's data (or control) archive that `want` selects. */
export async function extractDeb(
  path: string,
  want: (path: string, type: DebEntry['type']) => boolean,
  which: 'data' | 'control' = 'data',
): Promise<DebEntry[]> {
  const data = debMember(await readArFile(path), path, which);
  const raw = createReadStream(path, { start: data.offset, end: data.offset + data.size - 1 });
  const web = Readable.toWeb(raw) as unknown as ReadableStream<Uint8Array>;
  const plain = Readable.fromWeb(decompressStream(compressionOfName(data.name), web) as never);
  return readTar(plain, want, path);
}
