/**
 * A writer for the store's crash test: commits transactions of two rows each (with a text
 * large enough to span pages) forever, until killed.
 */
import { Store } from '../../src/server/store.js';

const s = Store.open(process.argv[2]!);
const pad = 'x'.repeat(3000);
let n = (s.get<{ n: number | null }>('SELECT MAX(seq) AS n FROM audit')?.n ?? 0) + 1;
process.stdout.write('ready\n');
for (;;) {
  s.tx(() => {
    s.run(`INSERT INTO audit (seq, at, actor, project, action, target, result, prev, hash) VALUES (?, '', '', '', ?, '', '', '', '')`, [n, pad]);
    s.run(`INSERT INTO operations (id, project, kind, target, status, created_at, updated_at) VALUES (?, '', ?, '', '', '', '')`, [`op${n}`, pad]);
  });
  n++;
}
