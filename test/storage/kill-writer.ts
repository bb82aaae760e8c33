/**
 * Child process for the kill test: opens a qcow2 image and writes, discards and zeroes at
 * random until it is killed. Prints "ready" once the image is open.
 * Usage: tsx test/storage/kill-writer.ts IMAGE SEED
 */
import { NodeFileHandle } from '../../src/host/file-handle.js';
import { Qcow2Device } from '../../src/storage/qcow2/device.js';
import { pattern, rng } from '../../src/storage/testing.js';

const [path, seedArg] = process.argv.slice(2);
const r = rng(Number(seedArg));
const dev = await Qcow2Device.open(await NodeFileHandle.open(path!, { readOnly: false }), { readOnly: false });
process.stdout.write('ready\n');
const sectors = dev.size / 512;
for (let i = 0; ; i++) {
  const len = (1 + Math.floor(r() * 64)) * 512;
  const off = Math.floor(r() * (sectors - len / 512)) * 512;
  const k = r();
  if (k < 0.6) await dev.write(off, pattern(len, i));
  else if (k < 0.75) await dev.discard(off, len);
  else if (k < 0.85) await dev.writeZeroes(off, len, r() < 0.5);
  else if (k < 0.95) await dev.writeCompressed(Math.floor(off / dev.clusterSize) * dev.clusterSize, pattern(dev.clusterSize, i & 3));
  else await dev.flush();
}
