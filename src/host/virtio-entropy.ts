/** node:crypto entropy for virtio-rng (the inner layer defaults to Web Crypto). */
import { randomFillSync } from 'node:crypto';
import type { EntropySource } from '../virtio/rng/device.js';

export const nodeEntropy: EntropySource = {
  fill(buf) {
    randomFillSync(buf);
  },
};
