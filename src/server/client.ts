/**
 * A client of visord's API (the CLI's `--remote`): JSON requests with the bearer token, API
 * errors turned back into VisorErrors with the daemon's code, operations waited for.
 */
import { VisorError, type VisorErrorCode, HTTP_STATUS } from '../base/errors.js';

export interface RemoteOptions {
  url: string;
  token: string;
}

export class RemoteClient {
  readonly base: string;

  constructor(private readonly o: RemoteOptions) {
    let u: URL;
    try {
      u = new URL(o.url);
    } catch {
      throw new VisorError('InvalidArgument', `--remote ${o.url}: give a URL such as http://127.0.0.1:7780`);
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new VisorError('InvalidArgument', `--remote ${o.url}: http or https only`);
    this.base = u.origin;
  }

  get wsBase(): string {
    return this.base.replace(/^http/, 'ws');
  }

  get token(): string {
    return this.o.token;
  }

  async request(method: string, path: string, body?: unknown, raw?: Uint8Array): Promise<{ status: number; headers: Headers; json?: any; bytes?: Uint8Array }> {
    const headers: Record<string, string> = { authorization: `Bearer ${this.o.token}` };
    let payload: string | Blob | undefined;
    if (raw) {
      headers['content-type'] = 'application/octet-stream';
      payload = new Blob([new Uint8Array(raw)]);
    } else if (body !== undefined) {
      headers['content-type'] = 'application/json';
      payload = JSON.stringify(body);
    }
    let r: Response;
    try {
      r = await fetch(this.base + path, { method, headers, ...(payload !== undefined ? { body: payload } : {}) });
    } catch (err) {
      throw new VisorError('NetworkError', `cannot reach the daemon at ${this.base}: ${(err as Error).message}`, { cause: err });
    }
    const isJson = r.headers.get('content-type')?.includes('application/json');
    if (r.status >= 400) {
      const b = isJson ? ((await r.json()) as { error?: { code?: string; message?: string } }) : undefined;
      const code = (b?.error?.code && b.error.code in HTTP_STATUS ? b.error.code : 'Internal') as VisorErrorCode;
      throw new VisorError(code, b?.error?.message ?? `HTTP ${r.status}`);
    }
    if (r.status === 204) return { status: r.status, headers: r.headers };
    if (isJson) return { status: r.status, headers: r.headers, json: await r.json() };
    return { status: r.status, headers: r.headers, bytes: new Uint8Array(await r.arrayBuffer()) };
  }

  async get(path: string): Promise<any> {
    return (await this.request('GET', path)).json;
  }

  /** A request that may answer 202 with an operation: waits for it, returns its result or throws its error. */
  async act(method: string, path: string, body?: unknown): Promise<any> {
    const r = await this.request(method, path, body);
    if (r.status !== 202) return r.json;
    const loc = r.headers.get('location')!;
    for (;;) {
      const op = await this.get(`${loc}/wait?timeoutMs=30000`);
      if (op.status === 'running') continue;
      if (op.status === 'failure') throw new VisorError((op.error?.code ?? 'Internal') as VisorErrorCode, op.error?.message ?? 'operation failed');
      return op.result;
    }
  }
}

/** --remote/--token, else VISOR_REMOTE/VISOR_TOKEN. */
export function remoteFrom(flags: { remote?: string; token?: string }, env: NodeJS.ProcessEnv = process.env): RemoteClient {
  const url = flags.remote ?? env.VISOR_REMOTE;
  const token = flags.token ?? env.VISOR_TOKEN;
  if (!url) throw new VisorError('InvalidArgument', 'this command talks to a daemon: give --remote URL (or set VISOR_REMOTE)');
  if (!token) throw new VisorError('InvalidArgument', 'give --token T (or set VISOR_TOKEN); the daemon wrote its first admin token to STATE_DIR/admin.token');
  return new RemoteClient({ url, token });
}
