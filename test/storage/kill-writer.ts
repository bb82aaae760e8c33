/**
 * Child process for the kill test: opens a qcow2 image and writes, discards, zeroes, and
 * creates, applies and deletes internal snapshots at random until it is killed. Prints
 * "ready" once the image is open. Every operation is logged to LOG before it starts
 * ("B <op>") and after it returns ("E"), with writeSync so a line survives a SIGKILL; the
 * test replays the log to know the state before and after the interrupted operation.
 * Usage: tsx test/storage/kill-writer.ts IMAGE SEED LOG
 */
import { openSync, writeSync } from 'node:fs';
import { NodeFileHandle } from '../../src/host/file-handle.js';
import { Qcow2Device } from '../../src/storage/qcow2/device.js';
import { pattern, rng } from '../../src/storage/testing.js';

/** Keeps the test's model small: at most this many snapshots at once. */
const MAX_SNAPSHOTS = 3;

const [path, seedArg, logPath] = process.argv.slice(2);
const seed = Number(seedArg);
const r = rng(seed);
const log = openSync(logPath!, 'w');
const note = (line: string) => writeSync(log, `${line}\n`);
const dev = await Qcow2Device.open(await NodeFileHandle.open(path!, { readOnly: false }), { readOnly: false });
process.stdout.write('ready\n');
const sectors = dev.size / 512;
for (let i = 0; ; i++) {
  const len = (1 + Math.floor(r() * 64)) * 512;
  const off = Math.floor(r() * (sectors - len / 512)) * 512;
  const k = r();
  const snaps = dev.listSnapshots().map((s) => s.name);
  const pick = () => snaps[Math.floor(r() * snaps.length)]!;
  if (k < 0.03 && snaps.length < MAX_SNAPSHOTS) {
    const name = `s${seed}-${i}`;
    note(`B create ${name}`);
    await dev.createSnapshot(name);
  } else if (k < 0.05 && snaps.length > 0) {
    const name = pick();
    note(`B apply ${name}`);
    await dev.applySnapshot(name);
  } else if (k < 0.07 && snaps.length > 0) {
    const name = pick();
    note(`B delete ${name}`);
    await dev.deleteSnapshot(name);
  } else if (k < 0.6) {
    note(`B write ${off} ${len} ${i}`);
    await dev.write(off, pattern(len, i));
  } else if (k < 0.72) {
    note(`B zero ${off} ${len}`);
    await dev.discard(off, len);
  } else if (k < 0.82) {
    note(`B zero ${off} ${len}`);
    await dev.writeZeroes(off, len, r() < 0.5);
  } else if (k < 0.95) {
    const at = Math.floor(off / dev.clusterSize) * dev.clusterSize;
    note(`B write ${at} ${dev.clusterSize} ${i & 3}`);
    await dev.writeCompressed(at, pattern(dev.clusterSize, i & 3));
  } else {
    note('B flush');
    await dev.flush();
  }
  note('E');
}
