import { VisorError } from '../../base/errors.js';

/**
 * Flattened device tree writer (Devicetree Specification v0.4, chapter 5 "Flattened
 * Devicetree (DTB) Format"). A tree of plain objects is serialised into a DTB blob:
 * header, memory reservation block, structure block, strings block.
 */
export const FDT_MAGIC = 0xd00dfeed;
export const FDT_BEGIN_NODE = 0x1;
export const FDT_END_NODE = 0x2;
export const FDT_PROP = 0x3;
export const FDT_NOP = 0x4;
export const FDT_END = 0x9;
const FDT_VERSION = 17;
const FDT_LAST_COMP_VERSION = 16;
const HEADER_SIZE = 40;

/**
 * A property value: `null` (empty, a boolean property), a u32 cell, an array of u32 cells,
 * a bigint (one u64, two cells), a string, a string list, or raw bytes.
 */
export type FdtValue = null | number | readonly number[] | bigint | string | readonly string[] | Uint8Array;

export interface FdtNode {
  name: string;
  props: [string, FdtValue][];
  children: FdtNode[];
}

export function node(name: string, props: Record<string, FdtValue> | [string, FdtValue][] = [], children: FdtNode[] = []): FdtNode {
  return { name, props: Array.isArray(props) ? props : Object.entries(props), children };
}

const utf8 = new TextEncoder();

/** Encodes a property value as bytes (big-endian cells, NUL-terminated strings). */
export function encodeValue(v: FdtValue): Uint8Array {
  if (v === null) return new Uint8Array(0);
  if (v instanceof Uint8Array) return v;
  if (typeof v === 'number' || (Array.isArray(v) && (v.length === 0 || typeof v[0] === 'number'))) {
    const cells = typeof v === 'number' ? [v] : (v as readonly number[]);
    const out = new Uint8Array(cells.length * 4);
    const dv = new DataView(out.buffer);
    cells.forEach((c, i) => {
      if (!Number.isInteger(c) || c < 0 || c > 0xffffffff) throw new VisorError('Internal', `device tree cell out of range: ${c}`);
      dv.setUint32(i * 4, c);
    });
    return out;
  }
  if (typeof v === 'bigint') {
    const out = new Uint8Array(8);
    new DataView(out.buffer).setBigUint64(0, BigInt.asUintN(64, v));
    return out;
  }
  const strs = typeof v === 'string' ? [v] : (v as readonly string[]);
  const parts = strs.map((s) => utf8.encode(s));
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length + 1, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length + 1;
  }
  return out;
}

/** Splits a u64 into two cells (high, low), the way #address-cells = 2 spells addresses. */
export function cells64(v: number): [number, number] {
  return [Math.floor(v / 0x1_0000_0000) >>> 0, v >>> 0];
}

/** Serialises a tree into a DTB. `reserved` becomes the memory reservation block. */
export function writeFdt(root: FdtNode, opts: { bootCpuId?: number; reserved?: { address: number; size: number }[] } = {}): Uint8Array {
  const struct: number[] = [];
  const strings: number[] = [];
  const stringOffsets = new Map<string, number>();
  const push32 = (v: number) => struct.push((v >>> 24) & 0xff, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff);
  const pushBytes = (b: Uint8Array) => {
    for (const x of b) struct.push(x);
    while (struct.length % 4) struct.push(0);
  };
  const stringOffset = (name: string) => {
    let off = stringOffsets.get(name);
    if (off === undefined) {
      off = strings.length;
      stringOffsets.set(name, off);
      for (const b of utf8.encode(name)) strings.push(b);
      strings.push(0);
    }
    return off;
  };
  const emit = (n: FdtNode, isRoot: boolean) => {
    if (!isRoot && !/^[A-Za-z0-9,._+@-]+$/.test(n.name)) throw new VisorError('Internal', `bad device tree node name '${n.name}'`);
    push32(FDT_BEGIN_NODE);
    pushBytes(encodeValue(n.name));
    const seen = new Set<string>();
    for (const [name, value] of n.props) {
      if (seen.has(name)) throw new VisorError('Internal', `duplicate property ${name} in ${n.name || '/'}`);
      seen.add(name);
      const bytes = encodeValue(value);
      push32(FDT_PROP);
      push32(bytes.length);
      push32(stringOffset(name));
      pushBytes(bytes);
    }
    for (const c of n.children) emit(c, false);
    push32(FDT_END_NODE);
  };
  emit(root, true);
  push32(FDT_END);

  const reserved = opts.reserved ?? [];
  const rsvOff = HEADER_SIZE;
  const rsvSize = (reserved.length + 1) * 16;
  const structOff = rsvOff + rsvSize;
  const stringsOff = structOff + struct.length;
  const total = stringsOff + strings.length;
  const out = new Uint8Array((total + 7) & ~7);
  const dv = new DataView(out.buffer);
  const header = [FDT_MAGIC, out.length, structOff, stringsOff, rsvOff, FDT_VERSION, FDT_LAST_COMP_VERSION, opts.bootCpuId ?? 0, strings.length, struct.length];
  header.forEach((v, i) => dv.setUint32(i * 4, v));
  reserved.forEach((r, i) => {
    dv.setBigUint64(rsvOff + i * 16, BigInt(r.address));
    dv.setBigUint64(rsvOff + i * 16 + 8, BigInt(r.size));
  });
  out.set(struct, structOff);
  out.set(strings, stringsOff);
  return out;
}

/** A decoded property, as read back by readFdt (for tests and for checking firmware output). */
export interface FdtReadNode {
  name: string;
  props: Map<string, Uint8Array>;
  children: FdtReadNode[];
}

/** Parses a DTB (enough to check what we wrote, or what firmware handed on). */
export function readFdt(blob: Uint8Array): FdtReadNode {
  const dv = new DataView(blob.buffer, blob.byteOffset, blob.byteLength);
  if (blob.length < HEADER_SIZE || dv.getUint32(0) !== FDT_MAGIC) throw new VisorError('BadImage', 'not a flattened device tree');
  const structOff = dv.getUint32(8);
  const stringsOff = dv.getUint32(12);
  const dec = new TextDecoder();
  const cstr = (o: number) => {
    let e = o;
    while (e < blob.length && blob[e] !== 0) e++;
    return [dec.decode(blob.subarray(o, e)), e + 1] as const;
  };
  let p = structOff;
  const stack: FdtReadNode[] = [];
  let root: FdtReadNode | undefined;
  for (;;) {
    if (p + 4 > blob.length) throw new VisorError('BadImage', 'truncated device tree');
    const tok = dv.getUint32(p);
    p += 4;
    if (tok === FDT_BEGIN_NODE) {
      const [name, next] = cstr(p);
      p = (next + 3) & ~3;
      const n: FdtReadNode = { name, props: new Map(), children: [] };
      if (stack.length) stack[stack.length - 1]!.children.push(n);
      else root = n;
      stack.push(n);
    } else if (tok === FDT_PROP) {
      const len = dv.getUint32(p);
      const nameOff = dv.getUint32(p + 4);
      const value = blob.slice(p + 8, p + 8 + len);
      p = (p + 8 + len + 3) & ~3;
      stack[stack.length - 1]!.props.set(cstr(stringsOff + nameOff)[0], value);
    } else if (tok === FDT_END_NODE) {
      stack.pop();
    } else if (tok === FDT_NOP) {
      continue;
    } else if (tok === FDT_END) {
      break;
    } else {
      throw new VisorError('BadImage', `bad device tree token ${tok}`);
    }
  }
  if (!root) throw new VisorError('BadImage', 'empty device tree');
  return root;
}

/** Finds a node by path ("/soc/serial@10000000"). */
export function findNode(root: FdtReadNode, path: string): FdtReadNode | undefined {
  let n: FdtReadNode | undefined = root;
  for (const part of path.split('/').filter(Boolean)) {
    n = n.children.find((c) => c.name === part || c.name.split('@')[0] === part);
    if (!n) return undefined;
  }
  return n;
}
