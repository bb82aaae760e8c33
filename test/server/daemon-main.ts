/**
 * A visord process for the restart and crash tests: `startDaemon` on a state directory with
 * the tiny test images and the fake guest agent, stopping on SIGTERM as `visor daemon` does.
 * Prints `listening URL` once ready.  Usage: tsx daemon-main.ts STATE_DIR IMAGES_DIR
 */
import pino from 'pino';
import { startDaemon } from '../../src/server/daemon.js';
import { bareImages, FakeGuest } from './support.js';

const [stateDir, imagesDir] = process.argv.slice(2);
// VISOR_DAEMON_REAL=1: visor's images and the real guest agent (bench/daemon.ts --agent).
const real = process.env.VISOR_DAEMON_REAL === '1';
const d = await startDaemon({
  stateDir: stateDir!, listen: '127.0.0.1:0', ...(real ? {} : { images: bareImages(imagesDir!), guest: new FakeGuest() }),
  logger: pino({ level: process.env.VISOR_DAEMON_LOG ?? 'warn' }), authFailures: { max: 1e9, windowMs: 1000 },
});
process.stdout.write(`listening ${d.address}\n`);
process.once('SIGTERM', () => void d.stop().then(() => process.exit(0)));
