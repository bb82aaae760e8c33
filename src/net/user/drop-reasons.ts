/**
 * Why the user network dropped a frame, one counter each (UserNetCounters.drops). Its own
 * module so the stats layout (vm/stats.ts) names them without loading the network stack.
 */
export const DROP_REASONS = ['malformed', 'checksum', 'fragment', 'firewall', 'flowLimit', 'unsupported', 'noRoute', 'dnsBusy', 'noArp', 'internal'] as const;

export type DropReason = (typeof DROP_REASONS)[number];
