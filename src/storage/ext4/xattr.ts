/**
 * Extended attributes: in the inode's spare 96 bytes when they fit, otherwise in one xattr
 * block. Entries: name length, name index (the prefix: user., trusted., security., system.),
 * value offset, value inode (0), value size, hash, then the name suffix padded to 4 bytes.
 * Values are packed from the end of the region downwards. Block entries are sorted by
 * (index, name length, name), which the kernel's lookup relies on.
 */
import { VisorError } from '../../base/errors.js';
import { BLOCK_SIZE } from './layout.js';
import { INLINE_XATTR_SPACE } from './inode.js';

export const XATTR_MAGIC = 0xea020000;
const BLOCK_HEADER = 32;
const ENTRY_HEADER = 16;

const PREFIXES: [string, number][] = [
  ['user.', 1],
  ['trusted.', 4],
  ['security.', 6],
  ['system.', 7],
];

interface Attr {
  index: number;
  name: Uint8Array;
  value: Uint8Array;
}

const align4 = (n: number): number => (n + 3) & ~3;

function splitName(full: string): { index: number; suffix: string } {
  if (full === 'system.posix_acl_access' || full === 'system.posix_acl_default') {
    throw new VisorError('Unsupported', `ext4: POSIX ACL xattr '${full}' is not supported (ext4 stores ACLs in its own format)`);
  }
  for (const [prefix, index] of PREFIXES) {
    if (full.startsWith(prefix) && full.length > prefix.length) return { index, suffix: full.slice(prefix.length) };
  }
  throw new VisorError('InvalidArgument', `ext4: xattr name '${full}' has no known namespace (user., trusted., security., system.)`);
}

/** The kernel's entry hash: name bytes, then the value as little-endian 32-bit words. */
export function xattrEntryHash(name: Uint8Array, value: Uint8Array): number {
  let h = 0;
  for (const c of name) h = ((h << 5) ^ (h >>> 27) ^ c) >>> 0;
  const padded = new Uint8Array(align4(value.length));
  padded.set(value);
  const v = new DataView(padded.buffer);
  for (let i = 0; i < padded.length; i += 4) h = ((h << 16) ^ (h >>> 16) ^ v.getUint32(i, true)) >>> 0;
  return h;
}

function parse(xattrs: Record<string, Uint8Array>): Attr[] {
  const enc = new TextEncoder();
  const attrs = Object.entries(xattrs).map(([full, value]) => {
    const { index, suffix } = splitName(full);
    const name = enc.encode(suffix);
    if (name.length > 255) throw new VisorError('InvalidArgument', `ext4: xattr name '${full}' is longer than 255 bytes`);
    if (!(value instanceof Uint8Array)) throw new VisorError('InvalidArgument', `ext4: xattr '${full}' value must be a Uint8Array`);
    return { index, name, value };
  });
  attrs.sort((a, b) => a.index - b.index || a.name.length - b.name.length || compareBytes(a.name, b.name));
  return attrs;
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return a.length - b.length;
}

function spaceNeeded(attrs: Attr[]): number {
  let n = 4; // the zero word that ends the entry list
  for (const a of attrs) n += align4(ENTRY_HEADER + a.name.length) + align4(a.value.length);
  return n;
}

/**
 * Writes entries at `entriesOff` and values downward from `end`, value offsets relative to
 * `base`. Returns the entry hashes.
 */
function writeEntries(buf: Uint8Array, attrs: Attr[], entriesOff: number, end: number, base: number): number[] {
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let e = entriesOff;
  let valueEnd = end;
  const hashes: number[] = [];
  for (const a of attrs) {
    valueEnd -= align4(a.value.length);
    buf.set(a.value, valueEnd);
    const hash = xattrEntryHash(a.name, a.value);
    hashes.push(hash);
    buf[e] = a.name.length;
    buf[e + 1] = a.index;
    v.setUint16(e + 2, a.value.length === 0 ? 0 : valueEnd - base, true);
    v.setUint32(e + 4, 0, true);
    v.setUint32(e + 8, a.value.length, true);
    v.setUint32(e + 12, hash, true);
    buf.set(a.name, e + ENTRY_HEADER);
    e += align4(ENTRY_HEADER + a.name.length);
  }
  return hashes;
}

export interface EncodedXattrs {
  /** The in-inode area (INLINE_XATTR_SPACE bytes, magic first), when everything fits there. */
  inline?: Uint8Array;
  /** A whole xattr block, when it does not. */
  block?: Uint8Array;
}

/** Places a node's xattrs: all in the inode if they fit, else all in one block. */
export function encodeXattrs(xattrs: Record<string, Uint8Array> | undefined, where: string): EncodedXattrs {
  if (!xattrs || Object.keys(xattrs).length === 0) return {};
  const attrs = parse(xattrs);
  const need = spaceNeeded(attrs);
  if (need <= INLINE_XATTR_SPACE - 4) {
    const area = new Uint8Array(INLINE_XATTR_SPACE);
    new DataView(area.buffer).setUint32(0, XATTR_MAGIC, true);
    writeEntries(area, attrs, 4, INLINE_XATTR_SPACE, 4);
    return { inline: area };
  }
  if (need > BLOCK_SIZE - BLOCK_HEADER) {
    throw new VisorError('InvalidArgument', `ext4: the xattrs of ${where} take ${need} bytes; at most ${BLOCK_SIZE - BLOCK_HEADER} fit in one block`);
  }
  const block = new Uint8Array(BLOCK_SIZE);
  const v = new DataView(block.buffer);
  v.setUint32(0, XATTR_MAGIC, true);
  v.setUint32(4, 1, true); // h_refcount: one inode uses it
  v.setUint32(8, 1, true); // h_blocks
  const hashes = writeEntries(block, attrs, BLOCK_HEADER, BLOCK_SIZE, 0);
  let h = 0;
  for (const eh of hashes) h = ((h << 16) ^ (h >>> 16) ^ eh) >>> 0;
  v.setUint32(12, h, true);
  return { block };
}

/** Whether a node's xattrs will need a block of their own (for sizing, without encoding values). */
export function xattrsNeedBlock(xattrs: Record<string, Uint8Array> | undefined): boolean {
  if (!xattrs) return false;
  const names = Object.keys(xattrs);
  if (names.length === 0) return false;
  let n = 4;
  for (const full of names) n += align4(ENTRY_HEADER + full.length) + align4(xattrs[full]!.length);
  return n > INLINE_XATTR_SPACE - 4;
}
