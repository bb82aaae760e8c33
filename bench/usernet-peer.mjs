// The host side of bench/usernet.ts, in its own process so it does not share an event loop
// with the VM: `serve PORT MIB` runs an HTTP server on 127.0.0.1 whose every GET streams MIB
// MiB of zeros; `upload PORT MIB` connects to 127.0.0.1:PORT, sends MIB MiB, waits for the
// peer to close, and prints "UPLOAD_S seconds".
import { createServer, request } from 'node:http';
import { createConnection } from 'node:net';

const [mode, portText, mibText] = process.argv.slice(2);
const port = Number(portText);
const mib = Number(mibText);
const chunk = Buffer.alloc(1 << 20);

if (mode === 'serve') {
  const srv = createServer((req, res) => {
    res.writeHead(200, { 'content-length': String(mib << 20), 'content-type': 'application/octet-stream' });
    let left = mib;
    const more = () => {
      while (left > 0) {
        left--;
        if (!res.write(chunk)) return void res.once('drain', more);
      }
      res.end();
    };
    more();
  });
  srv.listen(port, '127.0.0.1', () => console.log('SERVING'));
} else if (mode === 'upload') {
  const t0 = performance.now();
  const s = createConnection({ host: '127.0.0.1', port });
  s.on('connect', () => {
    let left = mib;
    const more = () => {
      while (left > 0) {
        left--;
        if (!s.write(chunk)) return void s.once('drain', more);
      }
      s.end();
    };
    more();
  });
  s.on('data', () => {});
  s.on('error', (e) => console.log(`UPLOAD_ERROR ${e.message}`));
  s.on('close', () => console.log(`UPLOAD_S ${((performance.now() - t0) / 1000).toFixed(3)}`));
}
void request;
