/**
 * virtio-console (virtio 1.2 §5.3) with MULTIPORT: port 0 is a console (hvc0), further
 * ports are named data channels (/dev/vport0pN, /dev/virtio-ports/NAME) for host↔guest
 * traffic. Host input is buffered (bounded) until the guest posts receive buffers.
 */
import { concatBytes } from '../../base/bytes.js';
import { VIRTIO_ID_CONSOLE, bit, readConfigBytes, type DeviceContext, type VirtioDevice } from '../device.js';
import type { DescriptorChain } from '../queue/chain.js';
import { fromBase64, isObject, stateError, toBase64 } from '../state.js';

// §5.3.3 Feature bits
export const VIRTIO_CONSOLE_F_SIZE = 0;
export const VIRTIO_CONSOLE_F_MULTIPORT = 1;
export const VIRTIO_CONSOLE_F_EMERG_WRITE = 2;

// §5.3.6.2 Multiport Device Operation: control events
export const VIRTIO_CONSOLE_DEVICE_READY = 0;
export const VIRTIO_CONSOLE_DEVICE_ADD = 1;
export const VIRTIO_CONSOLE_DEVICE_REMOVE = 2;
export const VIRTIO_CONSOLE_PORT_READY = 3;
export const VIRTIO_CONSOLE_CONSOLE_PORT = 4;
export const VIRTIO_CONSOLE_RESIZE = 5;
export const VIRTIO_CONSOLE_PORT_OPEN = 6;
export const VIRTIO_CONSOLE_PORT_NAME = 7;

const CONTROL_RX = 2;
const CONTROL_TX = 3;
const CONTROL_MSG = 8; // struct virtio_console_control: le32 id, le16 event, le16 value
/** Host bytes held per port while the guest has no receive buffer; beyond that we drop. */
const MAX_PENDING = 1 << 20;

export interface ConsolePortOptions {
  /** Port name for the guest (PORT_NAME), e.g. "org.visor.data". Unused for the console. */
  name?: string;
  /** A console port becomes an hvc device in the guest. */
  console?: boolean;
}

/** One port as the host sees it. */
export class ConsolePort {
  /** Bytes the guest wrote to this port. */
  onOutput: (data: Uint8Array) => void = () => {};
  /** The guest opened or closed its end (PORT_OPEN from the driver). */
  onGuestOpen: (open: boolean) => void = () => {};
  guestOpen = false;
  /**
   * The host end is connected (VIRTIO_CONSOLE_PORT_OPEN from the device). closeHost() clears
   * it: a guest reader then gets end-of-file once it has read what was sent before.
   */
  hostOpen = true;
  /** @internal the PORT_OPEN 0 for closeHost() has gone to the driver */
  closeSent = false;
  dropped = 0;
  /** @internal host bytes waiting for guest receive buffers */
  pending: Uint8Array[] = [];
  /** @internal */
  pendingBytes = 0;
  /** @internal set by the device */
  kick: () => void = () => {};

  constructor(
    readonly id: number,
    readonly name: string,
    readonly isConsole: boolean,
  ) {}

  /** @internal set by the device */
  hostClosed: () => void = () => {};

  /** Sends bytes to the guest. Never blocks; drops (and counts) past a 1 MiB backlog. */
  write(data: Uint8Array): void {
    if (data.length === 0 || !this.hostOpen) return;
    if (this.pendingBytes + data.length > MAX_PENDING) {
      this.dropped += data.length;
      return;
    }
    this.pending.push(data.slice());
    this.pendingBytes += data.length;
    this.kick();
  }

  /** End of input: the guest reads what is pending, then end-of-file. Writes after it are dropped. */
  closeHost(): void {
    if (!this.hostOpen) return;
    this.hostOpen = false;
    this.hostClosed();
  }
}

/** What a snapshot keeps of a virtio-console (the transport keeps registers and queue indices). */
export interface ConsoleState {
  version: 1;
  /** One entry per port, in port order: a restored device must have the same ports. */
  ports: { name: string; console: boolean; guestOpen: boolean; dropped: number; pending: string; hostOpen?: boolean; closeSent?: boolean }[];
  /** Control messages (§5.3.6.2) waiting for a control receive buffer (base64). */
  controlOut: string[];
}

/** Control messages the device queues at most: a few per port during the handshake. */
const MAX_CONTROL_OUT = 1024;

export interface ConsoleOptions {
  /** Ports; default one console port. Port 0 should be the console. */
  ports?: ConsolePortOptions[];
  queueSize?: number;
}

export class VirtioConsole implements VirtioDevice {
  readonly deviceId = VIRTIO_ID_CONSOLE;
  readonly name = 'console';
  readonly features = bit(VIRTIO_CONSOLE_F_MULTIPORT) | bit(VIRTIO_CONSOLE_F_EMERG_WRITE);
  readonly queueSizes: readonly number[];
  readonly ports: ConsolePort[];
  private readonly config = new Uint8Array(12);
  private ctx: DeviceContext | null = null;
  private multiport = false;
  private controlOut: Uint8Array[] = [];

  constructor(opts: ConsoleOptions = {}) {
    const specs = opts.ports ?? [{ console: true }];
    this.ports = specs.map((p, i) => new ConsolePort(i, p.name ?? '', p.console ?? false));
    for (const p of this.ports) {
      p.kick = () => this.fillRx(p.id);
      p.hostClosed = () => this.maybeSendClose(p);
    }
    // §5.3.2: port0 rx/tx, control rx/tx, then rx/tx per further port.
    const n = 2 * (this.ports.length + 1);
    this.queueSizes = Array.from({ length: n }, () => opts.queueSize ?? 64);
    new DataView(this.config.buffer).setUint32(4, this.ports.length, true); // max_nr_ports
  }

  readConfig(offset: number, size: 1 | 2 | 4): number {
    return readConfigBytes(this.config, offset, size);
  }

  writeConfig(offset: number, _size: 1 | 2 | 4, value: number): void {
    // §5.3.4: emerg_wr takes one character for port 0, usable before DRIVER_OK.
    if (offset === 8) this.ports[0]?.onOutput(Uint8Array.of(value & 0xff));
  }

  activate(ctx: DeviceContext): void {
    this.ctx = ctx;
    this.multiport = (ctx.features & bit(VIRTIO_CONSOLE_F_MULTIPORT)) !== 0n;
    // Without MULTIPORT, port 0 is a console and exists from the start.
    if (!this.multiport && this.ports[0]) this.ports[0].guestOpen = true;
    for (let i = 0; i < this.queueSizes.length; i++) this.notify(i);
  }

  reset(): void {
    this.ctx = null;
    this.controlOut = [];
    for (const p of this.ports) {
      p.guestOpen = false;
      p.closeSent = false;
    }
  }

  saveState(): ConsoleState {
    return {
      version: 1,
      ports: this.ports.map((p) => ({
        name: p.name, console: p.isConsole, guestOpen: p.guestOpen, dropped: p.dropped, pending: toBase64(concatBytes(p.pending, p.pendingBytes)),
        ...(p.hostOpen ? {} : { hostOpen: false, closeSent: p.closeSent }),
      })),
      controlOut: this.controlOut.map(toBase64),
    };
  }

  restore(state: unknown): void {
    const bad = (why: string) => stateError(this.name, why);
    if (!isObject(state) || state.version !== 1) throw bad('unknown version');
    const s = state as unknown as ConsoleState;
    if (!Array.isArray(s.ports) || s.ports.length !== this.ports.length) throw bad(`the snapshot's device has ${Array.isArray(s.ports) ? s.ports.length : '?'} ports, this one ${this.ports.length}`);
    const pending = s.ports.map((sp, i) => {
      const p = this.ports[i]!;
      if (!isObject(sp) || sp.name !== p.name || sp.console !== p.isConsole) throw bad(`port ${i} differs from the snapshot's`);
      if (typeof sp.guestOpen !== 'boolean' || !Number.isSafeInteger(sp.dropped) || sp.dropped < 0) throw bad(`port ${i}`);
      if ((sp.hostOpen !== undefined && typeof sp.hostOpen !== 'boolean') || (sp.closeSent !== undefined && typeof sp.closeSent !== 'boolean')) throw bad(`port ${i}`);
      const b = fromBase64(sp.pending, MAX_PENDING);
      if (!b) throw bad(`port ${i}: pending input`);
      return b;
    });
    if (!Array.isArray(s.controlOut) || s.controlOut.length > MAX_CONTROL_OUT) throw bad('control messages');
    const control = s.controlOut.map((m) => fromBase64(m, CONTROL_MSG + 4096));
    if (control.some((m) => m === null || m.length < CONTROL_MSG)) throw bad('a control message is malformed');
    s.ports.forEach((sp, i) => {
      const p = this.ports[i]!;
      p.guestOpen = sp.guestOpen;
      p.dropped = sp.dropped;
      p.pending = pending[i]!.length ? [pending[i]!] : [];
      p.pendingBytes = pending[i]!.length;
      p.hostOpen = sp.hostOpen ?? true;
      p.closeSent = sp.closeSent ?? false;
    });
    this.controlOut = control as Uint8Array[];
  }

  notify(queue: number): void {
    if (!this.ctx) return;
    if (queue === CONTROL_RX) this.flushControl();
    else if (queue === CONTROL_TX) this.drainControl();
    else {
      // Queues 0/1 are port 0; 2k/2k+1 for k ≥ 2 are port k-1.
      const id = queue < 2 ? 0 : Math.floor(queue / 2) - 1;
      if (!this.ports[id] || (id > 0 && !this.multiport)) return;
      if (queue % 2 === 0) this.fillRx(id);
      else this.drainTx(id);
    }
  }

  private rxQueue(id: number): number {
    return id === 0 ? 0 : 2 * (id + 1);
  }

  private fillRx(id: number): void {
    const ctx = this.ctx;
    const port = this.ports[id];
    if (!ctx || !port || (id > 0 && !this.multiport)) return;
    // Linux drops what reaches a closed data port (virtio_console.c in_intr): hold it until
    // the guest opens the port. A console port takes data at any time.
    if (!port.isConsole && !port.guestOpen) return;
    const qi = this.rxQueue(id);
    const q = ctx.queues[qi]!;
    let any = false;
    while (port.pending.length) {
      const chain = q.pop();
      if (!chain) break;
      let written = 0;
      while (port.pending.length && written < chain.writableLen) {
        const head = port.pending[0]!;
        const n = chain.write(written, head);
        written += n;
        port.pendingBytes -= n;
        if (n === head.length) port.pending.shift();
        else port.pending[0] = head.subarray(n);
      }
      q.pushUsed(chain.head, written);
      any = true;
    }
    if (any) ctx.usedBuffers(qi);
    this.maybeSendClose(port);
  }

  /** After closeHost(), once every pending byte is in the guest's used ring (data first, then the close). */
  private maybeSendClose(port: ConsolePort): void {
    if (port.hostOpen || port.closeSent || port.pending.length > 0 || !this.ctx || !this.multiport) return;
    port.closeSent = true;
    this.sendControl(port.id, VIRTIO_CONSOLE_PORT_OPEN, 0);
  }

  private drainTx(id: number): void {
    const ctx = this.ctx!;
    const qi = id === 0 ? 1 : 2 * (id + 1) + 1;
    const q = ctx.queues[qi]!;
    let any = false;
    for (let c = q.pop(); c; c = q.pop()) {
      const data = c.readAll();
      q.pushUsed(c.head, 0);
      any = true;
      if (data.length) this.ports[id]!.onOutput(data);
    }
    if (any) ctx.usedBuffers(qi);
  }

  private sendControl(id: number, event: number, value: number, extra?: Uint8Array): void {
    const msg = new Uint8Array(CONTROL_MSG + (extra?.length ?? 0));
    const v = new DataView(msg.buffer);
    v.setUint32(0, id, true);
    v.setUint16(4, event, true);
    v.setUint16(6, value, true);
    if (extra) msg.set(extra, CONTROL_MSG);
    this.controlOut.push(msg);
    this.flushControl();
  }

  private flushControl(): void {
    const ctx = this.ctx;
    if (!ctx || !this.multiport) return;
    const q = ctx.queues[CONTROL_RX]!;
    let any = false;
    while (this.controlOut.length) {
      const c = q.pop();
      if (!c) break;
      const n = c.write(0, this.controlOut.shift()!);
      q.pushUsed(c.head, n);
      any = true;
    }
    if (any) ctx.usedBuffers(CONTROL_RX);
  }

  private drainControl(): void {
    const ctx = this.ctx!;
    if (!this.multiport) return;
    const q = ctx.queues[CONTROL_TX]!;
    let any = false;
    for (let c = q.pop(); c; c = q.pop()) {
      this.handleControl(c);
      q.pushUsed(c.head, 0);
      any = true;
    }
    if (any) ctx.usedBuffers(CONTROL_TX);
  }

  /** §5.3.6.2: the driver's side of the port handshake. */
  private handleControl(c: DescriptorChain): void {
    if (c.readableLen < CONTROL_MSG) return;
    const msg = new Uint8Array(CONTROL_MSG);
    c.read(0, msg);
    const v = new DataView(msg.buffer);
    const id = v.getUint32(0, true);
    const event = v.getUint16(4, true);
    const value = v.getUint16(6, true);
    switch (event) {
      case VIRTIO_CONSOLE_DEVICE_READY:
        if (value === 1) for (const p of this.ports) this.sendControl(p.id, VIRTIO_CONSOLE_DEVICE_ADD, 1);
        return;
      case VIRTIO_CONSOLE_PORT_READY: {
        const p = this.ports[id];
        if (!p || value !== 1) return;
        if (p.isConsole) this.sendControl(id, VIRTIO_CONSOLE_CONSOLE_PORT, 1);
        else if (p.name) this.sendControl(id, VIRTIO_CONSOLE_PORT_NAME, 1, new TextEncoder().encode(p.name));
        // The host end is connected unless the host closed it already (then: end-of-file).
        const connected = p.hostOpen || p.pending.length > 0;
        this.sendControl(id, VIRTIO_CONSOLE_PORT_OPEN, connected ? 1 : 0);
        if (!connected) p.closeSent = true;
        return;
      }
      case VIRTIO_CONSOLE_PORT_OPEN: {
        const p = this.ports[id];
        if (!p) return;
        p.guestOpen = value === 1;
        p.onGuestOpen(p.guestOpen);
        if (p.guestOpen) this.fillRx(id);
        return;
      }
      default:
        return; // unknown or device-only events from the driver: ignore
    }
  }
}

export function createVirtioConsole(opts: ConsoleOptions = {}): VirtioConsole {
  return new VirtioConsole(opts);
}
