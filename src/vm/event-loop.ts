/**
 * Letting the host's event loop run between slices, with globals only (the vm layer loads no
 * `node:` module). setImmediate where it exists (Node: runs after pending I/O callbacks,
 * without setTimeout's 1 ms floor); a zero timeout elsewhere.
 */
const immediate = (globalThis as { setImmediate?: (f: () => void) => unknown }).setImmediate;

export function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => (immediate ? immediate(resolve) : setTimeout(resolve, 0)));
}
