/** visord on a Unix socket and over TLS; loopback only for TCP. */
import { execFileSync } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { request as httpRequest, type RequestOptions } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { parseListen, startDaemon } from '../../src/server/daemon.js';
import { bareImages, FakeGuest, tempDir } from './support.js';

const tmp = tempDir('visord-listen-');
afterAll(() => tmp.cleanup());
const logger = pino({ level: 'silent' });

function get(opts: RequestOptions & { ca?: Buffer }, https = false): Promise<{ status: number; body: string }> {
  return new Promise((res, rej) => {
    const req = (https ? httpsRequest : httpRequest)(opts, (r) => {
      let body = '';
      r.on('data', (d) => (body += d));
      r.on('end', () => res({ status: r.statusCode!, body }));
    });
    req.on('error', rej);
    req.end();
  });
}

describe('listening', () => {
  it('binds loopback addresses only', () => {
    expect(parseListen('127.0.0.1:7780')).toEqual({ host: '127.0.0.1', port: 7780 });
    expect(parseListen('[::1]:80')).toEqual({ host: '::1', port: 80 });
    expect(() => parseListen('0.0.0.0:7780')).toThrow(/loopback addresses only/);
    expect(() => parseListen('example:1')).toThrow(/loopback/);
    expect(() => parseListen('7780')).toThrow(/HOST:PORT/);
  });

  it('serves on a Unix socket (0600), refusing a second daemon on the same state directory', async () => {
    const state = join(tmp.dir, 's1');
    const socket = join(tmp.dir, 'visord.sock');
    const d = await startDaemon({ stateDir: state, socket, images: bareImages(tmp.dir), guest: new FakeGuest(), logger });
    try {
      expect(statSync(socket).mode & 0o777).toBe(0o600);
      const token = readFileSync(join(state, 'admin.token'), 'utf8').trim();
      const r = await get({ socketPath: socket, path: '/v1/machines', headers: { authorization: `Bearer ${token}` } });
      expect(r.status).toBe(200);
      expect(JSON.parse(r.body)).toEqual({ machines: [] });
      await expect(startDaemon({ stateDir: state, listen: '127.0.0.1:0', images: bareImages(tmp.dir), guest: new FakeGuest(), logger })).rejects.toThrow(/in use by the daemon with pid/);
    } finally {
      await d.stop();
    }
  });

  it('serves HTTPS with --tls-cert/--tls-key', async () => {
    const cert = join(tmp.dir, 'cert.pem');
    const key = join(tmp.dir, 'key.pem');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert, '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1', '-days', '1'], { stdio: 'ignore' });
    const d = await startDaemon({ stateDir: join(tmp.dir, 's2'), listen: '127.0.0.1:0', tls: { cert, key }, images: bareImages(tmp.dir), guest: new FakeGuest(), logger });
    try {
      expect(d.address).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
      const u = new URL(d.address);
      const r = await get({ host: '127.0.0.1', port: Number(u.port), path: '/v1/health', ca: readFileSync(cert) }, true);
      expect(r.status).toBe(200);
    } finally {
      await d.stop();
    }
  });
});
