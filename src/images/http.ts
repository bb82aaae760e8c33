/**
 * Fetching from the mirror. Every failure becomes a VisorError that says what happened and
 * what to do; a download goes to a unique temporary file next to its destination and is
 * renamed into place only after its size and SHA256 match, so an interrupted or corrupt
 * download never leaves anything that looks complete.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import { VisorError } from '../base/errors.js';

export const MIRROR_HINT = 'check the network, or choose another mirror with --mirror URL or VISOR_MIRROR';

function errCode(err: unknown): string | undefined {
  let e: unknown = err;
  for (let i = 0; i < 4 && e; i++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string') return code;
    e = (e as { cause?: unknown }).cause;
  }
  return undefined;
}

function isAbort(err: unknown, signal?: AbortSignal): boolean {
  return !!signal?.aborted || (err as { name?: string })?.name === 'AbortError';
}

function networkError(url: string, what: string, err: unknown, signal?: AbortSignal): VisorError {
  if (err instanceof VisorError) return err;
  if (isAbort(err, signal)) return new VisorError('NetworkError', `${what}: cancelled`, { cause: err });
  const code = errCode(err);
  if (code === 'ENOSPC' || code === 'EDQUOT') return diskFull(what, err);
  const origin = new URL(url).origin;
  return new VisorError(
    'NetworkError',
    `cannot fetch ${what} from ${origin}${code ? ` (${code})` : ''}: ${(err as Error)?.message ?? String(err)}; ${MIRROR_HINT}`,
    { cause: err },
  );
}

export function diskFull(what: string, err: unknown): VisorError {
  return new VisorError(
    'IoError',
    `disk full while writing ${what}; free some space, or point XDG_CACHE_HOME at a disk with room (nothing half-written was kept)`,
    { cause: err },
  );
}

async function get(url: string, what: string, signal?: AbortSignal): Promise<Response> {
  let res: Response;
  try {
    res = await fetch(url, { signal: signal ?? null, redirect: 'follow' });
  } catch (err) {
    throw networkError(url, what, err, signal);
  }
  if (!res.ok) {
    await res.body?.cancel().catch(() => {});
    throw new VisorError(
      res.status === 404 ? 'NotFound' : 'NetworkError',
      `${what}: the mirror answered HTTP ${res.status} for ${url}; ` +
        (res.status === 404 ? 'it may be incomplete, out of date or not a Debian mirror; ' : '') + MIRROR_HINT,
    );
  }
  return res;
}

/** Fetches a small file (InRelease) into memory. */
export async function fetchBytes(url: string, what: string, signal?: AbortSignal): Promise<Buffer> {
  const res = await get(url, what, signal);
  try {
    return Buffer.from(await res.arrayBuffer());
  } catch (err) {
    throw networkError(url, `${what} (interrupted)`, err, signal);
  }
}

export interface DownloadOptions {
  what: string;
  sha256?: string;
  size?: number;
  signal?: AbortSignal;
  onProgress?: (received: number, total?: number) => void;
}

/** Downloads `url` to `dest` atomically, verifying size and SHA256 when given. */
export async function downloadFile(url: string, dest: string, opts: DownloadOptions): Promise<void> {
  const { what, signal } = opts;
  const res = await get(url, what, signal);
  const lenHeader = Number(res.headers.get('content-length') ?? NaN);
  const total = opts.size ?? (Number.isFinite(lenHeader) ? lenHeader : undefined);
  const tmp = `${dest}.part-${process.pid}-${randomBytes(4).toString('hex')}`;
  const hash = createHash('sha256');
  const file = createWriteStream(tmp);
  let fileError: unknown;
  file.on('error', (e) => { fileError = e; });
  let received = 0;
  try {
    try {
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        if (fileError) throw fileError;
        received += chunk.length;
        if (opts.size !== undefined && received > opts.size) {
          throw new VisorError('IntegrityError', `${what}: the mirror sent more than the ${opts.size} bytes the index promises; ${MIRROR_HINT}`);
        }
        hash.update(chunk);
        if (!file.write(chunk)) {
          // Both listeners go once either fires: a long download waits for drain many times.
          await new Promise<void>((resolve, reject) => {
            const onDrain = () => { file.off('error', onError); resolve(); };
            const onError = (e: Error) => { file.off('drain', onDrain); reject(e); };
            file.once('drain', onDrain);
            file.once('error', onError);
          });
        }
        opts.onProgress?.(received, total);
      }
    } catch (err) {
      throw networkError(url, `${what} (download interrupted after ${received} bytes; run the pull again)`, err, signal);
    }
    await new Promise<void>((resolve, reject) => file.end((err?: Error | null) => (err ? reject(err) : resolve())));
    if (fileError) throw fileError;
    if (opts.size !== undefined && received !== opts.size) {
      throw new VisorError('NetworkError', `${what}: download ended after ${received} of ${opts.size} bytes; run the pull again, or ${MIRROR_HINT}`);
    }
    const got = hash.digest('hex');
    if (opts.sha256 && got !== opts.sha256) {
      throw new VisorError(
        'IntegrityError',
        `${what}: SHA256 mismatch (the index says ${opts.sha256}, the download is ${got}); ` +
          `the mirror may be mid-update or corrupt: retry later, or ${MIRROR_HINT}. Nothing was kept.`,
      );
    }
    await rename(tmp, dest);
  } catch (err) {
    file.destroy();
    await rm(tmp, { force: true });
    const code = errCode(err);
    if (!(err instanceof VisorError) && (code === 'ENOSPC' || code === 'EDQUOT')) throw diskFull(what, err);
    throw err instanceof VisorError ? err : networkError(url, what, err, signal);
  }
}
