/**
 * The images visor knows how to build. Each names Debian packages, never a mirror.
 */
export interface ImageRecipe {
  name: string;
  description: string;
  suite: string;
  arch: string;
  component: string;
  /** Metapackage whose first dependency is the current kernel image package. */
  kernelMeta: string;
  busybox: string;
  firmware: string;
  /** Modules the board needs (DESIGN.md "Reference guest"); dependencies are added. */
  modules: string[];
  append: string;
  /** Guest RAM below which the image's kernel cannot boot (it panics): refused before boot. */
  minMemoryMiB: number;
  /**
   * A Debian root filesystem on a disk (issue 15): the packages wanted besides Essential and
   * required ones. Absent: the initramfs-only busybox image.
   */
  rootfs?: { packages: string[] };
}

/**
 * Bumped whenever what the builder puts into an image changes (init, module set): a cached
 * image from an older builder is then rebuilt on the next pull even if no package changed.
 */
export const BUILDER_VERSION = 24; // 24: on a Debian root the boot snapshot's wait is in the root's init, its root mounted read-only until then; visor-agent in the Debian root (started with a vsock device; its --reseed); 23: boot snapshots: with visor.bootwait=1 /init waits, drivers loaded and nothing written, for a VISOR_ARGS line (time, entropy, the run's arguments); visor-agent --reseed; 22: the udhcpc hook runs `ip` only when the lease changes (5 processes → 2 on a boot; a renewal of the same lease no longer flushes the address); 21: the initramfs's modules with their assembler labels (.L…) unnamed (the loader copied 290 000 such names; 52 M guest instructions of a Debian boot); 20: the initramfs's modules without their appended signatures (the kernel hashed every byte of each on load: 45 % of a Debian `run -- true`); 19: the command on the stdio ports opens its FIFOs in a subshell (init's own open, interrupted by a child's SIGCHLD, failed: the command never ran and init waited forever: `visor run --image debian -- true` with empty stdin hung 1 run in ~4); the Debian root's init hands the command to Debian's /bin/sh (busybox ash ran its own applets for sh, ls, tar...: `visor cp` failed on Debian machines); 18: the Debian root init serves visor.stdio=virtio (a piped `visor run --image debian -- CMD` printed nothing); its configure run skips Python byte-compiling and certain deb-systemd-helper calls; 17: the configure run skips fresh-install no-ops of dpkg-maintscript-helper, writes without barriers or dpkg fsyncs; 16: visor-agent starts only with a virtio-vsock device; a command's session leader drains the terminal before exiting (its last output was lost), poweroff/halt leave the terminal's session first (poweroff on hvc0 did nothing); 14 (debian branch, merged as 17); 13: visor.root= (the initramfs mounts a Debian root disk and switches to it); 12: init runs udhcpc on visor.dhcp=1 (user networks); 11: the agent and the foreground init together; 10 (sandbox): visor-agent (src/guest/agent) in the initramfs, started by init; 10 (safety): the shell and the command in the foreground with default signals (Ctrl-C works), poweroff/halt/reboot as scripts (power.sh), the command's stdio on virtio-console ports with visor.stdio=virtio, 'command not found'; 9: the initramfs gzip'd again (the host inflates it, src/host/initrd.ts; 8 stored it uncompressed); 3: modules on demand (modprobe.ts); 4: the guest agent and visor.console (docs/guest-init.md); 5: coldplug skips devices a built-in driver bound; 6: the hvc0 shell has hvc0 as its controlling tty; 7: poweroff/halt/reboot from the shell (init traps their signals)

const TINY: ImageRecipe = {
    name: 'tiny',
    description: "Debian trixie's riscv64 kernel, busybox and OpenSBI, with visor's init",
    suite: 'trixie',
    arch: 'riscv64',
    component: 'main',
    kernelMeta: 'linux-image-riscv64',
    busybox: 'busybox-static',
    firmware: 'opensbi',
    modules: [
      'virtio_mmio',
      'virtio_blk',
      'virtio_net', // pulls net_failover and failover through depends=
      'virtio_rng',
      'virtio_balloon',
      'vmw_vsock_virtio_transport', // the vsock transport, with vsock and its common part
      'ext4', // with jbd2, mbcache, crc16 and the crc32c soft dependency
    ],
    // quiet: every console byte is an emulated UART write, so a quiet boot is a fast boot.
    // panic=-1: a panicking guest reboots at once, which the host sees as the machine ending.
    // initcall_blacklist=jent_mod_init: jitterentropy's start-up self-test hashes in a loop
    // until it has measured enough timing jitter, ~10^8-10^9 guest instructions on an emulated
    // CPU (13 s of a 38 s interpreter boot, measured with bench/boot.ts --interp). It feeds only
    // the kernel's crypto DRBG; visor attaches a virtio-rng, which seeds the guest's entropy.
    // cryptomgr.notests=1: the crypto manager's known-answer self-tests of every algorithm it
    // registers (ECDSA, ECDH, RSA...) were 1.1 G of the 1.9 G guest instructions of a tiny boot
    // to poweroff (docs/guest-init.md). visor's CPU is tested against QEMU instead.
    append: 'console=ttyS0 earlycon quiet panic=-1 initcall_blacklist=jent_mod_init cryptomgr.notests=1',
    // Debian's kernel (31 MiB) and the initramfs unpacked beside it leave a smaller guest
    // without memory for init: a kernel panic instead of a shell.
    minMemoryMiB: 96,
};

/**
 * The packages `debian` adds to Essential + required (apt is required already, named for
 * clarity): what users reach for first. dhcpcd-base is the DHCP client users can run by hand;
 * visor's init configures eth0 with busybox's udhcpc, which needs nothing configured.
 */
export const DEBIAN_DEFAULT_PACKAGES = ['apt', 'bash', 'ca-certificates', 'curl', 'iproute2', 'procps', 'python3', 'dhcpcd-base', 'less', 'systemd'];

const DEBIAN: ImageRecipe = {
  ...TINY,
  name: 'debian',
  description: 'Debian trixie riscv64: Essential and required packages, apt, and a default set, on an ext4 root disk',
  rootfs: { packages: DEBIAN_DEFAULT_PACKAGES },
};

/** `tiny` is the busybox image (fast tests, small guests); `debian` a full Debian userland. */
export const RECIPES: Record<string, ImageRecipe> = {
  tiny: TINY,
  debian: DEBIAN,
};

export function knownImageNames(): string[] {
  return Object.keys(RECIPES);
}

/** The least guest RAM an image boots in (undefined for a name visor does not build). */
export function imageMinMemoryMiB(name: string): number | undefined {
  return Object.hasOwn(RECIPES, name) ? RECIPES[name]!.minMemoryMiB : undefined;
}
