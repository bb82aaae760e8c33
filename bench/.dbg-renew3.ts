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
killall -q udhcpc
u killall
printf '#!/bin/sh\\n[ "$1" = deconfig ] && exit 0\\nexec /run/visor-udhcpc.sh "$@"\\n' > /run/r.sh; chmod +x /run/r.sh
u mkscript
udhcpc -i eth0 -s /run/r.sh -t 3 -T 1 -n 2>&1
u udhcpc-nodeconfig
killall -q udhcpc
udhcpc -i eth0 -s /run/visor-udhcpc.sh -t 3 -T 1 -n 2>&1
u udhcpc-full
killall -q udhcpc
udhcpc -i eth0 -s /bin/true -t 3 -T 1 -n 2>&1
u udhcpc-true
ip -4 addr show dev eth0`;
for (let i = 0; i < 2; i++) {
  const t = performance.now();
  const r = await c!.commands.run(script, { timeoutMs: 60000 }).catch((e) => e.result ?? e);
  console.log(performance.now() - t, r.stdout, r.stderr);
}
await c!.kill(); await s.kill();
