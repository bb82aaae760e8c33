import type { Command } from 'commander';
import { listImages, pullImage, removeImage } from '../../images/index.js';
import { formatBytes, progressFor } from '../../images/progress.js';

/** `visor image pull|ls|rm` (issue 4). */
export function registerImageCommands(program: Command): void {
  const image = program.command('image').description('guest images built from Debian packages');

  image
    .command('pull')
    .description('download, verify and build an image (default: debian); does nothing when up to date')
    .argument('[name]', 'image name', 'debian')
    .option('--mirror <url>', 'Debian mirror (default: $VISOR_MIRROR, else the host\'s apt sources)')
    .option('--force', 'rebuild even when the cached image is up to date')
    .option('--quiet', 'no progress output')
    .action(async (name: string, o: { mirror?: string; force?: boolean; quiet?: boolean }) => {
      const res = await pullImage(name, {
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
          ? [i.name, i.packages!.map((p) => `${p.name} ${p.version}`).join(', '), formatBytes(i.size!), i.created!.slice(0, 19).replace('T', ' ')]
          : [i.name, `CORRUPT: ${i.error}`, '-', '-']);
      const head = ['NAME', 'VERSIONS', 'SIZE', 'CREATED'];
      const w = head.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c]!.length)));
      for (const r of [head, ...rows]) process.stdout.write(r.map((x, c) => (c === r.length - 1 ? x : x.padEnd(w[c]!))).join('  ') + '\n');
    });

  image
    .command('rm')
    .description('remove a cached image')
    .argument('<name>', 'image name')
    .action(async (name: string) => {
      await removeImage(name);
      process.stdout.write(`removed ${name}\n`);
    });
}
