import { VisorError } from '../../base/errors.js';
import { QCOW2_INCOMPAT_CORRUPT } from './format.js';
import type { Qcow2Device } from './device.js';
import { decodeL2 } from './l2-entry.js';

export interface CheckResult {
  /** Clusters whose refcount is lower than their references, or broken metadata. */
  corruptions: number;
  /** Clusters whose refcount is higher than their references (wasted, harmless). */
  leaks: number;
  /**
   * Leaked refcounts past the end of the file (a writer died between raising a refcount and
   * writing the cluster). qemu-img check does not look there; repair clears them too.
   */
  leaksPastEnd: number;
  /** COPIED flags that disagree with refcounts (counted as corruptions too, as qemu-img does). */
  copiedErrors: number;
  messages: string[];
  /** After --repair: what was fixed. */
  repaired: { leaks: number; corruptions: number };
  allocatedClusters: number;
  totalClusters: number;
  /** Clusters of guest data referenced by the active image. */
  dataClusters: number;
}

/**
 * Recomputes every refcount from the metadata (header, tables, snapshots, L2 tables, data)
 * and compares with the stored refcounts, as `qemu-img check` does. With repair, stored
 * refcounts are set to the computed ones and COPIED flags are fixed.
 */
export async function checkQcow2(dev: Qcow2Device, opts: { repair: boolean }): Promise<CheckResult> {
  const g = dev.g;
  const cs = g.clusterSize;
  const fileLen = dev.file.length;
  const fileClusters = Math.ceil(fileLen / cs);
  if (fileClusters > 1 << 26) throw new VisorError('Unsupported', 'qcow2 check: image file too large to check in memory');
  const refs = new Uint32Array(fileClusters + 1);
  const res: CheckResult = {
    corruptions: 0,
    leaks: 0,
    leaksPastEnd: 0,
    copiedErrors: 0,
    messages: [],
    repaired: { leaks: 0, corruptions: 0 },
    allocatedClusters: 0,
    totalClusters: Math.ceil(dev.size / cs),
    dataClusters: 0,
  };
  const err = (m: string) => {
    res.corruptions++;
    res.messages.push(`ERROR ${m}`);
  };
  const count = (off: number, len: number, what: string): boolean => {
    if (len <= 0) return true;
    const first = Math.floor(off / cs);
    const last = Math.floor((off + len - 1) / cs);
    if (last >= fileClusters) {
      err(`${what} at 0x${off.toString(16)} is past the end of the file`);
      return false;
    }
    for (let c = first; c <= last; c++) refs[c]!++;
    return true;
  };

  const h = dev.header;
  count(0, cs, 'header');
  count(h.l1TableOffset, h.l1Size * 8, 'L1 table');
  count(h.refcountTableOffset, h.refcountTableClusters * cs, 'refcount table');
  dev.refs.table.forEach((off, i) => {
    if (off === 0) return;
    if (off % cs !== 0) err(`refcount block ${i} is not cluster aligned`);
    else count(off, cs, `refcount block ${i}`);
  });
  if (h.nbSnapshots > 0) {
    let len = 0;
    for (const s of dev.snapshots) len += Math.ceil((40 + Math.max(s.extraData.length, 0) + new TextEncoder().encode(s.id).length + new TextEncoder().encode(s.name).length) / 8) * 8;
    count(h.snapshotsOffset, len, 'snapshot table');
  }

  const countTree = async (l1: Uint8Array, active: boolean) => {
    const v = new DataView(l1.buffer, l1.byteOffset, l1.byteLength);
    for (let i = 0; i < l1.length / 8; i++) {
      const hi = v.getUint32(i * 8);
      const lo = v.getUint32(i * 8 + 4);
      const off = (hi & 0x00ffffff) * 0x1_0000_0000 + ((lo & 0xfffffe00) >>> 0);
      if (off === 0) continue;
      if (off % cs !== 0) {
        err(`L2 table offset 0x${off.toString(16)} is not cluster aligned (l1 index ${i})`);
        continue;
      }
      if (!count(off, cs, `L2 table (l1 index ${i})`)) continue;
      const t = new Uint8Array(cs);
      await dev.file.read(off, t);
      const tv = new DataView(t.buffer);
      for (let j = 0; j < g.l2Entries; j++) {
        const m = decodeL2(tv, j, g);
        if (m.kind === 'normal' || (m.kind === 'zero' && m.host !== 0)) {
          if (m.host % cs !== 0) err(`data cluster 0x${m.host.toString(16)} is not cluster aligned`);
          else if (count(m.host, cs, 'data cluster') && active) res.dataClusters++;
        } else if (m.kind === 'compressed') {
          if (count(m.host, m.csize, 'compressed cluster') && active) res.dataClusters++;
        }
      }
    }
  };
  await countTree(dev.l1, true);
  for (const s of dev.snapshots) {
    count(s.l1TableOffset, s.l1Size * 8, `snapshot '${s.name}' L1 table`);
    const l1 = new Uint8Array(s.l1Size * 8);
    await dev.file.read(s.l1TableOffset, l1);
    await countTree(l1, false);
  }

  // Compare with the stored refcounts over the file and everything the table covers.
  // Past the end of the file too: a refcount there with nothing referencing it is a leak.
  let lastBlock = -1;
  dev.refs.table.forEach((off, i) => {
    if (off !== 0) lastBlock = i;
  });
  // Bounded: a corrupt table naming far-away blocks must not make the scan endless.
  const limit = Math.min(Math.max(fileClusters, (lastBlock + 1) * g.refcountBlockEntries), fileClusters + (1 << 16));
  const fixes: [number, number][] = [];
  for (let c = 0; c < limit; c++) {
    const want = c < refs.length ? refs[c]! : 0;
    const have = await dev.refs.get(c);
    if (have > 0) res.allocatedClusters++;
    if (have === want) continue;
    if (have > want) {
      if (c >= fileClusters) res.leaksPastEnd++;
      else res.leaks++;
      res.messages.push(`Leaked cluster ${c} refcount=${have} reference=${want}`);
    } else {
      err(`cluster ${c} refcount=${have} reference=${want}`);
    }
    fixes.push([c, want]);
  }

  // COPIED flags of the active image (qemu-img counts mismatches as corruptions).
  const copiedBefore = res.corruptions;
  for (let i = 0; i < h.l1Size; i++) {
    const [off, copied] = dev.l1Entry(i);
    if (off === 0 || off % cs !== 0 || off + cs > fileLen) continue;
    // Against the stored refcount, as qemu-img's check_oflag_copied does.
    const rc = await dev.refs.get(off / cs);
    if ((rc === 1) !== copied) err(`OFLAG_COPIED L2 cluster: l1_index=${i} refcount=${rc}`);
    const t = new Uint8Array(cs);
    await dev.file.read(off, t);
    const tv = new DataView(t.buffer);
    for (let j = 0; j < g.l2Entries; j++) {
      const m = decodeL2(tv, j, g);
      if ((m.kind === 'normal' || (m.kind === 'zero' && m.host !== 0)) && m.host % cs === 0) {
        const r = await dev.refs.get(m.host / cs);
        if ((r === 1) !== m.copied) err(`OFLAG_COPIED data cluster: l2_entry ${i}:${j} refcount=${r}`);
      }
    }
  }
  res.copiedErrors = res.corruptions - copiedBefore;

  if (opts.repair && (fixes.length > 0 || res.copiedErrors > 0)) {
    if (dev.readOnly) throw new VisorError('NotAllowed', 'qcow2 check: open the image read-write to repair it');
    // Placing a missing refcount block needs a cluster known to be free; when referenced
    // clusters lack a block, that knowledge is gone: refuse rather than guess.
    for (const [c, want] of fixes) {
      const bi = Math.floor(c / g.refcountBlockEntries);
      if (want > 0 && (bi >= dev.refs.table.length || dev.refs.table[bi] === 0)) {
        throw new VisorError('Unsupported', `qcow2 repair: cluster ${c} is in use but has no refcount block; rebuild the refcounts with \`qemu-img check -r all\``);
      }
    }
    dev.refs.beginDefer();
    try {
      for (const [c, want] of fixes) await dev.refs.setAbsolute(c, want);
    } finally {
      await dev.refs.endDefer();
    }
    await dev.fixCopiedFlags();
    res.repaired.leaks = res.leaks + res.leaksPastEnd;
    res.repaired.corruptions = res.corruptions;
    if (dev.header.incompatibleFeatures & QCOW2_INCOMPAT_CORRUPT) {
      await dev.setIncompatible(dev.header.incompatibleFeatures & ~QCOW2_INCOMPAT_CORRUPT);
    }
  }
  return res;
}
