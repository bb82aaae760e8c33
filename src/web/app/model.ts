/**
 * The shapes the page reads from the daemon (`src/server/`'s zod schemas are the source of
 * truth; these are the fields the page shows) and the calls it makes.
 */
import { del, get, post, request } from './api.js';

export type Role = 'admin' | 'operator' | 'viewer';

export interface Me {
  role: Role;
  project: string;
  name?: string;
}

export interface MachineStats {
  instructions?: number;
  mips?: number;
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
  stateReason?: string | null;
  memoryMiB: number;
  cpuLimitPercent?: number | null;
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
  time: string;
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
  error?: { code: string; message: string } | null;
}

export interface CreateMachine {
  name: string;
  image: string;
  memoryMiB: number;
  cpuLimitPercent?: number;
  network?: 'user' | 'none';
  forwards?: string[];
}

export const MACHINE_ACTIONS = ['start', 'stop', 'pause', 'resume', 'snapshot', 'restore', 'fork'] as const;
export type MachineAction = (typeof MACHINE_ACTIONS)[number];

const enc = encodeURIComponent;

export const api = {
  me: () => get<Me>('/v1/whoami'),
  machines: async () => (await get<{ machines: MachineInfo[] }>('/v1/machines')).machines,
  machine: (id: string) => get<MachineInfo>(`/v1/machines/${enc(id)}`),
  create: (body: CreateMachine) => post<MachineInfo | { operation: Operation }>('/v1/machines', body),
  action: (id: string, action: MachineAction, body: Record<string, unknown> = {}) => post<unknown>(`/v1/machines/${enc(id)}/${action}`, body),
  remove: (id: string) => del<unknown>(`/v1/machines/${enc(id)}`),
  images: async () => (await get<{ images: { name: string }[] }>('/v1/images')).images,
  listDir: async (id: string, path: string) => (await get<{ entries: FileEntry[] }>(`/v1/machines/${enc(id)}/files/list?path=${enc(path)}`)).entries,
  readFile: (id: string, path: string) => request<ArrayBuffer>('GET', `/v1/machines/${enc(id)}/files?path=${enc(path)}`),
  writeFile: (id: string, path: string, data: Uint8Array) => request<unknown>('PUT', `/v1/machines/${enc(id)}/files?path=${enc(path)}`, data),
  audit: async () => (await get<{ entries: AuditEntry[] }>('/v1/audit?limit=200')).entries,
  operations: async () => (await get<{ operations: Operation[] }>('/v1/operations')).operations,
};

/** Which buttons a role gets (the API refuses the rest anyway). */
export function canOperate(role: Role | undefined): boolean {
  return role === 'admin' || role === 'operator';
}
export function isAdmin(role: Role | undefined): boolean {
  return role === 'admin';
}
