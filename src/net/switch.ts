/**
 * An in-process layer-2 learning switch. VMs in one process plug their NICs into ports;
 * frames go to the port that last sent from the destination MAC, or to every other port for
 * broadcast, multicast and unknown destinations (IEEE 802.1D flooding, without aging).
 * Frames are delivered synchronously; receivers copy what they keep and never mutate.
 */

/** Ethernet header: 6-byte destination, 6-byte source, 2-byte type. */
export const ETH_HLEN = 14;
/** Largest frame we forward: a 64 KiB IP packet (a TSO segment) and its Ethernet header. */
export const MAX_FRAME = 65536 + ETH_HLEN;
/** MAC table entries before it is flushed (bounds memory against MAC-flooding guests). */
const MAX_MACS = 4096;

export type FrameHandler = (frame: Uint8Array) => void;

export interface SwitchCounters {
  forwarded: number;
  flooded: number;
  dropped: number;
}

export class SwitchPort {
  private closed = false;
  constructor(
    private readonly sw: L2Switch,
    /** @internal frames leaving the switch through this port */
    readonly deliver: FrameHandler,
    readonly label: string,
  ) {}

  /** A frame entering the switch from this port's device. */
  send(frame: Uint8Array): void {
    if (!this.closed) this.sw.forward(this, frame);
  }

  detach(): void {
    this.closed = true;
    this.sw.remove(this);
  }
}

export class L2Switch {
  readonly counters: SwitchCounters = { forwarded: 0, flooded: 0, dropped: 0 };
  private readonly ports = new Set<SwitchPort>();
  private readonly table = new Map<string, SwitchPort>();

  constructor(readonly name: string) {}

  /** Plugs a device in; `deliver` receives frames sent to it. */
  attach(deliver: FrameHandler, label = `port${this.ports.size}`): SwitchPort {
    const p = new SwitchPort(this, deliver, label);
    this.ports.add(p);
    return p;
  }

  get portCount(): number {
    return this.ports.size;
  }

  /** @internal */
  remove(p: SwitchPort): void {
    this.ports.delete(p);
    for (const [mac, port] of this.table) if (port === p) this.table.delete(mac);
  }

  /** @internal */
  forward(from: SwitchPort, frame: Uint8Array): void {
    if (frame.length < ETH_HLEN || frame.length > MAX_FRAME) {
      this.counters.dropped++;
      return;
    }
    // Learn the source unless it is a group address (bit 0 of the first octet).
    if ((frame[6]! & 1) === 0) {
      const src = macKey(frame, 6);
      if (this.table.get(src) !== from) {
        if (this.table.size >= MAX_MACS) this.table.clear();
        this.table.set(src, from);
      }
    }
    const to = (frame[0]! & 1) === 0 ? this.table.get(macKey(frame, 0)) : undefined;
    if (to) {
      if (to !== from) {
        this.counters.forwarded++;
        to.deliver(frame);
      } else this.counters.dropped++;
      return;
    }
    this.counters.flooded++;
    for (const p of [...this.ports]) if (p !== from) p.deliver(frame);
  }
}

function macKey(b: Uint8Array, off: number): string {
  let s = '';
  for (let i = off; i < off + 6; i++) s += b[i]!.toString(16).padStart(2, '0');
  return s;
}

/** Switches by name, so `--net switch=NAME` on several VMs of one process meets on one. */
export class SwitchRegistry {
  private readonly switches = new Map<string, L2Switch>();
  get(name: string): L2Switch {
    let sw = this.switches.get(name);
    if (!sw) {
      sw = new L2Switch(name);
      this.switches.set(name, sw);
    }
    return sw;
  }
}
