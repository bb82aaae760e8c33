import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { STDIO_ARG, STDIO_PORTS_SH, initScript } from './init-script.js';
import { rootInitScript } from './root-init.js';

// A piped `visor run --image debian -- CMD` asks for the command's stdio on virtio ports (the
// CLI's stdio: 'virtio'); the Debian root's init once ignored that and the output was lost.
describe('visor init on a Debian root', () => {
  const init = rootInitScript();

  it('is valid POSIX shell', () => {
    expect(spawnSync('sh', ['-n'], { input: init }).stderr.toString()).toBe('');
  });

  it('serves visor.stdio=virtio as the initramfs init does: the same port code, the command run on the ports', () => {
    expect(init).toContain(`${STDIO_ARG}=*) stdio=`);
    expect(init).toContain(STDIO_PORTS_SH);
    expect(initScript({ kernelRelease: 'k' })).toContain(STDIO_PORTS_SH);
    // The ports are found before the command runs, with the plumbing's PATH (busybox applets).
    expect(init.indexOf(STDIO_PORTS_SH)).toBeLessThan(init.indexOf('export PATH=$USER_PATH'));
    expect(init).toMatch(/if \[ "\$stdio" = virtio \]; then run_on_ports "\$@"; else "\$@"; fi\n\s+status=\$\?/);
  });
});
