/**
 * `--net switch=NAME` for one visor process: every VM naming the same switch gets a port on
 * one in-process L2Switch, and that switch joins the host-wide one over a Unix socket
 * (net-socket.ts), so VMs in other visor processes on this host are on the same segment.
 * The NIC's MAC is derived from the VM name, so it is stable across runs.
 */
import { stableMac } from '../net/mac.js';
import { SwitchRegistry, type L2Switch } from '../net/switch.js';
import { VirtioNet } from '../virtio/net/device.js';
import { joinSocketSwitch, switchSocketPath, type SocketSwitchMembership } from './net-socket.js';

export interface NetAttachment {
  readonly device: VirtioNet;
  readonly switchName: string;
  dispose(): Promise<void>;
}

export class HostNetworks {
  private readonly registry = new SwitchRegistry();
  private readonly joined = new Map<string, Promise<SocketSwitchMembership | null>>();
  private readonly users = new Map<string, number>();

  /**
   * @param crossProcess join the host-wide switch over a Unix socket (default true);
   *   `socketDir` overrides where its socket lives (tests).
   */
  constructor(private readonly opts: { crossProcess?: boolean; socketDir?: string } = {}) {}

  /** A NIC for VM `vmName` plugged into switch `switchName`. */
  async attach(switchName: string, vmName: string, mac = stableMac(vmName)): Promise<NetAttachment> {
    const path = switchSocketPath(switchName, this.opts.socketDir); // validates the name
    const sw: L2Switch = this.registry.get(switchName);
    if ((this.opts.crossProcess ?? true) && !this.joined.has(switchName)) {
      this.joined.set(switchName, joinSocketSwitch(sw, path));
    }
    await this.joined.get(switchName);
    const device = new VirtioNet({ mac });
    const port = sw.attach((f) => device.receive(f), vmName);
    device.connect(port);
    this.users.set(switchName, (this.users.get(switchName) ?? 0) + 1);
    let disposed = false;
    return {
      device,
      switchName,
      dispose: async () => {
        if (disposed) return;
        disposed = true;
        device.connect(null);
        port.detach();
        const left = (this.users.get(switchName) ?? 1) - 1;
        this.users.set(switchName, left);
        if (left === 0) {
          const m = await this.joined.get(switchName);
          this.joined.delete(switchName);
          await m?.close();
        }
      },
    };
  }
}
