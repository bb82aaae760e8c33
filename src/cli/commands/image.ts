import type { Command } from 'commander';
import { VisorError } from '../../base/errors.js';
import { cacheRoot } from '../../images/cache.js';
import { listImages, listMachines, pullImage, removeImage, removeMachine } from '../../images/index.js';
import { formatBytes, progressFor } from '../../images/progress.js';

/** `visor image pull|ls|rm` (issue 4). */
export function registerImageCommands(program: Command): void {
  const image = program.command('image').description('guest images built from Debian packages');

  image
    .command('pull')
    .description('download, verify and build an image (default: debian); does nothing when up to date')
    .argument('[name]', 'image name: debian (full Debian), tiny (busybox), or a variant', 'debian')
    .option('--mirror <url>', 'Debian mirror (default: $VISOR_MIRROR, else the host\'s apt sources)')
    .option('--force', 'rebuild even when the cached image is up to date')
    .option('--quiet', 'no progress output')
    .option('--packages <list>', 'a variant of debian with these packages too (comma-separated), cached as debian-<packages> or --as')
    .option('--as <name>', 'the cached name of the variant --packages builds')
    .action(async (name: string, o: { mirror?: string; force?: boolean; quiet?: boolean; packages?: string; as?: string }) => {
      const packages = o.packages?.split(',').map((p) => p.trim()).filter(Boolean) ?? [];
      const res = await pullImage(name, {
        ...(packages.length ? { packages } : {}),
        ...(o.as ? { as: o.as } : {}),
        ...(o.mirror ? { mirror: o.mirror } : {}),
        force: !!o.force,
        progress: progressFor(process.stderr, !o.quiet),
      });
      process.stdout.write(`${res.manifest.name}\t${res.manifest.kernelRelease}\t${res.dir}\n`);
    });

  image
    .command('ls')
    .description('list cached images')
    .option('--json', 'machine-readable output')
    .action(async (o: { json?: boolean }) => {
      const list = await listImages();
      if (o.json) {
        process.stdout.write(JSON.stringify(list, null, 2) + '\n');
        return;
      }
      if (!list.length) {
        process.stdout.write('no cached images; `visor image pull` builds the default one\n');
        return;
      }
      const rows = list.map((i) =>
        i.status === 'ok'
          ? [i.name, i.base ?? i.name, String(i.packageCount ?? '-'), formatBytes(i.size!), i.created!.slice(0, 19).replace('T', ' '), i.machines?.join(',') || '-']
          : [i.name, '-', '-', '-', `CORRUPT: ${i.error}`, '-']);
      const head = ['NAME', 'BASE', 'PACKAGES', 'SIZE', 'CREATED', 'KEPT MACHINES'];
      const w = head.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c]!.length)));
      for (const r of [head, ...rows]) process.stdout.write(r.map((x, c) => (c === r.length - 1 ? x : x.padEnd(w[c]!))).join('  ') + '\n');
    });

  image
    .command('rm')
    .description('remove a cached image (refused while kept machines use it)')
    .argument('<name>', 'image name')
    .action(async (name: string) => {
      await removeImage(name);
      process.stdout.write(`removed ${name}\n`);
    });
}

/** `visor machine ls|rm`: machines kept with `visor run --keep NAME`. */
export function registerMachineCommands(program: Command): void {
  const machine = program.command('machine').description('machines kept with visor run --keep NAME');
  machine
    .command('ls')
    .description('list kept machines')
    .action(async () => {
      const list = await listMachines(cacheRoot());
      if (!list.length) process.stdout.write('no kept machines; `visor run --keep NAME` keeps one\n');
      for (const m of list) process.stdout.write(`${m.name}\t${m.image}\t${m.created.slice(0, 19).replace('T', ' ')}\t${m.disk}\n`);
    });
  machine
    .command('rm')
    .description('remove a kept machine and its disk')
    .argument('<name>')
    .action(async (name: string) => {
      if (!(await removeMachine(cacheRoot(), name))) throw new VisorError('NotFound', `no kept machine '${name}'; \`visor machine ls\` lists them`);
      process.stdout.write(`removed ${name}\n`);
    });
}
