import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import type { Command } from 'commander';
import { VisorError } from '../../base/errors.js';
import { remoteFrom } from '../../server/client.js';

function defaultStateDir(): string {
  return join(process.env.XDG_STATE_HOME ?? join(homedir(), '.local', 'state'), 'visor');
}

/** The web console's built files (issue 18), three levels above this file in src/ and dist/ alike. */
function builtWebConsole(): string | undefined {
  const dir = fileURLToPath(new URL('../../../dist/web', import.meta.url));
  return existsSync(join(dir, 'index.html')) ? dir : undefined;
}

function int(name: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0) throw new VisorError('InvalidArgument', `${name} ${v}: give a whole number`);
    return n;
  };
}

const out = (s: string): void => void process.stdout.write(`${s}\n`);

/** `visor daemon`, `visor token create|ls|revoke`, `visor audit verify` (issue 17). */
export function registerDaemonCommands(program: Command): void {
  program
    .command('daemon')
    .description('Run visord: machines for many clients over a REST + WebSocket API (loopback only)')
    .option('--listen <host:port>', 'address to serve on (loopback only)', '127.0.0.1:7780')
    .option('--socket <path>', 'serve on a Unix socket instead (mode 0600)')
    .option('--state-dir <dir>', 'where the store, disks and snapshots live', defaultStateDir())
    .option('--tls-cert <file>', 'serve HTTPS with this certificate (PEM)')
    .option('--tls-key <file>', 'and this key (PEM)')
    .option('--max-machines <n>', 'admission control: running machines at most', int('--max-machines'))
    .option('--max-memory <MiB>', 'admission control: guest memory of running machines at most', int('--max-memory'))
    .option('--max-cpu <percent>', 'admission control: sum of CPU limits at most (percent of one core)', int('--max-cpu'))
    .option('--cpu-capacity <percent>', 'CPU the machines may use together, percent of one core (default: 100 per host core); shares divide it', int('--cpu-capacity'))
    .option('--web <dir>', 'serve the web console from this folder at / (default: the package\'s dist/web when built)')
    .action(async (f: { listen: string; socket?: string; stateDir: string; tlsCert?: string; tlsKey?: string; maxMachines?: number; maxMemory?: number; maxCpu?: number; cpuCapacity?: number; web?: string }) => {
      if (!!f.tlsCert !== !!f.tlsKey) throw new VisorError('InvalidArgument', '--tls-cert and --tls-key go together');
      const { startDaemon } = await import('../../server/daemon.js');
      const d = await startDaemon({
        stateDir: f.stateDir,
        listen: f.listen,
        ...(f.socket ? { socket: f.socket } : {}),
        ...(f.tlsCert && f.tlsKey ? { tls: { cert: f.tlsCert, key: f.tlsKey } } : {}),
        limits: {
          ...(f.maxMachines !== undefined ? { maxMachines: f.maxMachines } : {}),
          ...(f.maxMemory !== undefined ? { maxMemoryMiB: f.maxMemory } : {}),
          ...(f.maxCpu !== undefined ? { maxCpuPercent: f.maxCpu } : {}),
        },
        ...(f.cpuCapacity ? { cpuCapacityPercent: f.cpuCapacity } : {}),
        ...(f.web ?? builtWebConsole() ? { staticDir: (f.web ?? builtWebConsole())! } : {}),
      });
      if (d.adminTokenFile) process.stderr.write(`visor: first start: the admin token is in ${d.adminTokenFile}\n`);
      process.stderr.write(`visor: daemon listening on ${d.address}\n`);
      const stop = (sig: string) => {
        process.stderr.write(`visor: ${sig}: snapshotting running machines and stopping\n`);
        d.stop().then(() => process.exit(0), (err) => {
          process.stderr.write(`visor: stopping failed: ${(err as Error).message}\n`);
          process.exit(70);
        });
      };
      process.once('SIGTERM', () => stop('SIGTERM'));
      process.once('SIGINT', () => stop('SIGINT'));
      await new Promise(() => {}); // until a signal
    });

  const remoteOpts = (c: Command) => c.option('--remote <url>', 'daemon URL (or VISOR_REMOTE)').option('--token <token>', 'API token (or VISOR_TOKEN)').option('--json', 'print JSON');

  const token = program.command('token').description('API tokens of a daemon (admin)');
  remoteOpts(token.command('create').argument('<name>').requiredOption('--role <role>', 'admin, operator or viewer').option('--project <name>', 'the project it sees', 'default').description('create a token; its secret is printed once'))
    .action(async (name: string, f: { role: string; project: string; remote?: string; token?: string; json?: boolean }) => {
      const t = await remoteFrom(f).act('POST', '/v1/tokens', { name, role: f.role, project: f.project });
      if (f.json) out(JSON.stringify(t, null, 2));
      else out(`${t.token}\n(id ${t.id}, role ${t.role}, project ${t.project}: the secret is not shown again)`);
    });
  remoteOpts(token.command('ls').description('list tokens (never their secrets)')).action(async (f: { remote?: string; token?: string; json?: boolean }) => {
    const { tokens } = await remoteFrom(f).get('/v1/tokens');
    if (f.json) return out(JSON.stringify(tokens, null, 2));
    out('ID            NAME              ROLE      PROJECT       CREATED                   REVOKED');
    for (const t of tokens) out(`${t.id.padEnd(14)}${t.name.slice(0, 16).padEnd(18)}${t.role.padEnd(10)}${t.project.padEnd(14)}${t.createdAt.padEnd(26)}${t.revokedAt ?? '-'}`);
  });
  remoteOpts(token.command('revoke').argument('<id>').description('revoke a token')).action(async (id: string, f: { remote?: string; token?: string }) => {
    await remoteFrom(f).request('DELETE', `/v1/tokens/${encodeURIComponent(id)}`);
    out(`revoked ${id}`);
  });

  const audit = program.command('audit').description('the daemon\'s hash-chained audit log');
  remoteOpts(audit.command('verify').description('walk the chain: a changed or removed entry is found').option('--state-dir <dir>', 'check a state directory directly (daemon stopped)'))
    .action(async (f: { stateDir?: string; remote?: string; token?: string; json?: boolean }) => {
      let r: { ok: boolean; entries: number; seq?: number; problem?: string; head?: string };
      if (f.stateDir) {
        const { Store } = await import('../../server/store.js');
        const { AuditLog } = await import('../../server/audit.js');
        const s = Store.open(join(f.stateDir, 'visor.db'));
        try {
          r = new AuditLog(s).verify();
        } finally {
          s.close();
        }
      } else {
        r = await remoteFrom(f).get('/v1/audit/verify');
      }
      if (f.json) out(JSON.stringify(r, null, 2));
      else if (r.ok) out(`audit log verifies: ${r.entries} entries, head ${r.head}`);
      if (!r.ok) {
        if (!f.json) out(`audit log does NOT verify: ${r.problem}`);
        throw new VisorError('IntegrityError', `audit log: ${r.problem}`);
      }
    });
}
