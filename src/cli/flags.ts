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
