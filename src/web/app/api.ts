/**
 * The daemon's `/v1` API as the page uses it. The token lives in this tab's sessionStorage
 * only (closing the tab signs out). Errors arrive as the API says them:
 * `{ error: { code, message } }` becomes an ApiError with that code and message.
 */
const TOKEN_KEY = 'visor.token';

export class ApiError extends Error {
  constructor(readonly status: number, readonly code: string, message: string) {
    super(message);
  }
}

export function token(): string | null {
  return sessionStorage.getItem(TOKEN_KEY);
}
export function setToken(t: string | null): void {
  if (t === null) sessionStorage.removeItem(TOKEN_KEY);
  else sessionStorage.setItem(TOKEN_KEY, t);
}

async function parseError(res: Response): Promise<ApiError> {
  let code = `http_${res.status}`;
  let message = res.statusText || `HTTP ${res.status}`;
  try {
    const body = (await res.json()) as { error?: { code?: string; message?: string } };
    if (body.error?.code) code = body.error.code;
    if (body.error?.message) message = body.error.message;
  } catch {
    /* not JSON: keep the status line */
  }
  return new ApiError(res.status, code, message);
}

/** A network failure (daemon down, connection lost) as an ApiError the views can show. */
function unreachable(err: unknown): ApiError {
  return new ApiError(0, 'Unreachable', `cannot reach the visor daemon (${err instanceof Error ? err.message : String(err)})`);
}

export async function request<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = {};
  const t = token();
  if (t) headers.authorization = `Bearer ${t}`;
  let payload: BodyInit | undefined;
  if (body instanceof Blob || body instanceof ArrayBuffer || body instanceof Uint8Array) {
    headers['content-type'] = 'application/octet-stream';
    payload = body as BodyInit;
  } else if (body !== undefined) {
    headers['content-type'] = 'application/json';
    payload = JSON.stringify(body);
  }
  let res: Response;
  try {
    res = await fetch(path, { method, headers, body: payload ?? null });
  } catch (err) {
    throw unreachable(err);
  }
  if (!res.ok) throw await parseError(res);
  if (res.status === 204) return undefined as T;
  const type = res.headers.get('content-type') ?? '';
  if (type.includes('application/json')) return (await res.json()) as T;
  return (await res.arrayBuffer()) as T;
}

export const get = <T>(path: string) => request<T>('GET', path);
export const post = <T>(path: string, body?: unknown) => request<T>('POST', path, body ?? {});
export const del = <T>(path: string) => request<T>('DELETE', path);

/** Downloads a response body as bytes (files API). */
export async function getBytes(path: string): Promise<Uint8Array> {
  return new Uint8Array(await request<ArrayBuffer>('GET', path));
}

/**
 * A WebSocket to the daemon. Browsers cannot set headers on a WebSocket, so the token travels
 * as `?token=` (the daemon never logs query strings of upgrades).
 */
export function openSocket(path: string): WebSocket {
  const url = new URL(path, location.href);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  const t = token();
  if (t) url.searchParams.set('token', t);
  const ws = new WebSocket(url);
  ws.binaryType = 'arraybuffer';
  return ws;
}
