/**
 * Whether a process with this pid exists (signal 0 probes without signalling). EPERM means it
 * exists but belongs to someone else. Used to tell a stale lock or pid file from a live owner.
 */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
