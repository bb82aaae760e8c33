import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, open, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { AGENT_PORT_NAME, AGENT_SCRIPT, DATA_PORT_NAME, JSON_ARGV_AWK, POWER_SCRIPT, POWER_SH, PROFILE_SCRIPT, SESSION_WRAPPER, SHUTDOWN_SCRIPT, STDIO_PORTS_SH, encodeCommand, initScript, udhcpcScript } from './init-script.js';

// The guest runs this awk program under busybox; the host's POSIX awk checks the same
// program here (the real-image boot test runs it under busybox in QEMU).
async function argvThroughAwk(json: string): Promise<{ status: number; argv?: string[]; stderr: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'visor-awk-'));
  await writeFile(join(dir, 'p.awk'), JSON_ARGV_AWK);
  await writeFile(join(dir, 'cmd.json'), json);
  const awk = spawnSync('awk', ['-f', join(dir, 'p.awk'), join(dir, 'cmd.json')]);
  if (awk.status !== 0) return { status: awk.status ?? 1, stderr: awk.stderr.toString() };
  // Evaluate the emitted `set -- ...` line with a POSIX shell and print each argument NUL-terminated.
  const sh = spawnSync('sh', ['-c', `${awk.stdout.toString()}\nfor a in "$@"; do printf '%s\\0' "$a"; done`]);
  const out = sh.stdout.toString();
  return { status: 0, argv: out ? out.split('\0').slice(0, -1) : [], stderr: '' };
}

describe('visor.cmd argv decoding', () => {
  it.each([
    [['uname', '-a']],
    [['sh', '-c', "echo \"it's\" $HOME; exit 3"]],
    [['printf', '%s\\n', 'tab\there', 'new\nline', 'back\\slash', 'ünïcødé ✓', '/slash', '']],
    [['x', '\u0001ctl\u001f']],
    [[]],
  ])('%j survives JSON → awk → sh', async (argv) => {
    const r = await argvThroughAwk(JSON.stringify(argv));
    expect(r.stderr).toBe('');
    expect(r.argv).toEqual(argv);
  });

  it('accepts JSON escapes JSON.stringify does not emit', async () => {
    expect((await argvThroughAwk(' [ "a\\/b" , "\\u0041\\u00e9" ] ')).argv).toEqual(['a/b', 'Aé']);
  });

  it.each(['{"a":1}', '["a", 1]', '["a"', '["a"] x', '["\\q"]'])('rejects %s', async (bad) => {
    const r = await argvThroughAwk(bad);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/bad visor.cmd/);
  });

  it('encodes a command as base64 JSON', () => {
    const arg = encodeCommand(['sh', '-c', 'exit 3']);
    expect(arg).toMatch(/^visor\.cmd=[A-Za-z0-9+/=]+$/);
    expect(JSON.parse(Buffer.from(arg.slice('visor.cmd='.length), 'base64').toString())).toEqual(['sh', '-c', 'exit 3']);
  });
});

describe('init script', () => {
  const script = initScript({ kernelRelease: '6.1.0-test' });
  it('prints the start marker before any work, after its arguments when a boot snapshot waits for them, and powers off at the end', () => {
    const plain = script.indexOf('[ -z "$bootwait" ] && echo VISOR_INIT_START');
    expect(plain).toBeGreaterThan(0);
    expect(plain).toBeLessThan(script.indexOf('modprobe'));
    // With visor.bootwait=1 and no root disk: the wait comes after the drivers, and the marker
    // only once the VISOR_ARGS line is read (input held until the marker would otherwise reach
    // the console before that line, and be taken for it). With a root, the root's init waits.
    const call = script.indexOf('boot_wait /lib/visor/visor-agent && visor_args $VISOR_ARGS');
    expect(call).toBeGreaterThan(script.indexOf('/modalias'));
    expect(call).toBeGreaterThan(script.indexOf('-q ext4'));
    expect(script.lastIndexOf('[ -n "$bootwait" ] && [ -z "$root" ]', call)).toBeGreaterThan(0);
    expect(script.indexOf('echo VISOR_INIT_START', call)).toBeGreaterThan(call);
    expect(script.indexOf('echo VISOR_INIT_START', call)).toBeLessThan(script.indexOf('switch_root'));
    const fn = script.indexOf('boot_wait() {');
    expect(fn).toBeGreaterThan(0);
    expect(script.indexOf('read -r line', fn)).toBeGreaterThan(script.indexOf('echo VISOR_BOOT_WAIT', fn));
    // The root goes read-only to a waiting root init.
    expect(script).toMatch(/\[ -n "\$bootwait" \] && rw=ro\n\s*if mount -t ext4 -o \$rw/);
    expect(script).toContain("printf '\\nVISOR_EXIT=%d\\n' \"$status\"");
    expect(script).toMatch(/poweroff -f\n/);
  });
  it('runs the login shell and the command in the foreground, never as a background job (issue 20: Ctrl-C)', () => {
    // A background job of a non-interactive shell ignores SIGINT and SIGQUIT, and so does
    // everything it starts: no `&` on a line that starts the shell or the command.
    const starts = script.split('\n').filter((l) => /(sh -l|"\$@")/.test(l) && !l.trim().startsWith('#'));
    expect(starts.length).toBeGreaterThan(0);
    for (const l of starts) expect(l.trim().endsWith('&'), l).toBe(false);
    expect(script).toContain('setsid cttyhack sh -l\n');
    expect(script).not.toMatch(/trap .* USR1/);
  });
  it('runs a command under the draining session wrapper, on the serial console and on hvc0', () => {
    expect(script).toContain(`setsid cttyhack sh -c '${SESSION_WRAPPER}' visor-cmd "$@"`);
    expect(script).toContain(`setsid -c sh -c '${SESSION_WRAPPER}' visor-cmd "$@"`);
  });
  it('starts visor-agent only when a virtio-vsock device (ID 19) is present', () => {
    expect(script).toMatch(/for d in \/sys\/bus\/virtio\/devices\/\*\/device; do\n\s+if \[ -x \/\S+ \] && \[ "\$\(cat "\$d" 2>\/dev\/null\)" = 0x0013 \]/);
  });
  it('is valid POSIX shell', () => {
    const r = spawnSync('sh', ['-n'], { input: script });
    expect(r.stderr.toString()).toBe('');
    expect(r.status).toBe(0);
  });
});

describe('guest agent', () => {
  // The agent runs under busybox sh in the guest; the host's POSIX sh runs the same script
  // here with a fake sysfs and a stub shutdown (the Debian stop test runs the real thing).
  async function setup(): Promise<{ dir: string; env: NodeJS.ProcessEnv; agent: string }> {
    const dir = await mkdtemp(join(tmpdir(), 'visor-agent-'));
    const agent = join(dir, 'agent.sh');
    await writeFile(agent, AGENT_SCRIPT);
    await writeFile(join(dir, 'shutdown.sh'), 'echo SHUTDOWN >&2\n');
    for (const [port, name] of [['vport0p0', ''], ['vport0p1', AGENT_PORT_NAME], ['vport0p2', DATA_PORT_NAME]]) {
      await mkdir(join(dir, 'class', 'virtio-ports', port!), { recursive: true });
      await writeFile(join(dir, 'class', 'virtio-ports', port!, 'name'), name ? `${name}\n` : '');
    }
    return { dir, agent, env: { ...process.env, VISOR_LIB: dir, VISOR_SYSFS: dir } };
  }

  it('exits at once when no virtio-console is bound to its driver', async () => {
    const { agent, env } = await setup();
    const r = spawnSync('sh', [agent], { env, timeout: 5000 });
    expect(r.status).toBe(0);
    expect(r.stdout.toString()).toBe('');
  });

  it('waits for the port of a bound virtio-console', async () => {
    const { dir, agent, env } = await setup();
    await mkdir(join(dir, 'bus', 'virtio', 'drivers', 'virtio_console', 'virtio3'), { recursive: true });
    // Its port never becomes a device node here: the agent gives up after its ~30 s wait, so
    // stop it early; it must still be waiting (not exited) after half a second.
    const r = spawnSync('sh', [agent], { env, timeout: 500 });
    expect(r.signal).toBe('SIGTERM');
  });

  it('finds its port by name in sysfs', async () => {
    const { agent, env } = await setup();
    const r = spawnSync('sh', [agent, 'port'], { env });
    expect(r.stdout.toString()).toBe('/dev/vport0p1\n');
    expect(r.status).toBe(0);
  });

  it('greets, answers PING, refuses unknown requests, and shuts down on POWEROFF', async () => {
    const { agent, env } = await setup();
    const r = spawnSync('sh', [agent, 'serve'], { env, input: 'PING\nhello\nPOWEROFF\nPING\n' });
    expect(r.stdout.toString()).toBe('READY 1\nPONG\nERR unknown request\nOK POWEROFF\n');
    expect(r.stderr.toString()).toBe('SHUTDOWN\n');
    expect(r.status).toBe(0);
  });

  it('the shutdown and agent scripts are valid POSIX shell', () => {
    for (const text of [AGENT_SCRIPT, SHUTDOWN_SCRIPT, POWER_SCRIPT]) {
      const r = spawnSync('sh', ['-n'], { input: text });
      expect(r.stderr.toString()).toBe('');
    }
    expect(SHUTDOWN_SCRIPT).toMatch(/sync\numount -a -r 2>\/dev\/null\nsync\npoweroff -f\n$/);
  });
});

// The command's session leader (issue 20): output, arguments and status pass through untouched;
// a command ended by Ctrl-C reports 130 while the wrapper goes on to drain and exit itself.
describe('session wrapper', () => {
  const run = (...argv: string[]) => spawnSync('sh', ['-c', SESSION_WRAPPER, 'visor-cmd', ...argv]);
  it('passes the arguments, the output and the exit status through', () => {
    const r = run('sh', '-c', 'printf "%s|" "$0" "$1"; printf err >&2; exit 7', "it's", 'a b');
    expect(r.stdout.toString()).toBe("it's|a b|");
    expect(r.stderr.toString()).toBe('err');
    expect(r.status).toBe(7);
  });
  it('outlives a command killed by SIGINT and reports 130; the command keeps default signal actions', () => {
    const r = run('sh', '-c', 'grep -E "^SigIgn" /proc/self/status; kill -INT $$; echo not-reached');
    expect(r.stdout.toString()).toMatch(/^SigIgn:\s+0+\n$/);
    expect(r.status).toBe(130);
    expect(r.signal).toBe(null);
  });
});

// Debian's busybox ash runs its applets before PATH: the login shell's profile must route
// poweroff, halt and reboot to visor's power.sh (issue 20: poweroff typed at the shell did nothing).
describe('login profile', () => {
  it('defines poweroff, halt and reboot as functions calling power.sh with their name and arguments', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'visor-profile-'));
    const fake = join(dir, 'power.sh');
    await writeFile(fake, '#!/bin/sh\necho "$VISOR_POWER_ACT:$*"\n', { mode: 0o755 });
    const profile = PROFILE_SCRIPT.replaceAll(`/${POWER_SH}`, fake);
    expect(profile).not.toBe(PROFILE_SCRIPT);
    const r = spawnSync('sh', ['-c', `${profile}\npoweroff; halt -d 1; reboot -f`]);
    expect(r.stdout.toString()).toBe('poweroff:\nhalt:-d 1\nreboot:-f\n');
  });
});

// The guest's shell is busybox ash (the initramfs's, and /usr/lib/visor/busybox on a Debian
// root): the host's busybox runs the real run_on_ports here, the virtio ports stood in for
// by FIFOs the test holds and a file.
const BUSYBOX = spawnSync('busybox', ['sh', '-c', 'exit 0']).status === 0;
if (!BUSYBOX && process.env.CI === 'true') throw new Error('busybox is needed for the stdio-ports test in CI (apt-get install busybox)');
if (!BUSYBOX) console.warn('skipping the stdio-ports test: no busybox on this machine (apt-get install busybox)');

describe.runIf(BUSYBOX)('the command on the stdio ports (run_on_ports, under busybox sh)', () => {
  it('runs the command when the stdin relay ends while the command\'s stdout FIFO is still opening', async () => {
    // The hang of `visor run --image debian -- true` with stdin at end of file: init blocked
    // opening the stdout FIFO (its relay not yet there) when the stdin relay, finding end of
    // input at once, exited; its SIGCHLD interrupted the open ("can't create
    // /run/visor-out: Interrupted system call"), the command never ran, and init waited
    // forever for a relay that waited for a writer.
    const dir = await mkdtemp(join(tmpdir(), 'visor-ports-'));
    execFileSync('mkfifo', [join(dir, 'in-port'), join(dir, 'out-port')]);
    const script = `${STDIO_PORTS_SH.replaceAll('/run/visor-', `${dir}/visor-`)}
in_port=${dir}/in-port out_port=${dir}/out-port err_port=${dir}/err-port
run_on_ports sh -c 'echo out; echo err >&2; exit 3'
echo "status=$?"
`;
    // Its own process group: a relay left waiting is killed with it, and a read of ours ends.
    const sh = spawn('busybox', ['sh', '-c', script], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    const killAll = () => {
      try {
        process.kill(-sh.pid!, 'SIGKILL');
      } catch {
        // already gone
      }
    };
    const exited = new Promise<number | null>((resolve) => sh.on('exit', resolve));
    let log = '';
    sh.stdout.on('data', (b: Buffer) => (log += b.toString()));
    sh.stderr.on('data', (b: Buffer) => (log += b.toString()));
    // Without the fix the shell never ends: give up on it after 10 s (the assertions then fail).
    const deadline = setTimeout(killAll, 10_000);
    try {
      // The stdin "port" opens once its relay has opened the command's stdin FIFO; the stdout
      // "port" is not opened yet, so its relay (and the command's open of its FIFO) waits.
      const stdin = await open(join(dir, 'in-port'), 'w');
      // Let the command's side reach its blocking open of the stdout FIFO, then end the input:
      // the stdin relay exits now (had this shell been opening a FIFO, the open failed).
      await new Promise((r) => setTimeout(r, 200));
      await stdin.close();
      await new Promise((r) => setTimeout(r, 200));
      const stdout = await open(join(dir, 'out-port'), 'r');
      const out = await stdout.readFile('utf8');
      await stdout.close();
      expect(log).not.toMatch(/Interrupted system call/);
      expect(await exited).toBe(0);
      expect(log).toBe('status=3\n');
      expect(out).toBe('out\n');
    } finally {
      clearTimeout(deadline);
      killAll();
    }
    expect(await readFile(join(dir, 'err-port'), 'utf8')).toBe('err\n');
  }, 20_000);
});

describe('udhcpc hook', () => {
  /** Runs the hook for `event` with udhcpc's environment; returns the `ip` commands it ran. */
  async function hookRunner() {
    const dir = await mkdtemp(join(tmpdir(), 'visor-udhcpc-'));
    const log = join(dir, 'ip.log');
    await writeFile(join(dir, 'ip'), `#!/bin/sh\necho "ip $*" >> ${log}\n`, { mode: 0o755 });
    const script = join(dir, 'hook.sh');
    await writeFile(script, udhcpcScript(`#!/bin/sh\nPATH=${dir}:/usr/bin:/bin`, join(dir, 'lease')), { mode: 0o755 });
    return async (event: string, env: Record<string, string> = {}): Promise<string[]> => {
      await writeFile(log, '');
      const r = spawnSync(script, [event], { env: { interface: 'eth0', ...env } });
      expect(r.status, r.stderr.toString()).toBe(0);
      return (await readFile(log, 'utf8')).split('\n').filter(Boolean);
    };
  }

  it('is valid POSIX shell', () => {
    expect(spawnSync('sh', ['-n'], { input: udhcpcScript('#!/bin/sh', '/run/x') }).stderr.toString()).toBe('');
  });

  it('runs ip only when the lease changes: nothing before a lease or on a renewal of the same one', async () => {
    const hook = await hookRunner();
    const lease = { ip: '10.0.2.15', mask: '24', router: '10.0.2.2' };
    expect(await hook('deconfig')).toEqual([]); // udhcpc's start: init brought eth0 up, no address yet
    expect(await hook('bound', lease)).toEqual(['ip addr add 10.0.2.15/24 dev eth0', 'ip route replace default via 10.0.2.2 dev eth0']);
    expect(await hook('renew', lease)).toEqual([]); // the same lease: the address (and its connections) stay
    expect(await hook('renew', { ...lease, ip: '10.0.2.16' })).toEqual([
      'ip -4 addr flush dev eth0', 'ip addr add 10.0.2.16/24 dev eth0', 'ip route replace default via 10.0.2.2 dev eth0',
    ]);
    expect(await hook('deconfig')).toEqual(['ip -4 addr flush dev eth0']); // the lease lost
    expect(await hook('bound', lease)).toEqual(['ip addr add 10.0.2.15/24 dev eth0', 'ip route replace default via 10.0.2.2 dev eth0']);
  });
});
