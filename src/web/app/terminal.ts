/**
 * A terminal (xterm.js) bound to one of the daemon's byte WebSockets: the machine's console
 * or an exec pty. Resizes follow the element; a dropped connection is said plainly and
 * retried with backoff. On reconnect the daemon replays its scrollback, so the terminal is
 * cleared first and nothing is shown twice or lost.
 */
import { Terminal } from '@xterm/xterm';
import { FitAddon } from '@xterm/addon-fit';
import { openSocket } from './api.js';

export interface TerminalHandle {
  dispose(): void;
  readonly term: Terminal;
}

export interface TerminalOptions {
  /** WebSocket path, e.g. `/v1/machines/ID/console`. */
  path: string;
  /** Called with a short status line: connecting, connected, lost (retrying in N s). */
  onStatus?: (status: string) => void;
  /** Send a resize message (`{type:'resize',cols,rows}` as text) when the size changes (ptys). */
  sendResize?: boolean;
}

export function openTerminal(el: HTMLElement, opts: TerminalOptions): TerminalHandle {
  const term = new Terminal({
    convertEol: false,
    cursorBlink: true,
    fontSize: 14,
    scrollback: 5000,
    theme: { background: '#000000' },
  });
  const fit = new FitAddon();
  term.loadAddon(fit);
  term.open(el);
  const doFit = () => {
    try { fit.fit(); } catch { /* hidden element: no size yet */ }
  };
  doFit();

  const encoder = new TextEncoder();
  let ws: WebSocket | null = null;
  let disposed = false;
  let retry = 0;
  let timer: ReturnType<typeof setTimeout> | undefined;

  const sendSize = () => {
    if (opts.sendResize && ws?.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: 'resize', cols: term.cols, rows: term.rows }));
  };

  const connect = () => {
    if (disposed) return;
    opts.onStatus?.('connecting…');
    const sock = openSocket(opts.path);
    ws = sock;
    let opened = false;
    sock.onopen = () => {
      opened = true;
      retry = 0;
      term.reset(); // the server replays its scrollback first
      opts.onStatus?.('connected');
      sendSize();
    };
    sock.onmessage = (ev) => {
      if (typeof ev.data === 'string') term.write(ev.data);
      else term.write(new Uint8Array(ev.data as ArrayBuffer));
    };
    sock.onclose = (ev) => {
      if (disposed) return;
      if (ev.code === 4401 || ev.code === 4403 || ev.code === 4404 || ev.code === 1008) {
        opts.onStatus?.(`closed by the daemon: ${ev.reason || ev.code}`);
        return;
      }
      const delay = Math.min(10, 2 ** retry++);
      opts.onStatus?.(`${opened ? 'connection lost' : 'cannot connect'}; retrying in ${delay} s`);
      timer = setTimeout(connect, delay * 1000);
    };
  };
  connect();

  const onData = term.onData((d) => {
    if (ws?.readyState === WebSocket.OPEN) ws.send(encoder.encode(d));
  });
  const onResize = term.onResize(() => sendSize());
  const observer = new ResizeObserver(() => doFit());
  observer.observe(el);

  return {
    term,
    dispose() {
      disposed = true;
      if (timer) clearTimeout(timer);
      observer.disconnect();
      onData.dispose();
      onResize.dispose();
      ws?.close();
      term.dispose();
    },
  };
}
