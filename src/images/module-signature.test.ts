import { describe, expect, it } from 'vitest';
import { VisorError } from '../base/errors.js';
import { MODULE_SIGNATURE_MAGIC, hasModuleSignature, stripModuleSignature } from './module-signature.js';

/** A module as scripts/sign-file appends to it: object, PKCS#7 blob, module_signature, magic. */
function signed(object: Uint8Array, blobLen: number, claimedLen = blobLen): Uint8Array {
  const info = new Uint8Array(12);
  info[2] = 2; // id_type PKEY_ID_PKCS7; algo, hash, signer_len, key_id_len are 0 for it
  new DataView(info.buffer).setUint32(8, claimedLen, false);
  const blob = new Uint8Array(blobLen).fill(0x30);
  return new Uint8Array([...object, ...blob, ...info, ...new TextEncoder().encode(MODULE_SIGNATURE_MAGIC)]);
}

const object = new Uint8Array([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0, ...Array.from({ length: 300 }, (_, i) => i & 0xff)]);

describe('module signatures', () => {
  it('strips exactly the appended signature, leaving the ELF object byte for byte', () => {
    const ko = signed(object, 669);
    expect(hasModuleSignature(ko)).toBe(true);
    const plain = stripModuleSignature(ko, 'ext4.ko');
    expect(Array.from(plain)).toEqual(Array.from(object));
    expect(hasModuleSignature(plain)).toBe(false);
  });

  it('leaves an unsigned module as it is', () => {
    expect(stripModuleSignature(object, 'crc16.ko')).toBe(object);
  });

  it('rejects a trailer whose length points outside the file, or no ELF object before it, naming the module', () => {
    const tooLong = signed(object, 10, object.length + 11);
    expect(() => stripModuleSignature(tooLong, 'jbd2.ko')).toThrow(/jbd2\.ko: its signature claims \d+ bytes/);
    const notElf = signed(new Uint8Array(64).fill(1), 10);
    try {
      stripModuleSignature(notElf, 'virtio_net.ko');
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(VisorError);
      expect((err as VisorError).code).toBe('BadImage');
      expect((err as Error).message).toMatch(/virtio_net\.ko: no ELF object before the signature.*pull the image again/);
    }
  });
});
