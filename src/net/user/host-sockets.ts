/**
 * What the user-mode network needs from its host: TCP and UDP sockets, listeners for port
 * forwards, and a name resolver. The Node implementation is src/host/usernet-sockets.ts; a
 * browser build could carry these over a WebSocket relay. Every callback may come at any
 * time after the call that registered it; the stack never assumes synchronous completion.
 */

/** Events of one host TCP socket, delivered to the network stack. */
export interface TcpSocketEvents {
  /** connectTcp only: the connection is open. */
  onConnect(): void;
  onData(data: Uint8Array): void;
  /** The peer half-closed (FIN). */
  onEnd(): void;
  /** The socket is gone; `error` when it failed (refused, reset, unreachable). */
  onClose(error: boolean): void;
  /** Bytes written earlier have drained below the high-water mark. */
  onDrain(): void;
}

export interface HostTcpSocket {
  /** Queues bytes for the peer. Never throws; a closed socket drops them. */
  write(data: Uint8Array): void;
  /** Bytes written and not yet handed to the kernel (the stack's backpressure signal). */
  readonly bufferedBytes: number;
  /** Half-closes (sends FIN once the buffered bytes are out). */
  end(): void;
  /** Closes at once (RST where the platform can). */
  destroy(): void;
  /** Stops / restarts onData (backpressure towards the host peer). */
  pause(): void;
  resume(): void;
  /** Accepted sockets only: where the connection came from. */
  readonly remoteAddress?: string;
  readonly remotePort?: number;
}

export interface HostUdpSocket {
  send(data: Uint8Array, port: number, address: string): void;
  close(): void;
}

export interface HostListener {
  close(): void;
}

export interface HostSockets {
  /** Opens a TCP connection to `address:port` (IPv4 text). */
  connectTcp(address: string, port: number, events: TcpSocketEvents): HostTcpSocket;
  /** A UDP socket on an ephemeral port; datagrams from anyone come to `onMessage`. */
  bindUdp(onMessage: (data: Uint8Array, address: string, port: number) => void): HostUdpSocket;
  /** Listens for a TCP port forward; `accept` returns the events of the new socket. */
  listenTcp(address: string, port: number, accept: (socket: HostTcpSocket) => TcpSocketEvents): Promise<HostListener>;
  /** Listens for a UDP port forward; replies go out through the returned socket. */
  listenUdp(address: string, port: number, onMessage: (data: Uint8Array, address: string, port: number) => void): Promise<HostUdpSocket>;
  /** Resolves a name to IPv4 (`family` 4) or IPv6 (6) addresses; [] when it has none. */
  resolve(name: string, family: 4 | 6): Promise<string[]>;
  /** The host's own IPv4 addresses (loopback and interfaces): what "the host itself" means. */
  hostAddresses(): string[];
}

/** Milliseconds from any fixed origin (injected so tests drive time). */
export type Clock = () => number;
