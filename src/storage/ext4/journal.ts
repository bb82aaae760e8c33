/**
 * An empty jbd2 journal: only its superblock (block 0 of the journal) is written; the rest
 * of the journal reads as zeros. s_start = 0 says "clean, nothing to replay".
 * jbd2 structures are big-endian.
 */
export const JBD2_MAGIC = 0xc03b3998;
const JBD2_SUPERBLOCK_V2 = 4;
/** The kernel and e2fsck refuse journals shorter than this many blocks. */
export const JBD2_MIN_BLOCKS = 1024;

export function encodeJournalSuperblock(blockSize: number, journalBlocks: number, fsUuid: Uint8Array): Uint8Array {
  const b = new Uint8Array(blockSize);
  const v = new DataView(b.buffer);
  v.setUint32(0x00, JBD2_MAGIC);
  v.setUint32(0x04, JBD2_SUPERBLOCK_V2);
  v.setUint32(0x08, 0); // header sequence
  v.setUint32(0x0c, blockSize);
  v.setUint32(0x10, journalBlocks); // s_maxlen
  v.setUint32(0x14, 1); // s_first: the first log block, right after this superblock
  v.setUint32(0x18, 1); // s_sequence: first transaction id to expect
  v.setUint32(0x1c, 0); // s_start = 0: the journal is empty
  b.set(fsUuid.subarray(0, 16), 0x30);
  v.setUint32(0x40, 1); // s_nr_users: the one filesystem this internal journal belongs to
  return b;
}
