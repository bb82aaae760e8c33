import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** Starts test/server/daemon-main.ts; resolves with its address once it listens. */
export function spawnDaemon(stateDir: string, imagesDir: string, env: NodeJS.ProcessEnv = process.env): Promise<{ p: ChildProcess; url: string; exited: Promise<number | null> }> {
  const p = spawn(process.execPath, ['--import', 'tsx', 'test/server/daemon-main.ts', stateDir, imagesDir], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env });
  const exited = new Promise<number | null>((r) => p.once('exit', (code) => r(code)));
  return new Promise((res, rej) => {
    let out = '';
    let err = '';
    p.stderr!.on('data', (d) => (err += d));
    p.stdout!.on('data', (d) => {
      out += d;
      const m = /listening (\S+)\n/.exec(out);
      if (m) res({ p, url: m[1]!, exited });
    });
    p.once('exit', (code) => rej(new Error(`daemon exited (${code}) before listening: ${err.slice(-2000)}`)));
  });
}

export async function http(url: string, token: string, method: string, path: string, body?: unknown): Promise<{ status: number; json: any; headers: Headers }> {
  const r = await fetch(url + path, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await r.text();
  return { status: r.status, json: text ? JSON.parse(text) : undefined, headers: r.headers };
}

/** Runs an operation-returning request and waits for the operation. */
export async function act(url: string, token: string, path: string, body: unknown = {}, timeoutMs = 30_000): Promise<any> {
  const r = await http(url, token, 'POST', path, body);
  if (r.status !== 202) throw new Error(`${path}: ${r.status} ${JSON.stringify(r.json)}`);
  return (await http(url, token, 'GET', `${r.headers.get('location')}/wait?timeoutMs=${timeoutMs}`)).json;
}
