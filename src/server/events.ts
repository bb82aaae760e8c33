/**
 * The daemon's event stream (Incus's model): lifecycle changes, operations and audit entries,
 * each tagged with its project. `WS /v1/events` subscribers get their project's events (and
 * audit entries only when admin).
 */
import { EventEmitter } from 'node:events';

export interface DaemonEvent {
  type: 'lifecycle' | 'operation' | 'audit';
  project: string;
  at: string;
  [key: string]: unknown;
}

export class EventBus {
  private readonly emitter = new EventEmitter();

  constructor() {
    // Every WebSocket subscriber is a listener.
    this.emitter.setMaxListeners(0);
  }

  publish(e: Omit<DaemonEvent, 'at'>): void {
    this.emitter.emit('event', { ...e, at: new Date().toISOString() });
  }

  subscribe(fn: (e: DaemonEvent) => void): () => void {
    this.emitter.on('event', fn);
    return () => this.emitter.off('event', fn);
  }
}
