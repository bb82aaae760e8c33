/**
 * Child process for the image-lock test: opens a disk image read-write as `visor run --disk`
 * does, prints "ready", writes a pattern over and over until its stdin ends, then flushes,
 * closes and prints "done". Usage: tsx test/storage/lock-writer.ts IMAGE
 */
import { NodeFileOpener } from '../../src/host/file-handle.js';
import { closeDisk, openDisk } from '../../src/storage/open.js';
import { pattern } from '../../src/storage/testing.js';

const path = process.argv[2]!;
const disk = await openDisk(new NodeFileOpener(), path, { readOnly: false });
let ended = false;
process.stdin.on('end', () => (ended = true));
process.stdin.resume();
process.stdout.write('ready\n');
for (let i = 0; !ended; i++) {
  await disk.device.write((i % 64) * 65536, pattern(65536, i % 64));
  await new Promise((r) => setImmediate(r));
}
await disk.device.flush();
await closeDisk(disk);
process.stdout.write('done\n');
