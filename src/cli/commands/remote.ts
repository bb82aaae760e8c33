import { readFileSync, writeFileSync } from 'node:fs';
import type { Command } from 'commander';
import WebSocket from 'ws';
import { VisorError } from '../../base/errors.js';
import { parseRateSpec } from '../../net/user/spec.js';
import { remoteFrom, type RemoteClient } from '../../server/client.js';

const out = (s: string): void => void process.stdout.write(`${s}\n`);

export interface RemoteFlags {
  remote?: string;
  token?: string;
  json?: boolean;
}

function withRemote(c: Command): Command {
  return c.option('--remote <url>', 'daemon URL (or VISOR_REMOTE)').option('--token <token>', 'API token (or VISOR_TOKEN)').option('--json', 'print JSON');
}

function machineLine(m: any): string {
  return `${m.name.padEnd(20)}${m.state.padEnd(10)}${m.image.padEnd(10)}${String(m.memoryMiB).padStart(6)} MiB  ${String(m.resources.cpuLimitPercent).padStart(3)}%  ${m.id}${m.reason ? `  (${m.reason})` : ''}`;
}

const HEADER = `${'NAME'.padEnd(20)}${'STATE'.padEnd(10)}${'IMAGE'.padEnd(10)}${'MEMORY'.padStart(10)}  CPU   ID`;

/** NAME:/guest/path → [name, path]; anything else is a local path. */
function splitRemotePath(s: string): [string, string] | undefined {
  const m = /^([a-z0-9][a-z0-9-]{0,39}):(\/.*)$/.exec(s);
  return m ? [m[1]!, m[2]!] : undefined;
}

async function show(c: RemoteClient, name: string, f: RemoteFlags): Promise<void> {
  const m = await c.get(`/v1/machines/${encodeURIComponent(name)}`);
  out(f.json ? JSON.stringify(m, null, 2) : machineLine(m));
}

/**
 * `visor cp SRC DST` against a daemon: exactly one side is NAME:/path in a machine. Registered
 * by cp.ts, which runs it when --remote (or VISOR_REMOTE) is given and otherwise copies to or
 * from a stopped kept machine's disk.
 */
export async function remoteCp(src: string, dst: string, f: RemoteFlags): Promise<void> {
  const c = remoteFrom(f);
  const from = splitRemotePath(src);
  const to = splitRemotePath(dst);
  if (!!from === !!to) throw new VisorError('InvalidArgument', 'cp: exactly one of SRC and DST is NAME:/path in a machine');
  if (from) {
    const r = await c.request('GET', `/v1/machines/${encodeURIComponent(from[0])}/files?path=${encodeURIComponent(from[1])}`);
    writeFileSync(dst, r.bytes ?? new Uint8Array());
  } else {
    await c.request('PUT', `/v1/machines/${encodeURIComponent(to![0])}/files?path=${encodeURIComponent(to![1])}`, undefined, readFileSync(src));
  }
}

/** `visor ls|create|start|stop|exec|console` against a daemon (`--remote URL --token T`); `cp` is in cp.ts. */
export function registerRemoteCommands(program: Command): void {
  withRemote(program.command('ls').description('list the machines of a daemon (--remote)')).action(async (f: RemoteFlags) => {
    const { machines } = await remoteFrom(f).get('/v1/machines');
    if (f.json) return out(JSON.stringify(machines, null, 2));
    out(HEADER);
    for (const m of machines) out(machineLine(m));
  });

  withRemote(program.command('create').argument('<name>').description('create a machine on a daemon (--remote)'))
    .option('--image <name>', 'image (default: the daemon\'s)')
    .option('--memory <MiB>', 'guest memory in MiB', Number)
    .option('--cpu-limit <percent>', 'percent of one host core', Number)
    .option('--disk <MiB>', 'a new qcow2 data disk of this size', Number)
    .option('--network <name...>', 'networks to join')
    .option('--net-rate <spec>', 'rate limits of each NIC, as for visor run: tx=BYTES,rx=BYTES,tx-pps=N,rx-pps=N,tx-burst=BYTES,rx-burst=BYTES (K/M/G)')
    .option('--start', 'start it at once')
    .action(async (name: string, f: RemoteFlags & { image?: string; memory?: number; cpuLimit?: number; disk?: number; network?: string[]; netRate?: string; start?: boolean }) => {
      const netLimits = f.netRate !== undefined ? parseRateSpec(f.netRate) : undefined;
      if (typeof netLimits === 'string') throw new VisorError('InvalidArgument', `--net-rate: ${netLimits}`);
      const c = remoteFrom(f);
      const body = {
        name,
        ...(f.image ? { image: f.image } : {}),
        ...(f.memory !== undefined ? { memoryMiB: f.memory } : {}),
        ...(f.cpuLimit !== undefined ? { cpuLimitPercent: f.cpuLimit } : {}),
        ...(f.disk !== undefined ? { diskMiB: f.disk } : {}),
        ...(f.network ? { networks: f.network } : {}),
        ...(netLimits ? { netLimits } : {}),
        ...(f.start ? { start: true } : {}),
      };
      await c.act('POST', '/v1/machines', body);
      await show(c, name, f);
    });

  for (const verb of ['start', 'stop', 'pause', 'resume'] as const) {
    const cmd = withRemote(program.command(verb).argument('<name>').description(`${verb} a machine on a daemon (--remote)`));
    if (verb === 'stop') cmd.option('--force', 'stop at once, without asking the guest');
    cmd.action(async (name: string, f: RemoteFlags & { force?: boolean }) => {
      const c = remoteFrom(f);
      await c.act('POST', `/v1/machines/${encodeURIComponent(name)}/${verb}`, verb === 'stop' && f.force ? { force: true } : {});
      await show(c, name, f);
    });
  }

  withRemote(program.command('exec').argument('<name>').argument('<cmd...>').description('run a command in a machine on a daemon (--remote); exits with its status'))
    .option('--cwd <dir>', 'working directory in the guest')
    .option('--timeout <ms>', 'give up after this long', Number)
    .action(async (name: string, cmd: string[], f: RemoteFlags & { cwd?: string; timeout?: number }) => {
      const r = await remoteFrom(f).act('POST', `/v1/machines/${encodeURIComponent(name)}/exec`, {
        cmd: cmd.join(' '), ...(f.cwd ? { cwd: f.cwd } : {}), ...(f.timeout ? { timeoutMs: f.timeout } : {}),
      });
      if (f.json) out(JSON.stringify(r, null, 2));
      else {
        process.stdout.write(r.stdout);
        process.stderr.write(r.stderr);
      }
      process.exitCode = r.exitCode;
    });

  withRemote(program.command('console').argument('<name>').description('attach to a machine\'s console on a daemon (Ctrl-] detaches)'))
    .action(async (name: string, f: RemoteFlags) => {
      const c = remoteFrom(f);
      const m = await c.get(`/v1/machines/${encodeURIComponent(name)}`);
      const ws = new WebSocket(`${c.wsBase}/v1/machines/${m.id}/console`, { headers: { authorization: `Bearer ${c.token}` } });
      await new Promise<void>((resolve, reject) => {
        ws.once('open', () => {
          if (process.stdin.isTTY) process.stdin.setRawMode(true);
          process.stdin.on('data', (b: Buffer) => {
            if (b.includes(0x1d)) return ws.close(); // Ctrl-]
            ws.send(b);
          });
          process.stdin.resume();
        });
        ws.on('message', (d: Buffer) => process.stdout.write(d));
        ws.once('error', (e) => reject(new VisorError('NetworkError', `console: ${e.message}`)));
        ws.once('close', () => {
          if (process.stdin.isTTY) process.stdin.setRawMode(false);
          process.stdin.pause();
          resolve();
        });
      });
    });
}
