/*
 * visor guest agent: serves the host on a virtio-vsock stream (guest port AGENT_VSOCK_PORT).
 * One host connection at a time (a new one replaces the old: after a snapshot restore the old
 * one is gone with the transport reset); commands outlive connections. One poll loop, no
 * threads. Host frames are bounded (MAX_BODY) and parsed by a reader that checks every field.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <linux/random.h>
#include <linux/vm_sockets.h>
#include <unistd.h>
#include "agent.h"

#ifndef VISOR_AGENT_SRC_SHA256
#define VISOR_AGENT_SRC_SHA256 "unknown"
#endif
/* The build embeds the sha256 of the sources; a test compares it with the committed sources. */
const char *agent_version = "visor-agent-src-sha256=" VISOR_AGENT_SRC_SHA256;

int host_fd = -1;
static uint8_t *inbuf;
static size_t inlen;

/* ---- reader ---- */
static const uint8_t *need(struct rd *r, size_t n) {
  if (r->bad || r->n - r->pos < n) {
    r->bad = 1;
    return NULL;
  }
  const uint8_t *p = r->p + r->pos;
  r->pos += n;
  return p;
}
uint32_t rd_u32(struct rd *r) {
  const uint8_t *p = need(r, 4);
  return p ? (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24 : 0;
}
uint16_t rd_u16(struct rd *r) {
  const uint8_t *p = need(r, 2);
  return p ? (uint16_t)(p[0] | p[1] << 8) : 0;
}
const uint8_t *rd_bytes(struct rd *r, uint32_t *len) {
  *len = rd_u32(r);
  const uint8_t *p = need(r, *len);
  if (!p) *len = 0;
  return p;
}
char *rd_str(struct rd *r) {
  uint32_t n;
  const uint8_t *p = rd_bytes(r, &n);
  if (!p || n > MAX_STRING || memchr(p, 0, n)) {
    r->bad = 1;
    return NULL;
  }
  char *s = malloc(n + 1);
  if (!s) return NULL;
  memcpy(s, p, n);
  s[n] = 0;
  return s;
}

/* ---- writer ---- */
static void wr_room(struct wr *w, size_t n) {
  if (w->n + n <= w->cap) return;
  size_t cap = w->cap ? w->cap : 256;
  while (cap < w->n + n) cap *= 2;
  uint8_t *p = realloc(w->p, cap);
  if (!p) abort();
  w->p = p;
  w->cap = cap;
}
static void put32(uint8_t *p, uint32_t v) {
  p[0] = v;
  p[1] = v >> 8;
  p[2] = v >> 16;
  p[3] = v >> 24;
}
void wr_init(struct wr *w, uint8_t type, uint32_t id) {
  w->p = NULL;
  w->n = w->cap = 0;
  wr_room(w, HEADER_SIZE);
  put32(w->p, 0);
  w->p[4] = type;
  put32(w->p + 5, id);
  w->n = HEADER_SIZE;
}
void wr_u8(struct wr *w, uint8_t v) {
  wr_room(w, 1);
  w->p[w->n++] = v;
}
void wr_u32(struct wr *w, uint32_t v) {
  wr_room(w, 4);
  put32(w->p + w->n, v);
  w->n += 4;
}
void wr_u64(struct wr *w, uint64_t v) {
  wr_u32(w, (uint32_t)v);
  wr_u32(w, (uint32_t)(v >> 32));
}
void wr_bytes(struct wr *w, const void *b, uint32_t len) {
  wr_u32(w, len);
  wr_room(w, len);
  if (len) memcpy(w->p + w->n, b, len);
  w->n += len;
}
void wr_str(struct wr *w, const char *s) {
  size_t n = strlen(s);
  if (n > MAX_STRING) n = MAX_STRING;
  wr_bytes(w, s, (uint32_t)n);
}
static void host_gone(void);
void wr_send(struct wr *w) {
  put32(w->p, (uint32_t)(w->n - HEADER_SIZE));
  size_t off = 0;
  /* Blocking writes: vsock credit is the flow control; the host reads promptly. */
  while (host_fd >= 0 && off < w->n) {
    ssize_t k = write(host_fd, w->p + off, w->n - off);
    if (k < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) {
        struct pollfd pf = {host_fd, POLLOUT, 0};
        poll(&pf, 1, 1000);
        continue;
      }
      host_gone();
      break;
    }
    off += (size_t)k;
  }
  free(w->p);
  w->p = NULL;
}
void send_simple(uint8_t type, uint32_t id) {
  struct wr w;
  wr_init(&w, type, id);
  wr_send(&w);
}
void send_error(uint32_t id, int err, const char *what) {
  struct wr w;
  char msg[512];
  snprintf(msg, sizeof msg, "%s: %s", what, strerror(err));
  wr_init(&w, G_ERROR, id);
  wr_u32(&w, (uint32_t)err);
  wr_str(&w, msg);
  wr_send(&w);
}
void send_data(uint8_t type, uint32_t id, const void *b, size_t len) {
  struct wr w;
  wr_init(&w, type, id);
  wr_room(&w, len);
  memcpy(w.p + w.n, b, len);
  w.n += len;
  wr_send(&w);
}
void send_ack(uint32_t id, uint32_t bytes) {
  struct wr w;
  wr_init(&w, G_ACK, id);
  wr_u32(&w, bytes);
  wr_send(&w);
}

static void host_gone(void) {
  if (host_fd >= 0) close(host_fd);
  host_fd = -1;
  inlen = 0;
  fs_session_end();
}

/* Host entropy into the kernel's pool, credited, and the CRNG reseeded now: credited entropy
 * alone waits for the next scheduled reseed (seconds away), and machines restored from one
 * snapshot must diverge before their first random byte. */
static void seed_kernel(const uint8_t *e, uint32_t n) {
  if (n == 0 || n > 512) return;
  int fd = open("/dev/urandom", O_WRONLY | O_CLOEXEC);
  if (fd < 0) return;
  struct {
    int count, size;
    uint8_t buf[512];
  } ent;
  ent.count = (int)n * 8;
  ent.size = (int)n;
  memcpy(ent.buf, e, n);
  if (ioctl(fd, RNDADDENTROPY, &ent) < 0 && write(fd, e, n) < 0) { /* best effort */ }
  ioctl(fd, RNDRESEEDCRNG);
  close(fd);
}

/* `visor-agent --reseed`: hex digits on stdin (at most 512 bytes' worth) seed the kernel's
 * CRNG. visor's initramfs runs it when a boot snapshot resumes (docs/guest-init.md). */
static int reseed_from_stdin(void) {
  uint8_t bytes[512];
  uint32_t n = 0;
  int hi = -1, c;
  while ((c = getchar()) != EOF && n < sizeof bytes) {
    int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
    if (v < 0) continue;
    if (hi < 0) {
      hi = v;
    } else {
      bytes[n++] = (uint8_t)(hi << 4 | v);
      hi = -1;
    }
  }
  if (n < 16) {
    fputs("visor-agent: --reseed needs at least 32 hex digits on stdin\n", stderr);
    return 2;
  }
  seed_kernel(bytes, n);
  return 0;
}

/* eth0 takes `mac` (a fork's child, whose NIC the host gave a new address): 0, or an errno.
 * virtio-net changes its address while up (IFF_LIVE_ADDR_CHANGE); the routes stay. */
static uint32_t set_mac(const uint8_t *mac) {
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) return (uint32_t)errno;
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  strncpy(ifr.ifr_name, "eth0", sizeof ifr.ifr_name - 1);
  ifr.ifr_hwaddr.sa_family = ARPHRD_ETHER;
  memcpy(ifr.ifr_hwaddr.sa_data, mac, 6);
  uint32_t err = ioctl(s, SIOCSIFHWADDR, &ifr) < 0 ? (uint32_t)errno : 0;
  close(s);
  return err;
}

/* HELLO: the host's entropy goes into the kernel's pool (a restored template or a fork would
 * otherwise share its random state with its siblings), then READY. A HELLO may end with a
 * 6-byte MAC for eth0 (a fork's child): READY then ends with the result, 0 or an errno
 * (HELLO_NO_MAC when none was asked). Older agents ignore the MAC and send no result. */
static void hello(uint32_t id, struct rd *r) {
  (void)rd_u32(r);
  uint32_t n;
  const uint8_t *e = rd_bytes(r, &n);
  if (e) seed_kernel(e, n);
  uint32_t mac_status = HELLO_NO_MAC;
  if (r->pos < r->n) {
    uint32_t m;
    const uint8_t *mac = rd_bytes(r, &m);
    mac_status = mac && m == 6 ? set_mac(mac) : (uint32_t)EINVAL;
  }
  struct wr w;
  wr_init(&w, G_READY, id);
  wr_u32(&w, PROTOCOL_VERSION);
  wr_str(&w, agent_version);
  wr_u32(&w, mac_status);
  wr_send(&w);
}

static void dispatch(uint8_t type, uint32_t id, const uint8_t *body, uint32_t len) {
  struct rd r = {body, len, 0, 0};
  switch (type) {
  case H_HELLO: hello(id, &r); break;
  case H_EXEC: proc_exec(id, &r); break;
  case H_STDIN: proc_stdin(id, body, len); break;
  case H_SIGNAL: proc_signal(id, (int)rd_u32(&r)); break;
  case H_RESIZE: {
    uint16_t c = rd_u16(&r), rows = rd_u16(&r);
    proc_resize(id, c, rows);
    break;
  }
  case H_PROCS: proc_list(id); break;
  case H_WRITE_OPEN: fs_write_open(id, &r); break;
  case H_WRITE_DATA: fs_write_data(id, body, len); break;
  case H_WRITE_END: fs_write_end(id); break;
  case H_READ: fs_read(id, &r); break;
  case H_LIST: fs_list(id, &r); break;
  case H_STAT: fs_stat(id, &r); break;
  case H_MKDIR: fs_mkdir(id, &r); break;
  case H_REMOVE: fs_remove(id, &r); break;
  case H_RENAME: fs_rename(id, &r); break;
  case H_WATCH: fs_watch(id, &r); break;
  case H_UNWATCH: fs_unwatch(id); break;
  default: send_error(id, EPROTO, "unknown request"); break;
  }
}

static void host_readable(void) {
  ssize_t k = read(host_fd, inbuf + inlen, HEADER_SIZE + MAX_BODY - inlen);
  if (k < 0 && (errno == EINTR || errno == EAGAIN)) return;
  if (k <= 0) {
    host_gone();
    return;
  }
  inlen += (size_t)k;
  size_t off = 0;
  while (host_fd >= 0 && inlen - off >= HEADER_SIZE) {
    const uint8_t *h = inbuf + off;
    uint32_t len = (uint32_t)h[0] | (uint32_t)h[1] << 8 | (uint32_t)h[2] << 16 | (uint32_t)h[3] << 24;
    if (len > MAX_BODY) {
      host_gone();
      return;
    }
    if (inlen - off < HEADER_SIZE + len) break;
    uint32_t id = (uint32_t)h[5] | (uint32_t)h[6] << 8 | (uint32_t)h[7] << 16 | (uint32_t)h[8] << 24;
    dispatch(h[4], id, h + HEADER_SIZE, len);
    off += HEADER_SIZE + len;
  }
  if (host_fd < 0) return;
  memmove(inbuf, inbuf + off, inlen - off);
  inlen -= off;
}

static int listen_vsock(void) {
  int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  struct sockaddr_vm a;
  memset(&a, 0, sizeof a);
  a.svm_family = AF_VSOCK;
  a.svm_cid = VMADDR_CID_ANY;
  a.svm_port = AGENT_VSOCK_PORT;
  if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, 4) < 0) {
    close(fd);
    return -1;
  }
  return fd;
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "--version") == 0) {
    puts(agent_version);
    return 0;
  }
  if (argc > 1 && strcmp(argv[1], "--reseed") == 0) return reseed_from_stdin();
  signal(SIGPIPE, SIG_IGN);
  inbuf = malloc(HEADER_SIZE + MAX_BODY);
  if (!inbuf) return 1;
  proc_init();
  int lfd = -1;
  /* The vsock transport module loads at coldplug; until then socket() fails: retry. */
  for (int i = 0; lfd < 0; i++) {
    lfd = listen_vsock();
    if (lfd < 0) {
      if (i == 300) {
        perror("visor-agent: vsock listen");
        return 1;
      }
      usleep(100000);
    }
  }
  struct pollfd fds[600];
  for (;;) {
    int n = 0;
    fds[n++] = (struct pollfd){lfd, POLLIN, 0};
    fds[n++] = (struct pollfd){host_fd, POLLIN, 0};
    fds[n++] = (struct pollfd){fs_inotify_fd(), POLLIN, 0};
    fds[n++] = (struct pollfd){proc_sigchld_fd(), POLLIN, 0};
    int base = n;
    n += proc_pollfds(fds + n, (int)(sizeof fds / sizeof fds[0]) - n);
    int timeout = fs_reads_pending() ? 0 : -1; /* everything that matters is an fd */
    int k = poll(fds, (nfds_t)n, timeout);
    if (k < 0 && errno != EINTR) usleep(10000);
    if (k > 0 && (fds[3].revents & POLLIN)) proc_sigchld();
    proc_reap();
    if (k > 0) {
      if (fds[0].revents & POLLIN) {
        int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (c >= 0) {
          host_gone(); /* one host at a time: the newest */
          host_fd = c;
        }
      }
      if (host_fd >= 0 && fds[1].fd == host_fd && (fds[1].revents & (POLLIN | POLLHUP | POLLERR))) host_readable();
      if (fds[2].fd >= 0 && (fds[2].revents & POLLIN)) fs_inotify_event();
      proc_events(fds + base, n - base);
    }
    if (fs_reads_pending()) fs_read_step();
  }
}
