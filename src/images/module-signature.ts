/**
 * Debian's kernel modules carry an appended signature (scripts/sign-file: the module, a PKCS#7
 * blob, a 12-byte `struct module_signature` whose last field is the blob's big-endian length,
 * then the magic string). The kernel checks it on every load by hashing the whole module with
 * SHA-256 in the guest: for the initramfs's modules (10.7 MB, ext4.ko alone 7 MB) that was 45 %
 * of the guest instructions of `visor run --image debian -- true` (docs/benchmarks.md, "Guest
 * work cut from every boot").
 *
 * visor's initramfs carries them without it. What the check protects against (a module altered
 * on the disk it is loaded from) is covered earlier here: the builder takes each module out of
 * the kernel package whose SHA-256 it verified against the archive's signed InRelease, and puts
 * it into the initramfs it writes itself. Debian's kernel does not enforce signatures (no
 * `module.sig_enforce` without Secure Boot's lockdown), so it loads an unsigned module, logs
 * "module verification failed" once and sets taint flag E (docs/images.md).
 */
import { VisorError } from '../base/errors.js';

export const MODULE_SIGNATURE_MAGIC = '~Module signature appended~\n';
/** sizeof(struct module_signature): algo, hash, id_type, signer_len, key_id_len, pad[3], sig_len. */
const SIGNATURE_INFO_SIZE = 12;
const ELF_MAGIC = [0x7f, 0x45, 0x4c, 0x46];

/** Whether `ko` ends with an appended module signature. */
export function hasModuleSignature(ko: Uint8Array): boolean {
  const magic = MODULE_SIGNATURE_MAGIC;
  if (ko.length < magic.length) return false;
  for (let i = 0; i < magic.length; i++) if (ko[ko.length - magic.length + i] !== magic.charCodeAt(i)) return false;
  return true;
}

/**
 * The module without its appended signature (`ko` itself when it has none). `name` is for the
 * error when the trailer is malformed: a length pointing outside the file, or no ELF object
 * before the signature.
 */
export function stripModuleSignature(ko: Uint8Array, name: string): Uint8Array {
  if (!hasModuleSignature(ko)) return ko;
  const infoEnd = ko.length - MODULE_SIGNATURE_MAGIC.length;
  const infoStart = infoEnd - SIGNATURE_INFO_SIZE;
  if (infoStart < 0) throw badModule(name, 'too short for its signature trailer');
  const sigLen = new DataView(ko.buffer, ko.byteOffset + infoEnd - 4, 4).getUint32(0, false);
  const end = infoStart - sigLen;
  if (end < ELF_MAGIC.length) throw badModule(name, `its signature claims ${sigLen} bytes, more than the file holds`);
  if (ELF_MAGIC.some((b, i) => ko[i] !== b)) throw badModule(name, 'no ELF object before the signature');
  return ko.subarray(0, end);
}

/** The error for a module the builder cannot read (module-symbols.ts uses it too). */
export function badModule(name: string, what: string): VisorError {
  return new VisorError('BadImage', `kernel module ${name}: ${what}; the kernel package may be corrupt (pull the image again)`);
}
