import { gunzipSync } from 'node:zlib';

/**
 * An initramfs as the guest should get it: a gzip'd one is inflated here, on the host.
 *
 * visor's images keep the initramfs gzip'd on disk (~2.5 MiB instead of ~12 MiB), but Linux
 * inflating it at boot was ~180 M of the ~790 M guest instructions to /init (QEMU
 * `-icount shift=0`: 0.791 -> 0.637 G given the same archive uncompressed; zstd and lz4 were
 * no better in the guest: 519 M and 155 M). Node's zlib does it in tens of milliseconds, and
 * the kernel takes an uncompressed cpio archive as readily (Documentation/driver-api/
 * early-userspace/buffer-format.rst). Anything else (other formats, several archives one after
 * another, a gzip stream with trailing data) goes to the guest as it is: the kernel copes.
 */
export function inflateInitrd(bytes: Uint8Array, guestRamBytes: number): Uint8Array {
  if (bytes.length < 18 || bytes[0] !== 0x1f || bytes[1] !== 0x8b) return bytes;
  let inflated: Uint8Array;
  try {
    inflated = new Uint8Array(gunzipSync(bytes));
  } catch {
    return bytes;
  }
  // The archive sits in guest RAM beside what the kernel unpacks from it until it is freed:
  // inflated, visor's 12 MiB one left a 96 MiB guest without room for /tmp (the gzip'd one
  // boots there). Small guests keep the compact form and inflate it themselves.
  return inflated.length <= guestRamBytes / MAX_RAM_SHARE ? inflated : bytes;
}

/** An inflated initrd may take at most 1/MAX_RAM_SHARE of guest RAM (12 MiB: guests of 192 MiB and more). */
export const MAX_RAM_SHARE = 16;
