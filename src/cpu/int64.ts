/**
 * 64-bit integer arithmetic on (lo, hi) int32 pairs, the hart's register representation.
 * Results come back through `r64` so nothing allocates. The multiply-high forms work on
 * 16-bit limbs; division has a Number fast path and falls back to BigInt only when an
 * operand does not fit in 32 bits (rare in practice, and off the hot path).
 */
export const r64 = { lo: 0, hi: 0 };

const limbsA = new Uint32Array(4);
const limbsB = new Uint32Array(4);
const prod = new Uint32Array(8);

/** Unsigned 64×64 → 128-bit product; leaves the four 32-bit words of the result in prod16 pairs. */
function mulu128(alo: number, ahi: number, blo: number, bhi: number): void {
  limbsA[0] = alo & 0xffff; limbsA[1] = alo >>> 16; limbsA[2] = ahi & 0xffff; limbsA[3] = ahi >>> 16;
  limbsB[0] = blo & 0xffff; limbsB[1] = blo >>> 16; limbsB[2] = bhi & 0xffff; limbsB[3] = bhi >>> 16;
  prod.fill(0);
  for (let i = 0; i < 4; i++) {
    let carry = 0;
    const a = limbsA[i]!;
    for (let j = 0; j < 4; j++) {
      const t = a * limbsB[j]! + prod[i + j]! + carry; // < 2^33: exact in a double
      prod[i + j] = t & 0xffff;
      carry = Math.floor(t / 65536);
    }
    prod[i + 4] = carry;
  }
}

/** Low 64 bits of a 64×64 product. */
export function mul64(alo: number, ahi: number, blo: number, bhi: number): void {
  // (ahi·2^32 + alo)(bhi·2^32 + blo) mod 2^64 = alo·blo + 2^32·(ahi·blo + alo·bhi)
  const a0 = alo & 0xffff, a1 = alo >>> 16, b0 = blo & 0xffff, b1 = blo >>> 16;
  const p00 = a0 * b0;
  const mid = a1 * b0 + a0 * b1; // < 2^33
  const low = p00 + (mid % 65536) * 65536; // < 2^49
  const carry = Math.floor(low / 4294967296) + Math.floor(mid / 65536) + a1 * b1;
  r64.lo = low | 0; // ToInt32 takes it mod 2^32
  r64.hi = (carry + Math.imul(ahi, blo) + Math.imul(alo, bhi)) | 0;
}

/** High 64 bits of the unsigned product. */
export function mulhu64(alo: number, ahi: number, blo: number, bhi: number): void {
  mulu128(alo, ahi, blo, bhi);
  r64.lo = (prod[4]! | (prod[5]! << 16)) | 0;
  r64.hi = (prod[6]! | (prod[7]! << 16)) | 0;
}

/** High 64 bits of signed × signed. */
export function mulh64(alo: number, ahi: number, blo: number, bhi: number): void {
  mulhu64(alo, ahi, blo, bhi);
  // Signed correction: subtract b if a < 0, a if b < 0 (from the high half).
  if (ahi < 0) sub64From(blo, bhi);
  if (bhi < 0) sub64From(alo, ahi);
}

/** High 64 bits of signed a × unsigned b. */
export function mulhsu64(alo: number, ahi: number, blo: number, bhi: number): void {
  mulhu64(alo, ahi, blo, bhi);
  if (ahi < 0) sub64From(blo, bhi);
}

function sub64From(lo: number, hi: number): void {
  const rlo = r64.lo;
  const nlo = (rlo - lo) | 0;
  const borrow = (rlo >>> 0) < (lo >>> 0) ? 1 : 0;
  r64.lo = nlo;
  r64.hi = (r64.hi - hi - borrow) | 0;
}

const TWO64 = 1n << 64n;
function toBig(lo: number, hi: number): bigint {
  return (BigInt(hi) << 32n) | BigInt(lo >>> 0);
}
function toBigU(lo: number, hi: number): bigint {
  return (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);
}
function fromBig(v: bigint): void {
  const u = ((v % TWO64) + TWO64) % TWO64;
  r64.lo = Number(u & 0xffffffffn) | 0;
  r64.hi = Number(u >> 32n) | 0;
}

/** True when the pair is a sign-extended int32 (the Number fast path applies). */
function isInt32(lo: number, hi: number): boolean {
  return hi === lo >> 31;
}

/** Stores an exact integer in (-2^32, 2^32) as a 64-bit pair. */
function setNum(v: number): void {
  r64.lo = v | 0;
  r64.hi = v < 0 ? -1 : 0;
}

/** Signed division, RISC-V semantics: x/0 = -1, MIN/-1 = MIN. */
export function div64(alo: number, ahi: number, blo: number, bhi: number): void {
  if ((blo | bhi) === 0) { r64.lo = -1; r64.hi = -1; return; }
  if (isInt32(alo, ahi) && isInt32(blo, bhi)) { setNum(Math.trunc(alo / blo)); return; }
  const a = toBig(alo, ahi), b = toBig(blo, bhi);
  if (b === -1n && a === -(1n << 63n)) { r64.lo = alo; r64.hi = ahi; return; }
  fromBig(a / b);
}

/** Below 2^52 a quotient guess from one double division is off by at most one, and q·b stays exact. */
const EXACT_LIMIT_HI = 0x100000; // 2^52 = hi word 2^20

/** Unsigned quotient and remainder of Numbers below 2^52, exactly. */
function divmodSmall(a: number, b: number): void {
  let q = Math.floor(a / b);
  let r = a - q * b;
  if (r < 0) { q--; r += b; } else if (r >= b) { q++; r -= b; }
  qSmall = q; rSmall = r;
}
let qSmall = 0;
let rSmall = 0;

function setU52(v: number): void {
  r64.lo = v % 4294967296 | 0;
  r64.hi = Math.floor(v / 4294967296);
}

export function divu64(alo: number, ahi: number, blo: number, bhi: number): void {
  if ((blo | bhi) === 0) { r64.lo = -1; r64.hi = -1; return; }
  if (ahi === 0 && bhi === 0) { setNum(Math.floor((alo >>> 0) / (blo >>> 0))); return; }
  if (ahi >= 0 && ahi < EXACT_LIMIT_HI && bhi >= 0 && bhi < EXACT_LIMIT_HI) {
    divmodSmall(ahi * 4294967296 + (alo >>> 0), bhi * 4294967296 + (blo >>> 0));
    setU52(qSmall);
    return;
  }
  fromBig(toBigU(alo, ahi) / toBigU(blo, bhi));
}

/** Signed remainder: x%0 = x, MIN%-1 = 0. */
export function rem64(alo: number, ahi: number, blo: number, bhi: number): void {
  if ((blo | bhi) === 0) { r64.lo = alo; r64.hi = ahi; return; }
  if (isInt32(alo, ahi) && isInt32(blo, bhi)) { setNum(alo % blo); return; }
  const a = toBig(alo, ahi), b = toBig(blo, bhi);
  if (b === -1n) { r64.lo = 0; r64.hi = 0; return; }
  fromBig(a % b);
}

export function remu64(alo: number, ahi: number, blo: number, bhi: number): void {
  if ((blo | bhi) === 0) { r64.lo = alo; r64.hi = ahi; return; }
  if (ahi === 0 && bhi === 0) { setNum((alo >>> 0) % (blo >>> 0)); return; }
  if (ahi >= 0 && ahi < EXACT_LIMIT_HI && bhi >= 0 && bhi < EXACT_LIMIT_HI) {
    divmodSmall(ahi * 4294967296 + (alo >>> 0), bhi * 4294967296 + (blo >>> 0));
    setU52(rSmall);
    return;
  }
  fromBig(toBigU(alo, ahi) % toBigU(blo, bhi));
}

/** 32-bit division forms (DIVW etc.): operands are the low words; result sign-extended. */
export function divw(a: number, b: number): number {
  if (b === 0) return -1;
  if (a === -2147483648 && b === -1) return a;
  return (a / b) | 0;
}
export function divuw(a: number, b: number): number {
  if (b === 0) return -1;
  return ((a >>> 0) / (b >>> 0)) | 0;
}
export function remw(a: number, b: number): number {
  if (b === 0) return a;
  if (b === -1) return 0;
  return (a % b) | 0;
}
export function remuw(a: number, b: number): number {
  if (b === 0) return a;
  return ((a >>> 0) % (b >>> 0)) | 0;
}
