/**
 * One asynchronous block-device interface for every disk format (raw, qcow2) and every
 * consumer (virtio-blk, the CLI, converters). Offsets and lengths are in bytes; callers keep
 * them 512-byte aligned, implementations reject anything else with an InvalidArgument error.
 * Sizes are Numbers: 2^53 bytes is far beyond any disk we will see.
 */
export interface BlockDevice {
  /** Virtual size in bytes (what the guest sees). */
  readonly size: number;
  readonly readOnly: boolean;
  read(offset: number, into: Uint8Array): Promise<void>;
  write(offset: number, data: Uint8Array): Promise<void>;
  /** Makes completed writes durable (fsync through every layer). */
  flush(): Promise<void>;
  /** The guest no longer needs this range; contents become unspecified (zeros in practice). */
  discard(offset: number, length: number): Promise<void>;
  /** The range reads as zeros afterwards; `mayUnmap` allows deallocation (a hole). */
  writeZeroes(offset: number, length: number, mayUnmap: boolean): Promise<void>;
  close(): Promise<void>;
}

/**
 * The file interface storage formats are written against. The host layer implements it
 * with node:fs; tests may implement it in memory. Short reads past the end return zeros.
 */
export interface FileHandle {
  size(): Promise<number>;
  read(offset: number, into: Uint8Array): Promise<void>;
  write(offset: number, data: Uint8Array): Promise<void>;
  truncate(size: number): Promise<void>;
  /** Deallocate a range (punch a hole); may fall back to writing zeros. */
  punchHole(offset: number, length: number): Promise<void>;
  sync(): Promise<void>;
  close(): Promise<void>;
}

/** Opens files relative to another file (backing chains use it). */
export interface FileOpener {
  open(path: string, opts: { readOnly: boolean }): Promise<FileHandle>;
  /** Resolves `path` relative to the directory of `relativeTo` (backing file names). */
  resolve(relativeTo: string, path: string): string;
}
