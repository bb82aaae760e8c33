/*
 * vudp: the UDP half of netcat that the tiny image's busybox lacks (Debian builds its nc
 * without -u, and no busybox applet there listens on a UDP port). The in-guest network test
 * (test/net/usernet-guest.test.ts) fetches it into the guest over HTTP.
 *
 *   vudp send HOST PORT      one datagram of stdin to HOST:PORT, prints the first reply
 *                            (exit 1 if none within 5 s)
 *   vudp serve PORT REPLY    waits for one datagram on 0.0.0.0:PORT, prints it, answers REPLY
 *                            to its sender
 *
 * No libc (raw Linux syscalls), so the static binary is a few KiB. Build with
 * scripts/build-vudp.ts (Debian's gcc-riscv64-linux-gnu).
 */
typedef unsigned long u64;
typedef unsigned int u32;
typedef unsigned short u16;
typedef unsigned char u8;

static long sys(long n, long a, long b, long c, long d, long e, long f) {
  register long a7 __asm__("a7") = n;
  register long a0 __asm__("a0") = a;
  register long a1 __asm__("a1") = b;
  register long a2 __asm__("a2") = c;
  register long a3 __asm__("a3") = d;
  register long a4 __asm__("a4") = e;
  register long a5 __asm__("a5") = f;
  __asm__ volatile("ecall" : "+r"(a0) : "r"(a7), "r"(a1), "r"(a2), "r"(a3), "r"(a4), "r"(a5) : "memory");
  return a0;
}

enum { SYS_close = 57, SYS_read = 63, SYS_write = 64, SYS_ppoll = 73, SYS_exit = 93, SYS_socket = 198, SYS_bind = 200, SYS_sendto = 206, SYS_recvfrom = 207 };

struct sockaddr_in { u16 family; u16 port; u32 addr; u8 zero[8]; };
struct pollfd { int fd; short events; short revents; };
struct timespec { long sec; long nsec; };

static u16 be16(u16 x) { return (u16)((x >> 8) | (x << 8)); }

static int len(const char *s) { int n = 0; while (s[n]) n++; return n; }

static void say(int fd, const char *s) { sys(SYS_write, fd, (long)s, len(s), 0, 0, 0); }

static __attribute__((noreturn)) void quit(int code) {
  sys(SYS_exit, code, 0, 0, 0, 0, 0);
  for (;;) {}
}

static __attribute__((noreturn)) void fail(const char *what) {
  say(2, "vudp: ");
  say(2, what);
  say(2, "\n");
  quit(1);
}

/* A decimal port, 1..65535; 0 when not one. */
static u32 port_of(const char *s) {
  u32 v = 0;
  if (!*s) return 0;
  for (; *s; s++) {
    if (*s < '0' || *s > '9') return 0;
    v = v * 10 + (u32)(*s - '0');
    if (v > 65535) return 0;
  }
  return v;
}

/* Dotted quad to network order; 0xffffffff when not one (not a valid unicast target anyway). */
static u32 addr_of(const char *s) {
  u32 a = 0;
  for (int part = 0; part < 4; part++) {
    u32 v = 0;
    int digits = 0;
    while (*s >= '0' && *s <= '9' && digits < 3) v = v * 10 + (u32)(*s++ - '0'), digits++;
    if (!digits || v > 255) return 0xffffffff;
    a |= v << (8 * part);
    if (part < 3 && *s++ != '.') return 0xffffffff;
  }
  return *s ? 0xffffffff : a;
}

static u8 buf[65536];

static int main2(int argc, char **argv) {
  if (argc == 4 && argv[1][0] == 's' && argv[1][1] == 'e' && argv[1][2] == 'n') {
    u32 addr = addr_of(argv[2]), port = port_of(argv[3]);
    if (addr == 0xffffffff || !port) fail("send: give HOST as a dotted quad and PORT 1-65535");
    long n = 0, r;
    while (n < 1400 && (r = sys(SYS_read, 0, (long)(buf + n), 1400 - n, 0, 0, 0)) > 0) n += r;
    long fd = sys(SYS_socket, 2 /* AF_INET */, 2 /* SOCK_DGRAM */, 0, 0, 0, 0);
    if (fd < 0) fail("socket");
    struct sockaddr_in to = { 2, be16((u16)port), addr, {0} };
    if (sys(SYS_sendto, fd, (long)buf, n, 0, (long)&to, sizeof to) != n) fail("sendto");
    struct pollfd p = { (int)fd, 1 /* POLLIN */, 0 };
    struct timespec t = { 5, 0 };
    if (sys(SYS_ppoll, (long)&p, 1, (long)&t, 0, 0, 0) != 1) fail("send: no reply within 5 s");
    long got = sys(SYS_recvfrom, fd, (long)buf, sizeof buf, 0, 0, 0);
    if (got < 0) fail("recvfrom");
    sys(SYS_write, 1, (long)buf, got, 0, 0, 0);
    return 0;
  }
  if (argc == 4 && argv[1][0] == 's' && argv[1][1] == 'e' && argv[1][2] == 'r') {
    u32 port = port_of(argv[2]);
    if (!port) fail("serve: give PORT 1-65535");
    long fd = sys(SYS_socket, 2, 2, 0, 0, 0, 0);
    if (fd < 0) fail("socket");
    struct sockaddr_in me = { 2, be16((u16)port), 0, {0} };
    if (sys(SYS_bind, fd, (long)&me, sizeof me, 0, 0, 0) < 0) fail("bind");
    struct sockaddr_in from;
    u32 fromlen = sizeof from;
    long got = sys(SYS_recvfrom, fd, (long)buf, sizeof buf, 0, (long)&from, (long)&fromlen);
    if (got < 0) fail("recvfrom");
    sys(SYS_write, 1, (long)buf, got, 0, 0, 0);
    if (sys(SYS_sendto, fd, (long)argv[3], len(argv[3]), 0, (long)&from, sizeof from) < 0) fail("sendto");
    return 0;
  }
  say(2, "usage: vudp send HOST PORT | vudp serve PORT REPLY\n");
  return 2;
}

/* The kernel's initial stack: argc, argv[], NULL, envp[]. */
__attribute__((used)) static void start_c(long *sp) {
  quit(main2((int)sp[0], (char **)(sp + 1)));
}

__asm__(".globl _start\n_start:\n  mv a0, sp\n  andi sp, sp, -16\n  call start_c\n");
