/**
 * What the board and the host need from the virtio layer. A device model goes behind a
 * VirtioMmioTransport, which is the MmioDevice the board maps at 0x1000_1000 + 0x1000·n
 * with PLIC IRQ 1+n; the device-tree node is `compatible = "virtio,mmio"`.
 *
 *   vm.attachVirtio(slot, (ctx) => new VirtioMmioTransport({ device: createVirtioBlk({ disk }),
 *     ram: ctx, irq: ctx.irq, irqSource: ctx.irqSource }));
 */
export { VirtioMmioTransport, VIRTIO_MMIO_COMPATIBLE, type VirtioMmioOptions, type VirtioMmioState } from './mmio/transport.js';
export type { VirtioDevice, DeviceContext } from './device.js';
export { createVirtioBlk, VirtioBlk, type BlkOptions } from './blk/device.js';
export { createVirtioNet, VirtioNet, type NetOptions, type FrameSink } from './net/device.js';
export { createVirtioConsole, VirtioConsole, ConsolePort, type ConsoleOptions } from './console/device.js';
export { createVirtioRng, VirtioRng, webCryptoEntropy, type EntropySource } from './rng/device.js';
export { createVirtioBalloon, VirtioBalloon, type BalloonStats } from './balloon/device.js';
export { createVirtioVsock, VirtioVsock, VsockConnection, type VsockBackend } from './vsock/device.js';
