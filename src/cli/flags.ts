/**
 * The CLI's flag parsers, in one place: `--disk`, `--net`, `--vsock` (what `visor run`
 * accepts and its help text describes). Each turns one flag value into the machine config's
 * shape or throws InvalidArgument naming the flag and the accepted syntax.
 */
import { VisorError } from '../base/errors.js';
import type { DiskFormat } from '../storage/open.js';

export interface DiskSpec {
  path: string;
  format?: DiskFormat;
  readOnly: boolean;
}

/** Parses `FILE[,format=raw|qcow2][,readonly]` (the --disk syntax). */
export function parseDiskSpec(spec: string): DiskSpec {
  const parts = spec.split(',');
  const path = parts.shift() ?? '';
  if (path === '') throw new VisorError('InvalidArgument', `--disk needs a file name: '${spec}'`);
  const d: DiskSpec = { path, readOnly: false };
  for (const p of parts) {
    if (p === 'readonly' || p === 'readonly=on') d.readOnly = true;
    else if (p === 'format=raw' || p === 'format=qcow2') d.format = p.slice(7) as DiskFormat;
    else throw new VisorError('InvalidArgument', `--disk: unknown option '${p}' in '${spec}' (format=raw|qcow2, readonly)`);
  }
  return d;
}

/** Parses `--vsock PATH[,cid=N]`. */
export function parseVsockSpec(spec: string): { path: string; cid?: number } {
  const m = /^([^,]+)(?:,cid=(\d{1,10}))?$/.exec(spec);
  if (!m) throw new VisorError('InvalidArgument', `--vsock: expected PATH[,cid=N], got '${spec}'`);
  const cid = m[2] === undefined ? undefined : Number(m[2]);
  if (cid !== undefined && (cid < 3 || cid > 0xffff_fffe)) throw new VisorError('InvalidArgument', `--vsock: the guest CID must be 3-4294967294, got ${cid}`);
  return cid === undefined ? { path: m[1]! } : { path: m[1]!, cid };
}

/**
 * Parses the value of `--net`: `switch=NAME`, `user` or `user=NAME`; null when malformed.
 * (`none` is the caller's business: cli/commands/net-flags.ts.)
 */
export function parseNetSpec(spec: string): { switchName: string } | { user: string | null } | null {
  const m = /^switch=([A-Za-z0-9_.-]{1,64})$/.exec(spec);
  if (m) return { switchName: m[1]! };
  const u = /^user(?:=([A-Za-z0-9_.-]{1,64}))?$/.exec(spec);
  if (u) return { user: u[1] ?? null };
  return null;
}
