/**
 * Turns guest pc samples (VmDriver's pcSamples: instructions charged to a pc) into a profile by
 * kernel function, with the symbol table the guest prints in /proc/kallsyms (its modules'
 * symbols included, `[ext4]`).
 * User-space pcs (below the kernel's half of the address space) are one bucket: their
 * symbols live in each process's own binaries.
 */

export interface ProfileRow {
  /** Function name, or `(user space)` / `(unknown kernel address)`. */
  name: string;
  /** The module that holds it (`ext4`), '' for the kernel image. */
  module: string;
  /** Instructions charged to it (VmDriver pcSamples). */
  instructions: number;
  share: number;
}

interface KernelSymbol {
  addr: bigint;
  name: string;
  module: string;
}

/** A pc as the hart holds it (sign-extended into a JS number) as an unsigned 64-bit address. */
export function guestAddress(pc: number): bigint {
  const v = BigInt(Math.trunc(pc));
  return v < 0n ? v + (1n << 64n) : v;
}

/** Parses /proc/kallsyms text (`ffffffff80000000 T _start`, `... t ext4_fill_super\t[ext4]`). */
export function parseKallsyms(text: string): KernelSymbol[] {
  const out: KernelSymbol[] = [];
  for (const line of text.split('\n')) {
    const m = /^([0-9a-f]{8,16}) ([a-zA-Z]) (\S+)(?:\s+\[(\S+)\])?/.exec(line.trim());
    if (!m) continue;
    const addr = BigInt(`0x${m[1]}`);
    if (addr === 0n || !'tTwW'.includes(m[2]!)) continue; // code only; zeros: kptr_restrict hid them
    out.push({ addr, name: m[3]!, module: m[4] ?? '' });
  }
  return out.sort((a, b) => (a.addr < b.addr ? -1 : a.addr > b.addr ? 1 : 0));
}

/** Samples per function, most first. A pc more than `maxGap` past its symbol is unknown. */
export function profileBySymbol(counts: ReadonlyMap<number, number>, symbols: readonly KernelSymbol[], maxGap = 1n << 20n): ProfileRow[] {
  const kernelHalf = 1n << 63n;
  const rows = new Map<string, ProfileRow>();
  let total = 0;
  const add = (name: string, module: string, n: number) => {
    const key = `${name}\0${module}`;
    const r = rows.get(key) ?? { name, module, instructions: 0, share: 0 };
    r.instructions += n;
    rows.set(key, r);
  };
  for (const [pc, n] of counts) {
    total += n;
    const a = guestAddress(pc);
    if (a < kernelHalf) { add('(user space)', '', n); continue; }
    let lo = 0, hi = symbols.length - 1, at = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (symbols[mid]!.addr <= a) { at = mid; lo = mid + 1; } else hi = mid - 1;
    }
    const s = at >= 0 ? symbols[at]! : undefined;
    if (s === undefined || a - s.addr > maxGap) add('(unknown kernel address)', '', n);
    else add(s.name, s.module, n);
  }
  const list = [...rows.values()];
  for (const r of list) r.share = total > 0 ? r.instructions / total : 0;
  return list.sort((x, y) => y.instructions - x.instructions);
}
