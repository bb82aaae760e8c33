/**
 * Carries switch frames over a byte stream (a Unix socket between two visor processes), so
 * VMs in different processes share one switch. Framing is a 4-byte big-endian length, then
 * the frame. The stream is as untrusted as a guest: a bad length ends the link.
 */
import { MAX_FRAME, type L2Switch, type SwitchPort } from './switch.js';

export interface ByteStream {
  write(data: Uint8Array): void;
  close(): void;
}

export function encodeFrame(frame: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + frame.length);
  new DataView(out.buffer).setUint32(0, frame.length, false);
  out.set(frame, 4);
  return out;
}

/** Reassembles frames from arbitrary chunks. */
export class FrameDecoder {
  private buf = new Uint8Array(0);
  broken = false;

  /** Returns the complete frames in `chunk`; after a bad length, returns nothing forever. */
  push(chunk: Uint8Array): Uint8Array[] {
    if (this.broken) return [];
    const all = new Uint8Array(this.buf.length + chunk.length);
    all.set(this.buf);
    all.set(chunk, this.buf.length);
    const frames: Uint8Array[] = [];
    let p = 0;
    while (all.length - p >= 4) {
      const len = new DataView(all.buffer, p, 4).getUint32(0, false);
      if (len === 0 || len > MAX_FRAME) {
        this.broken = true;
        return frames;
      }
      if (all.length - p - 4 < len) break;
      frames.push(all.slice(p + 4, p + 4 + len));
      p += 4 + len;
    }
    this.buf = all.slice(p);
    return frames;
  }
}

/** One end of a switch-to-stream link. Feed received bytes to `receive()`. */
export class SwitchLink {
  private readonly port: SwitchPort;
  private readonly decoder = new FrameDecoder();
  framesIn = 0;
  framesOut = 0;

  constructor(
    sw: L2Switch,
    private readonly stream: ByteStream,
    label = 'link',
  ) {
    this.port = sw.attach((frame) => {
      this.framesOut++;
      this.stream.write(encodeFrame(frame));
    }, label);
  }

  receive(chunk: Uint8Array): void {
    for (const f of this.decoder.push(chunk)) {
      this.framesIn++;
      this.port.send(f);
    }
    if (this.decoder.broken) this.close();
  }

  close(): void {
    this.port.detach();
    this.stream.close();
  }
}
