/* visor guest agent: shared declarations (docs/sandbox.md). */
#ifndef VISOR_AGENT_H
#define VISOR_AGENT_H

#include <stddef.h>
#include <stdint.h>
#include "protocol.h"

/* Bounded little-endian reader over one frame body: any overrun sets `bad`. */
struct rd {
  const uint8_t *p;
  size_t n, pos;
  int bad;
};
uint32_t rd_u32(struct rd *r);
uint16_t rd_u16(struct rd *r);
/* A string copied into a fresh NUL-terminated buffer (NULL when bad, or when it holds a NUL). */
char *rd_str(struct rd *r);
const uint8_t *rd_bytes(struct rd *r, uint32_t *len);

/* Outgoing frame under construction. */
struct wr {
  uint8_t *p;
  size_t n, cap;
};
void wr_init(struct wr *w, uint8_t type, uint32_t id);
void wr_u8(struct wr *w, uint8_t v);
void wr_u32(struct wr *w, uint32_t v);
void wr_u64(struct wr *w, uint64_t v);
void wr_bytes(struct wr *w, const void *b, uint32_t len);
void wr_str(struct wr *w, const char *s);
/* Sends the frame to the host (dropped when no host is connected) and frees it. */
void wr_send(struct wr *w);

void send_simple(uint8_t type, uint32_t id);
void send_error(uint32_t id, int err, const char *what);
void send_data(uint8_t type, uint32_t id, const void *b, size_t len);
void send_ack(uint32_t id, uint32_t bytes);

extern int host_fd;
extern const char *agent_version;

/* proc.c */
void proc_init(void);
void proc_exec(uint32_t id, struct rd *r);
void proc_stdin(uint32_t id, const uint8_t *b, uint32_t len);
void proc_signal(uint32_t id, int sig);
void proc_resize(uint32_t id, uint16_t cols, uint16_t rows);
void proc_list(uint32_t id);
void proc_reap(void);
int proc_sigchld_fd(void);
void proc_sigchld(void);
/* poll set handling: adds the agent's process fds to `fds`, returns the count added. */
struct pollfd;
int proc_pollfds(struct pollfd *fds, int max);
void proc_events(struct pollfd *fds, int n);

/* fs.c */
void fs_write_open(uint32_t id, struct rd *r);
void fs_write_data(uint32_t id, const uint8_t *b, uint32_t len);
void fs_write_end(uint32_t id);
void fs_read(uint32_t id, struct rd *r);
int fs_reads_pending(void);
void fs_read_step(void);
void fs_list(uint32_t id, struct rd *r);
void fs_stat(uint32_t id, struct rd *r);
void fs_mkdir(uint32_t id, struct rd *r);
void fs_remove(uint32_t id, struct rd *r);
void fs_rename(uint32_t id, struct rd *r);
void fs_watch(uint32_t id, struct rd *r);
void fs_unwatch(uint32_t id);
int fs_inotify_fd(void);
void fs_inotify_event(void);
/* The host went away: its transfers and watches end (processes go on). */
void fs_session_end(void);
int mkdir_p(const char *path, int mode);

#endif
