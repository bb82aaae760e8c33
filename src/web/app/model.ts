/**
 * The shapes the page reads from the daemon (`src/server/`'s zod schemas are the source of
 * truth; these are the fields the page shows) and the calls it makes.
 */
import { ApiError, del, get, post, request } from './api.js';

export type Role = 'admin' | 'operator' | 'viewer';

export interface Me {
  role: Role;
  project: string;
  name?: string;
}

export interface MachineStats {
  instructions?: number;
  mips?: number;
  /** CPU seconds the machine's thread has used (the page turns it into a percentage). */
  cpuSeconds?: number;
  cpuPercent?: number;
  memoryRssBytes?: number;
  blkBytesRead?: number;
  blkBytesWritten?: number;
  netRxBytes?: number;
  netTxBytes?: number;
}

export interface MachineInfo {
  id: string;
  name: string;
  image: string;
  state: string;
  reason?: string | null;
  memoryMiB: number;
  resources?: { cpuLimitPercent?: number; cpuShares?: number; balloonMiB?: number };
  networks?: string[];
  createdAt?: string;
  startedAt?: string | null;
  stats?: MachineStats | null;
}

export interface FileEntry {
  name: string;
  type: 'file' | 'dir' | 'symlink' | 'other';
  size: number;
  mode?: number;
}

export interface AuditEntry {
  seq: number;
  at?: string;
  time?: string;
  actor: string;
  action: string;
  target?: string | null;
  result: string;
}

export interface Operation {
  id: string;
  kind: string;
  status: string;
  target?: string | null;
  createdAt?: string;
  updatedAt?: string;
  error?: { code: string; message: string } | null;
}

export interface CreateMachine {
  name: string;
  image?: string;
  memoryMiB: number;
  cpuLimitPercent?: number;
  networks?: string[];
  start?: boolean;
}

export interface NetworkInfo {
  name: string;
  forwards?: { hostPort: number; guestPort: number; protocol?: 'tcp' | 'udp' }[];
}

export interface SnapshotInfo {
  name: string;
  machine?: string;
}

export interface Totals { machines: number; memoryMiB: number; cpuPercent: number }
export interface Limits { maxMachines?: number; maxMemoryMiB?: number; maxCpuPercent?: number }
/** `GET /v1/resources`: what runs against the daemon's and the project's limits. */
export interface Usage { daemon: { used: Totals; limits: Limits }; project: { used: Totals; limits: Limits } }

export const MACHINE_ACTIONS = ['start', 'stop', 'pause', 'resume', 'snapshot', 'restore', 'fork'] as const;
export type MachineAction = (typeof MACHINE_ACTIONS)[number];

const enc = encodeURIComponent;

export const api = {
  me: () => get<Me>('/v1/whoami'),
  machines: async () => (await get<{ machines: MachineInfo[] }>('/v1/machines')).machines,
  machine: (id: string) => get<MachineInfo>(`/v1/machines/${enc(id)}`),
  create: (body: CreateMachine) => post<MachineInfo | { operation: Operation }>('/v1/machines', body),
  action: (id: string, action: MachineAction, body: Record<string, unknown> = {}) => post<Operation>(`/v1/machines/${enc(id)}/${action}`, body),
  remove: (id: string) => del<unknown>(`/v1/machines/${enc(id)}`),
  images: async () => (await get<{ images: { name: string; default?: boolean }[] }>('/v1/images')).images,
  networks: async () => (await get<{ networks: NetworkInfo[] }>('/v1/networks')).networks,
  createNetwork: (body: NetworkInfo) => post<NetworkInfo>('/v1/networks', body),
  snapshots: async () => (await get<{ snapshots: SnapshotInfo[] }>('/v1/snapshots')).snapshots,
  listDir: async (id: string, path: string) => (await get<{ entries: FileEntry[] }>(`/v1/machines/${enc(id)}/dir?path=${enc(path)}`)).entries,
  readFile: (id: string, path: string) => request<ArrayBuffer>('GET', `/v1/machines/${enc(id)}/files?path=${enc(path)}`),
  writeFile: (id: string, path: string, data: Uint8Array) => request<unknown>('PUT', `/v1/machines/${enc(id)}/files?path=${enc(path)}`, data),
  audit: async () => (await get<{ entries: AuditEntry[] }>('/v1/audit?limit=200')).entries,
  resources: () => get<Usage>('/v1/resources'),
  /** Waits for an operation (202 + Location) to finish; throws its error if it failed. */
  wait: async (op: Operation) => {
    const done = await get<Operation>(`/v1/operations/${enc(op.id)}/wait?timeoutMs=120000`);
    if (done.status === 'failure') throw new ApiError(409, done.error?.code ?? 'Failed', done.error?.message ?? `${done.kind} failed`);
    return done;
  },
  operations: async () => (await get<{ operations: Operation[] }>('/v1/operations')).operations,
};

/** Which buttons a role gets (the API refuses the rest anyway). */
export function canOperate(role: Role | undefined): boolean {
  return role === 'admin' || role === 'operator';
}
export function isAdmin(role: Role | undefined): boolean {
  return role === 'admin';
}
