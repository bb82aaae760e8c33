/**
 * The daemon's networks are applied: a machine on a network runs behind the NAT the daemon
 * hosts, with the rules and forwards made through the API. The guest here is played by the
 * test: it joins the network's socket as the machine's NIC would (same MAC) and sends
 * frames; the machine itself is a tiny assembled guest that never drives its NIC.
 */
import { createServer, connect, type Server } from 'node:net';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp, type App } from '../../src/server/app.js';
import { nicMac } from '../../src/server/networks.js';
import { Store } from '../../src/server/store.js';
import { joinSocketSwitch, userNetSocketPath, type SocketSwitchMembership } from '../../src/host/net-socket.js';
import { L2Switch } from '../../src/net/switch.js';
import { FakeGuest as FrameGuest } from '../../src/net/user/testing.js';
import { TCP_ACK, TCP_SYN } from '../../src/net/user/tcp.js';
import { ip4 } from '../../src/net/user/packet.js';
import type { UserNet } from '../../src/net/user/user-net.js';
import { bareImages, FakeGuest, tempDir } from './support.js';

const tmp = tempDir('visord-net-');
let app: App;
let store: Store;
let token: string;
const servers: Server[] = [];
const accepted = new Map<number, number>();

async function api(method: string, url: string, body?: unknown): Promise<{ status: number; body: any }> {
  const r = await app.fastify.inject({ method: method as 'GET', url, headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) }, ...(body !== undefined ? { payload: JSON.stringify(body) } : {}) });
  return { status: r.statusCode, body: r.body ? JSON.parse(r.body) : undefined };
}

/** A TCP server on 127.0.0.1 counting the connections it accepts. */
async function hostServer(): Promise<number> {
  const s = createServer((c) => {
    const port = (s.address() as { port: number }).port;
    accepted.set(port, (accepted.get(port) ?? 0) + 1);
    c.destroy();
  });
  servers.push(s);
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  return (s.address() as { port: number }).port;
}

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

/** The machine's NIC, played by the test: frames to and from the network's switch socket. */
async function plugIn(machineId: string, network: string): Promise<{ guest: FrameGuest; leave(): Promise<void> }> {
  const sw = new L2Switch('test-nic');
  const membership: SocketSwitchMembership = await joinSocketSwitch(sw, userNetSocketPath(app.networks.switchName('default', network)));
  expect(membership.role).toBe('member');
  let deliver: (f: Uint8Array) => void = () => {};
  const port = sw.attach((f) => deliver(new Uint8Array(f)), 'guest');
  const wire = { connect: (out: (f: Uint8Array) => void) => (deliver = out), receive: (f: Uint8Array) => port.send(f) } as unknown as UserNet;
  const guest = new FrameGuest(wire, Uint8Array.from(nicMac(machineId, 0)));
  return { guest, leave: () => membership.close() };
}

async function startMachine(id: string): Promise<void> {
  const r = await app.fastify.inject({ method: 'POST', url: `/v1/machines/${id}/start`, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, payload: '{}' });
  expect(r.statusCode).toBe(202);
  const op = await api('GET', `${r.headers.location}/wait?timeoutMs=20000`);
  expect(op.body.error?.message ?? op.body.status).toBe('success');
}

const until = async (what: () => boolean, ms = 3000) => {
  const end = Date.now() + ms;
  while (!what() && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
  return what();
};

beforeAll(async () => {
  store = Store.open(join(tmp.dir, 'visor.db'));
  mkdirSync(join(tmp.dir, 'state'));
  app = await createApp({ store, stateDir: join(tmp.dir, 'state'), images: bareImages(tmp.dir), guest: new FakeGuest() });
  token = app.tokens.create('t', 'operator', 'default').token;
});

afterAll(async () => {
  await app?.machines.shutdown();
  await app?.close();
  store?.close();
  for (const s of servers) s.close();
  tmp.cleanup();
});

describe('daemon networks', () => {
  it('applies the network\'s firewall rules to its machines\' traffic', async () => {
    const denied = await hostServer();
    const allowed = await hostServer();
    const n = await api('POST', '/v1/networks', { name: 'lan', hostAccess: true, rules: [{ action: 'deny', protocol: 'tcp', cidr: '10.0.2.2/32', port: denied }] });
    expect(n.status).toBe(201);
    expect(n.body).toMatchObject({ name: 'lan', active: false, machines: [] });
    const m = await api('POST', '/v1/machines', { name: 'web', memoryMiB: 16, networks: ['lan'] });
    await startMachine(m.body.id);
    expect((await api('GET', '/v1/networks/lan')).body).toMatchObject({ active: true, machines: [m.body.id], firewallDrops: 0 });

    const nic = await plugIn(m.body.id, 'lan');
    try {
      nic.guest.tcp('10.0.2.2', 40000, denied, 1000, 0, TCP_SYN);
      nic.guest.tcp('10.0.2.2', 40001, allowed, 5000, 0, TCP_SYN);
      // The allowed SYN is answered by the NAT once the host's server accepts.
      let synAcks: number[] = [];
      expect(await until(() => {
        synAcks = synAcks.concat(nic.guest.segments().filter((s) => s.flags === (TCP_SYN | TCP_ACK)).map((s) => s.srcPort));
        return synAcks.includes(allowed) && (accepted.get(allowed) ?? 0) > 0;
      })).toBe(true);
      expect(synAcks).not.toContain(denied);
      expect(accepted.get(denied) ?? 0).toBe(0);
      expect((await api('GET', '/v1/networks/lan')).body.firewallDrops).toBe(1);
    } finally {
      await nic.leave();
    }

    // Rules are fixed while a machine of the network runs; after it stops they can change.
    expect((await api('PUT', '/v1/networks/lan', { rules: [] })).status).toBe(409);
    await api('POST', `/v1/machines/${m.body.id}/stop`, { force: true });
    expect(await until(() => !app.networks.status('default', 'lan').active)).toBe(true);
    const put = await api('PUT', '/v1/networks/lan', { hostAccess: true, rules: [{ action: 'deny', direction: 'out', protocol: 'any', cidr: 'any' }] });
    expect(put.status).toBe(200);
    expect(put.body.rules).toEqual([{ action: 'deny', direction: 'out', protocol: 'any', cidr: 'any' }]);
  }, 30_000);

  it('opens a forward made through the API to the machine it names', async () => {
    const hostPort = await freePort();
    expect((await api('POST', '/v1/networks', { name: 'pub', forwards: [{ hostPort, guestPort: 8080, machine: 'srv' }] })).status).toBe(201);
    const m = await api('POST', '/v1/machines', { name: 'srv', memoryMiB: 16, networks: ['pub'] });
    await startMachine(m.body.id);
    const nic = await plugIn(m.body.id, 'pub');
    try {
      // The guest's address is known to the NAT once it has sent something (DHCP would do it too).
      nic.guest.udp('10.0.2.3', 5353, 53, new Uint8Array(0));
      const client = connect(hostPort, '127.0.0.1');
      client.on('error', () => {});
      let syn: { dst: number; dstPort: number } | undefined;
      expect(await until(() => {
        syn ??= nic.guest.segments().find((s) => s.flags === TCP_SYN);
        return syn !== undefined;
      })).toBe(true);
      expect(syn).toMatchObject({ dst: ip4('10.0.2.15'), dstPort: 8080 });
      client.destroy();
    } finally {
      await nic.leave();
    }
    await api('POST', `/v1/machines/${m.body.id}/stop`, { force: true });
    // The last machine out closes the forward.
    expect(await until(() => !app.networks.status('default', 'pub').active)).toBe(true);
    const refused = await new Promise<boolean>((r) => {
      const c = connect(hostPort, '127.0.0.1');
      c.on('connect', () => { c.destroy(); r(false); });
      c.on('error', () => r(true));
    });
    expect(refused).toBe(true);
  }, 30_000);

  it('refuses a rule the firewall cannot parse, naming it', async () => {
    const r = await api('POST', '/v1/networks', { name: 'bad', rules: [{ action: 'deny', cidr: 'nowhere' }] });
    expect(r.status).toBe(400);
    expect(r.body.error.message).toMatch(/rules\.0.*target must be a CIDR/);
    const r2 = await api('POST', '/v1/networks', { name: 'bad', rules: [{ action: 'deny', protocol: 'icmp', cidr: 'any', port: 80 }] });
    expect(r2.status).toBe(400);
    expect(r2.body.error.message).toMatch(/icmp rules take no ports/);
  });
});
