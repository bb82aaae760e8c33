/**
 * Writes a root tree as ext4 straight into a new qcow2 image (no raw intermediate, no host
 * tools): the filesystem's size is planned from the tree plus free room, and qcow2 keeps the
 * unwritten part thin.
 */
import { NodeFileHandle, NodeFileOpener } from '../host/file-handle.js';
import { planExt4Size, writeExt4 } from '../storage/ext4/index.js';
import { closeDisk, createDisk, openDisk } from '../storage/open.js';
import type { RootDiskWriter } from './debian-rootfs.js';

export const writeRootDisk: RootDiskWriter = async (root, path, opts) => {
  const sizeBytes = planExt4Size(root, { freeBytes: opts.freeBytes });
  const opener = new NodeFileOpener();
  const fh = await NodeFileHandle.open(path, { readOnly: false, create: 'exclusive' });
  try {
    await createDisk(opener, path, fh, { format: 'qcow2', size: sizeBytes });
  } finally {
    await fh.close();
  }
  const disk = await openDisk(opener, path, { readOnly: false, format: 'qcow2' });
  try {
    await writeExt4(root, disk.device, { sizeBytes, label: opts.label, timestamp: Math.floor(Date.now() / 1000) });
    await disk.device.flush();
  } finally {
    await closeDisk(disk);
  }
};
