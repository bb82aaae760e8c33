/**
 * The input of the ext4 writer: an in-memory tree of nodes, built by the caller (e.g. from
 * unpacked .deb archives). File contents are read lazily, so a tree can describe far more
 * data than fits in memory. A node object that appears under two names is one inode (a hard
 * link; its links_count counts the names).
 *
 * Use: `planExt4Size(root, opts)` (plan.ts) gives the bytes to create the image with, then
 * `writeExt4(root, device, opts)` (writer.ts) writes it; index.ts exports both.
 */
import type { BlockDevice } from '../block-device.js';

export interface Ext4Meta {
  /** Permission bits including setuid/setgid/sticky (0o7777); no file-type bits. */
  mode: number;
  uid: number;
  gid: number;
  /** Modification time in seconds since the epoch (also used for atime/ctime/crtime). */
  mtime: number;
  /** Extended attributes by full name: 'security.*' (e.g. security.capability), 'user.*', 'trusted.*'. */
  xattrs?: Record<string, Uint8Array>;
}

export type Ext4FileNode = {
  kind: 'file';
  size: number;
  /** Returns exactly `length` bytes at `offset` (offset + length <= size). May be async. */
  read(offset: number, length: number): Uint8Array | Promise<Uint8Array>;
} & Ext4Meta;
export type Ext4DirNode = { kind: 'dir'; entries: Map<string, Ext4Node> } & Ext4Meta;
export type Ext4SymlinkNode = { kind: 'symlink'; target: string } & Ext4Meta;
export type Ext4DeviceNode = { kind: 'chardev' | 'blockdev'; major: number; minor: number } & Ext4Meta;
export type Ext4SpecialNode = { kind: 'fifo' | 'socket' } & Ext4Meta;

export type Ext4Node = Ext4FileNode | Ext4DirNode | Ext4SymlinkNode | Ext4DeviceNode | Ext4SpecialNode;

/** A file node whose contents are `data` (kept by reference). */
export function fileFromBytes(data: Uint8Array, meta: Ext4Meta): Ext4FileNode {
  return { kind: 'file', size: data.length, read: (offset, length) => data.subarray(offset, offset + length), ...meta };
}

/** A directory node with the given entries (an empty one by default). */
export function dirNode(meta: Ext4Meta, entries: Map<string, Ext4Node> = new Map()): Ext4DirNode {
  return { kind: 'dir', entries, ...meta };
}

export interface Ext4Options {
  /** Filesystem size; default: the content plus `freeBytes` of headroom. Must be <= target.size. */
  sizeBytes?: number;
  /** Free space to leave when `sizeBytes` is not given (default 256 MiB). */
  freeBytes?: number;
  /** Only 4096 is supported today (1024 is rejected with a clear error). */
  blockSize?: 1024 | 4096;
  /** Inode count; default: the tree's inodes plus generous headroom. */
  inodeCount?: number;
  /** Volume label (at most 16 bytes of UTF-8). */
  label?: string;
  /** 16-byte filesystem UUID; default derived from the tree (deterministic). */
  uuid?: Uint8Array;
  /** 16-byte directory hash seed; default derived from the uuid. */
  hashSeed?: Uint8Array;
  /** Seconds since the epoch for the superblock's times and lost+found; default 0 (deterministic output). */
  timestamp?: number;
  /** Journal size in bytes (default: 16-64 MiB by filesystem size, as mke2fs picks). */
  journalBytes?: number;
  /** CRC32C checksums on all metadata (the metadata_csum feature, mke2fs's default); default true. */
  metadataCsum?: boolean;
  /** Hash-indexed directories (dir_index) for directories over one block; default true. */
  htree?: boolean;
  /** Called as file content is written: bytes done and the tree's total file bytes. */
  onProgress?: (doneBytes: number, totalBytes: number) => void;
}

export interface Ext4Summary {
  sizeBytes: number;
  blockSize: number;
  blocksCount: number;
  freeBlocks: number;
  inodesCount: number;
  freeInodes: number;
  /** Number of distinct inodes written from the tree (hard links count once), plus lost+found. */
  inodesUsed: number;
  /** Bytes of file content written. */
  dataBytes: number;
}

export type { BlockDevice };
