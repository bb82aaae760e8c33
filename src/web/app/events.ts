/**
 * One connection to `WS /v1/events` for the whole page. Views subscribe; a lost connection
 * is shown in the header and retried with backoff, and subscribers are told to refetch
 * (`{ type: 'resync' }`) so nothing that happened while disconnected is missed.
 */
import { openSocket } from './api.js';

export interface DaemonEvent {
  /** lifecycle, operation, audit (from the daemon); resync (from this page, after a reconnect). */
  type: string;
  /** The machine a lifecycle event is about. */
  machine?: string;
  [k: string]: unknown;
}

type Listener = (ev: DaemonEvent) => void;
const listeners = new Set<Listener>();
let ws: WebSocket | null = null;
let retry = 0;
let stopped = true;
let timer: ReturnType<typeof setTimeout> | undefined;

function setConn(text: string, lost: boolean): void {
  const el = document.getElementById('conn');
  if (!el) return;
  el.textContent = text;
  el.classList.toggle('lost', lost);
}

function emit(ev: DaemonEvent): void {
  for (const l of listeners) {
    try { l(ev); } catch (err) { console.error(err); }
  }
}

function connect(): void {
  if (stopped) return;
  const sock = openSocket('/v1/events');
  ws = sock;
  let opened = false;
  sock.onopen = () => {
    opened = true;
    if (retry > 0) emit({ type: 'resync' });
    retry = 0;
    setConn('live', false);
  };
  sock.onmessage = (m) => {
    if (typeof m.data !== 'string') return;
    try {
      const ev = JSON.parse(m.data) as DaemonEvent;
      if (ev && typeof ev.type === 'string') emit(ev);
    } catch { /* not an event */ }
  };
  sock.onclose = (ev) => {
    if (stopped) return;
    if (ev.code === 4401 || ev.code === 1008) { setConn('signed out', true); return; }
    const delay = Math.min(15, 2 ** retry++);
    setConn(`${opened ? 'connection to the daemon lost' : 'cannot reach the daemon'}; retrying in ${delay} s`, true);
    timer = setTimeout(connect, delay * 1000);
  };
}

export function startEvents(): void {
  if (!stopped) return;
  stopped = false;
  connect();
}

export function stopEvents(): void {
  stopped = true;
  if (timer) clearTimeout(timer);
  ws?.close();
  ws = null;
  setConn('', false);
}

export function onEvent(l: Listener): () => void {
  listeners.add(l);
  return () => listeners.delete(l);
}
