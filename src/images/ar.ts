/**
 * The Unix `ar` archive format as Debian packages use it (deb(5)): the global magic
 * "!<arch>\n", then members, each a 60-byte ASCII header followed by its data, padded to an
 * even offset. We only read: a .deb has three members (debian-binary, control.tar.*,
 * data.tar.*) and GNU/BSD long-name extensions never occur in one (deb(5) "Format").
 */
import { open } from 'node:fs/promises';
import { VisorError } from '../base/errors.js';

export const AR_MAGIC = '!<arch>\n';
const AR_HEADER_SIZE = 60;
const AR_FMAG = '`\n';

export interface ArMember {
  name: string;
  /** Offset of the member's data within the archive file. */
  offset: number;
  size: number;
}

/** Parses the member table of an ar archive in a byte array. */
export function parseAr(bytes: Uint8Array, source = 'archive'): ArMember[] {
  const text = (start: number, len: number) =>
    new TextDecoder('latin1').decode(bytes.subarray(start, start + len));
  if (bytes.length < AR_MAGIC.length || text(0, AR_MAGIC.length) !== AR_MAGIC) {
    throw new VisorError('BadImage', `${source} is not an ar archive (bad magic)`);
  }
  const members: ArMember[] = [];
  let pos = AR_MAGIC.length;
  while (pos < bytes.length) {
    if (pos + AR_HEADER_SIZE > bytes.length) {
      throw new VisorError('BadImage', `${source}: truncated ar member header at offset ${pos}`);
    }
    // Header fields: name[16] mtime[12] uid[6] gid[6] mode[8] size[10] fmag[2].
    if (text(pos + 58, 2) !== AR_FMAG) {
      throw new VisorError('BadImage', `${source}: bad ar member header at offset ${pos}`);
    }
    let name = text(pos, 16).trimEnd();
    if (name.endsWith('/')) name = name.slice(0, -1); // GNU ar terminates names with '/'
    const sizeText = text(pos + 48, 10).trim();
    if (!/^\d+$/.test(sizeText)) {
      throw new VisorError('BadImage', `${source}: bad ar member size '${sizeText}' at offset ${pos}`);
    }
    const size = Number(sizeText);
    const offset = pos + AR_HEADER_SIZE;
    if (offset + size > bytes.length) {
      throw new VisorError('BadImage', `${source}: ar member '${name}' runs past the end of the file`);
    }
    members.push({ name, offset, size });
    pos = offset + size + (size & 1);
  }
  return members;
}

/**
 * Reads only the headers of an ar archive on disk, so a 100 MiB kernel package is never held
 * in memory just to find its data member.
 */
export async function readArFile(path: string): Promise<ArMember[]> {
  const fh = await open(path, 'r');
  try {
    const { size: fileSize } = await fh.stat();
    const head = Buffer.alloc(AR_MAGIC.length);
    await fh.read(head, 0, head.length, 0);
    if (head.toString('latin1') !== AR_MAGIC) {
      throw new VisorError('BadImage', `${path} is not an ar archive (bad magic)`);
    }
    const members: ArMember[] = [];
    let pos = AR_MAGIC.length;
    const hdr = Buffer.alloc(AR_HEADER_SIZE);
    while (pos < fileSize) {
      const { bytesRead } = await fh.read(hdr, 0, AR_HEADER_SIZE, pos);
      if (bytesRead < AR_HEADER_SIZE || hdr.toString('latin1', 58, 60) !== AR_FMAG) {
        throw new VisorError('BadImage', `${path}: bad or truncated ar member header at offset ${pos}`);
      }
      let name = hdr.toString('latin1', 0, 16).trimEnd();
      if (name.endsWith('/')) name = name.slice(0, -1);
      const sizeText = hdr.toString('latin1', 48, 58).trim();
      if (!/^\d+$/.test(sizeText)) {
        throw new VisorError('BadImage', `${path}: bad ar member size '${sizeText}' at offset ${pos}`);
      }
      const size = Number(sizeText);
      const offset = pos + AR_HEADER_SIZE;
      if (offset + size > fileSize) {
        throw new VisorError('BadImage', `${path}: ar member '${name}' runs past the end of the file`);
      }
      members.push({ name, offset, size });
      pos = offset + size + (size & 1);
    }
    return members;
  } finally {
    await fh.close();
  }
}

/** Builds an ar archive (tests assemble .deb fixtures with it). */
export function buildAr(members: { name: string; data: Uint8Array }[]): Uint8Array {
  const parts: Uint8Array[] = [new TextEncoder().encode(AR_MAGIC)];
  for (const m of members) {
    if (m.name.length > 15) throw new VisorError('InvalidArgument', `ar member name too long: ${m.name}`);
    const field = (s: string, n: number) => s.padEnd(n, ' ').slice(0, n);
    const header =
      field(m.name + '/', 16) + field('0', 12) + field('0', 6) + field('0', 6) +
      field('100644', 8) + field(String(m.data.length), 10) + AR_FMAG;
    parts.push(new TextEncoder().encode(header), m.data);
    if (m.data.length & 1) parts.push(new Uint8Array([0x0a]));
  }
  return Buffer.concat(parts);
}
