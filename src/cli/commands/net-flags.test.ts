import { describe, expect, it } from 'vitest';
import { netsFromFlags } from './net-flags.js';

describe('visor run network flags', () => {
  it('gives an image a user network by default; --net none and a kernel of your own get none', () => {
    expect(netsFromFlags({ net: [], publish: [] }, [], true)).toEqual([{ user: true }]);
    expect(netsFromFlags({ net: ['none'], publish: [] }, [], true)).toEqual([]);
    expect(netsFromFlags({ net: [], publish: [] }, [], false)).toEqual([]);
  });

  it('puts -p on the first user network and keeps firewall rules in command-line order', () => {
    const nets = netsFromFlags({ net: ['switch=lab', 'user=office', 'user'], publish: ['8080:80', '5353:53/udp'], netNoHost: true, netRate: 'rx=10M,tx-pps=1000' }, ['allow out:tcp:10.0.0.1:443', 'deny out:tcp:10.0.0.0/8'], false);
    const rateLimit = { rx: { bytesPerSec: 10_000_000 }, tx: { packetsPerSec: 1000 } };
    expect(nets).toEqual([
      { switch: 'lab', rateLimit },
      { user: 'office', publish: ['8080:80', '5353:53/udp'], firewall: ['allow out:tcp:10.0.0.1:443', 'deny out:tcp:10.0.0.0/8'], hostAccess: false, rateLimit },
      { user: true, firewall: ['allow out:tcp:10.0.0.1:443', 'deny out:tcp:10.0.0.0/8'], hostAccess: false, rateLimit },
    ]);
  });

  it('rejects malformed values with the flag named', () => {
    expect(() => netsFromFlags({ net: ['bridge=br0'], publish: [] }, [], false)).toThrow(/--net: expected/);
    expect(() => netsFromFlags({ net: ['user'], publish: ['80'] }, [], false)).toThrow(/--publish/);
    expect(() => netsFromFlags({ net: ['user'], publish: [] }, ['deny out:tcp:300.0.0.0/8'], false)).toThrow(/--net-deny/);
    expect(() => netsFromFlags({ net: ['user'], publish: [], netRate: 'fast' }, [], false)).toThrow(/--net-rate/);
    expect(() => netsFromFlags({ net: ['switch=lab'], publish: ['80:80'] }, [], false)).toThrow(/need a user network/);
    expect(() => netsFromFlags({ net: ['none', 'user'], publish: [] }, [], true)).toThrow(/none/);
  });
});
