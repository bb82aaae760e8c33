import type * as Sdk from '../src/sdk/index.js';
const { Sandbox } = (await import('../dist/sdk/index.js' as string)) as typeof Sdk;
const s = await Sandbox.create({ timeoutMs: 0 });
await s.commands.run('true');
const [c] = await s.fork();
console.log('timings', c!.timings);
const mac = c!.machine.config.nets[0]!.mac;
const script = `u() { read -r a b < /proc/uptime; echo "$1 $a"; }
u start
ip link set dev eth0 address ${mac} || echo ipfail
u ip
for p in /proc/[0-9]*; do read -r c 2>/dev/null < "$p/comm" && [ "$c" = udhcpc ] && kill "\${p#/proc/}"; done
u kill
udhcpc -i eth0 -s /run/visor-udhcpc.sh -t 3 -T 1 -n 2>&1
u udhcpc`;
for (let i = 0; i < 2; i++) {
  const t = performance.now();
  const r = await c!.commands.run(script, { timeoutMs: 60000 }).catch((e) => e.result ?? e);
  console.log(performance.now() - t, r.stdout, r.stderr);
}
await c!.kill(); await s.kill();
