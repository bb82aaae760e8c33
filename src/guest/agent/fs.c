/*
 * Files: writes arrive as WRITE_OPEN, WRITE_DATA chunks (each acknowledged once written, the
 * host's flow control), WRITE_END; reads stream DATA chunks, one chunk per loop turn so a big
 * read does not stall commands; listing, stat, mkdir -p, recursive remove, rename, inotify.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>
#include "agent.h"

#define MAX_XFER 64
#define MAX_WATCH 64

struct xfer {
  uint32_t id;
  int fd; /* -1: slot free */
  int failed;
};
static struct xfer writes[MAX_XFER], reads[MAX_XFER];
static int xfer_init_done;

struct watch {
  uint32_t id;
  int wd; /* -1: free */
};
static struct watch watches[MAX_WATCH];
static int inotify_fd = -1;

static void init_slots(void) {
  if (xfer_init_done) return;
  for (int i = 0; i < MAX_XFER; i++) writes[i].fd = reads[i].fd = -1;
  for (int i = 0; i < MAX_WATCH; i++) watches[i].wd = -1;
  xfer_init_done = 1;
}

static struct xfer *slot(struct xfer *t, uint32_t id, int want_free) {
  init_slots();
  for (int i = 0; i < MAX_XFER; i++) {
    if (!want_free && (t[i].fd >= 0 || t[i].failed) && t[i].id == id) return &t[i];
    if (want_free && t[i].fd < 0 && !t[i].failed) return &t[i];
  }
  return NULL;
}

int mkdir_p(const char *path, int mode) {
  char buf[4096];
  size_t n = strlen(path);
  if (n == 0 || n >= sizeof buf) {
    errno = ENAMETOOLONG;
    return -1;
  }
  memcpy(buf, path, n + 1);
  for (char *p = buf + 1; *p; p++) {
    if (*p != '/') continue;
    *p = 0;
    if (mkdir(buf, (mode_t)mode) < 0 && errno != EEXIST) return -1;
    *p = '/';
  }
  if (mkdir(buf, (mode_t)mode) < 0) {
    struct stat st;
    if (errno != EEXIST) return -1;
    if (stat(buf, &st) < 0 || !S_ISDIR(st.st_mode)) {
      errno = EEXIST;
      return -1;
    }
  }
  return 0;
}

void fs_write_open(uint32_t id, struct rd *r) {
  uint32_t mode = rd_u32(r);
  char *path = rd_str(r);
  struct xfer *x = slot(writes, id, 1);
  if (!path || r->bad) {
    send_error(id, EINVAL, "write: malformed request");
  } else if (slot(writes, id, 0) || !x) {
    send_error(id, EBUSY, "write: too many transfers");
  } else {
    char *slash = strrchr(path, '/');
    if (slash && slash != path) {
      *slash = 0;
      mkdir_p(path, 0755);
      *slash = '/';
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, (mode_t)(mode & 07777 ? mode & 07777 : 0644));
    x->id = id;
    if (fd < 0) {
      /* The host's data chunks still come (and are acknowledged); the error ends the transfer. */
      x->failed = 1;
      x->fd = -1;
      send_error(id, errno, path);
    } else {
      x->fd = fd;
      x->failed = 0;
      send_simple(G_OK, id);
    }
  }
  free(path);
}

void fs_write_data(uint32_t id, const uint8_t *b, uint32_t len) {
  struct xfer *x = slot(writes, id, 0);
  if (x && x->fd >= 0) {
    uint32_t off = 0;
    while (off < len) {
      ssize_t k = write(x->fd, b + off, len - off);
      if (k < 0) {
        if (errno == EINTR) continue;
        send_error(id, errno, "write");
        close(x->fd);
        x->fd = -1;
        x->failed = 1;
        break;
      }
      off += (uint32_t)k;
    }
  }
  send_ack(id, len);
}

void fs_write_end(uint32_t id) {
  struct xfer *x = slot(writes, id, 0);
  if (!x) {
    send_error(id, ENOENT, "write: no such transfer");
    return;
  }
  int failed = x->failed;
  int err = 0;
  if (x->fd >= 0 && close(x->fd) < 0) err = errno;
  x->fd = -1;
  x->failed = 0;
  if (failed) return; /* its error was sent */
  if (err) send_error(id, err, "write: close");
  else send_simple(G_OK, id);
}

void fs_read(uint32_t id, struct rd *r) {
  char *path = rd_str(r);
  struct xfer *x = slot(reads, id, 1);
  if (!path || r->bad) send_error(id, EINVAL, "read: malformed request");
  else if (!x) send_error(id, EBUSY, "read: too many transfers");
  else {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd >= 0 && fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
      close(fd);
      fd = -1;
      errno = EISDIR;
    }
    if (fd < 0) send_error(id, errno, path);
    else {
      x->id = id;
      x->fd = fd;
    }
  }
  free(path);
}

int fs_reads_pending(void) {
  init_slots();
  for (int i = 0; i < MAX_XFER; i++)
    if (reads[i].fd >= 0) return 1;
  return 0;
}

void fs_read_step(void) {
  static uint8_t buf[DATA_CHUNK];
  for (int i = 0; i < MAX_XFER; i++) {
    struct xfer *x = &reads[i];
    if (x->fd < 0) continue;
    ssize_t k = read(x->fd, buf, sizeof buf);
    if (k > 0) {
      send_data(G_DATA, x->id, buf, (size_t)k);
      continue;
    }
    if (k < 0 && errno == EINTR) continue;
    if (k < 0) send_error(x->id, errno, "read");
    else send_simple(G_OK, x->id);
    close(x->fd);
    x->fd = -1;
  }
}

static void put_entry(struct wr *w, const char *name, const struct stat *st) {
  uint8_t t = S_ISREG(st->st_mode) ? 0 : S_ISDIR(st->st_mode) ? 1 : S_ISLNK(st->st_mode) ? 2 : 3;
  wr_u8(w, t);
  wr_u64(w, (uint64_t)st->st_size);
  wr_u32(w, (uint32_t)st->st_mode);
  wr_u64(w, (uint64_t)(st->st_mtime < 0 ? 0 : st->st_mtime));
  wr_str(w, name);
}

/* ENTRIES frames of at most ~256 KiB each, then OK. */
void fs_list(uint32_t id, struct rd *r) {
  char *path = rd_str(r);
  DIR *d = path && !r->bad ? opendir(path) : NULL;
  if (!d) {
    send_error(id, path && !r->bad ? errno : EINVAL, path ? path : "list");
    free(path);
    return;
  }
  int dfd = dirfd(d);
  struct dirent *e;
  int more = 1;
  while (more) {
    struct wr w;
    wr_init(&w, G_ENTRIES, id);
    size_t count_at = w.n;
    wr_u32(&w, 0);
    uint32_t n = 0;
    while (w.n < 256 * 1024) {
      e = readdir(d);
      if (!e) {
        more = 0;
        break;
      }
      if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
      struct stat st;
      if (fstatat(dfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) continue;
      put_entry(&w, e->d_name, &st);
      n++;
    }
    w.p[count_at] = n;
    w.p[count_at + 1] = n >> 8;
    w.p[count_at + 2] = n >> 16;
    w.p[count_at + 3] = n >> 24;
    wr_send(&w);
  }
  closedir(d);
  free(path);
  send_simple(G_OK, id);
}

void fs_stat(uint32_t id, struct rd *r) {
  char *path = rd_str(r);
  struct stat st;
  if (!path || r->bad) send_error(id, EINVAL, "stat: malformed request");
  else if (lstat(path, &st) < 0) send_error(id, errno, path);
  else {
    const char *base = strrchr(path, '/');
    struct wr w;
    wr_init(&w, G_STAT_RESULT, id);
    put_entry(&w, base && base[1] ? base + 1 : path, &st);
    wr_send(&w);
  }
  free(path);
}

void fs_mkdir(uint32_t id, struct rd *r) {
  char *path = rd_str(r);
  if (!path || r->bad) send_error(id, EINVAL, "mkdir: malformed request");
  else if (mkdir_p(path, 0755) < 0) send_error(id, errno, path);
  else send_simple(G_OK, id);
  free(path);
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f) {
  (void)st;
  (void)f;
  return (flag == FTW_DP ? rmdir(p) : unlink(p)) < 0 && errno != ENOENT ? -1 : 0;
}

void fs_remove(uint32_t id, struct rd *r) {
  char *path = rd_str(r);
  struct stat st;
  if (!path || r->bad) send_error(id, EINVAL, "remove: malformed request");
  else if (lstat(path, &st) < 0) send_error(id, errno, path);
  else if (nftw(path, rm_one, 32, FTW_DEPTH | FTW_PHYS) < 0) send_error(id, errno, path);
  else send_simple(G_OK, id);
  free(path);
}

void fs_rename(uint32_t id, struct rd *r) {
  char *from = rd_str(r), *to = rd_str(r);
  if (!from || !to || r->bad) send_error(id, EINVAL, "rename: malformed request");
  else if (rename(from, to) < 0) send_error(id, errno, from);
  else send_simple(G_OK, id);
  free(from);
  free(to);
}

void fs_watch(uint32_t id, struct rd *r) {
  char *path = rd_str(r);
  init_slots();
  if (inotify_fd < 0) inotify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  struct watch *w = NULL;
  for (int i = 0; i < MAX_WATCH && !w; i++)
    if (watches[i].wd < 0) w = &watches[i];
  if (!path || r->bad) send_error(id, EINVAL, "watch: malformed request");
  else if (!w || inotify_fd < 0) send_error(id, EBUSY, "watch");
  else {
    int wd = inotify_add_watch(inotify_fd, path, IN_CREATE | IN_DELETE | IN_MODIFY | IN_MOVED_FROM | IN_MOVED_TO | IN_CLOSE_WRITE | IN_ONLYDIR);
    if (wd < 0) send_error(id, errno, path);
    else {
      w->id = id;
      w->wd = wd;
      send_simple(G_OK, id);
    }
  }
  free(path);
}

void fs_unwatch(uint32_t id) {
  init_slots();
  for (int i = 0; i < MAX_WATCH; i++)
    if (watches[i].wd >= 0 && watches[i].id == id) {
      int wd = watches[i].wd;
      watches[i].wd = -1;
      /* Another watch of the same directory shares the wd: keep it in the kernel then. */
      int shared = 0;
      for (int j = 0; j < MAX_WATCH; j++) shared |= watches[j].wd == wd;
      if (!shared) inotify_rm_watch(inotify_fd, wd);
    }
  send_simple(G_OK, id);
}

int fs_inotify_fd(void) {
  return inotify_fd;
}

void fs_inotify_event(void) {
  char buf[8192] __attribute__((aligned(__alignof__(struct inotify_event))));
  for (;;) {
    ssize_t k = read(inotify_fd, buf, sizeof buf);
    if (k <= 0) return;
    for (char *p = buf; p < buf + k;) {
      struct inotify_event *ev = (struct inotify_event *)p;
      for (int i = 0; i < MAX_WATCH; i++)
        if (watches[i].wd == ev->wd) {
          struct wr w;
          wr_init(&w, G_WATCH_EVENT, watches[i].id);
          wr_u32(&w, ev->mask);
          wr_str(&w, ev->len ? ev->name : "");
          wr_send(&w);
        }
      p += sizeof *ev + ev->len;
    }
  }
}

void fs_session_end(void) {
  init_slots();
  for (int i = 0; i < MAX_XFER; i++) {
    if (writes[i].fd >= 0) close(writes[i].fd);
    if (reads[i].fd >= 0) close(reads[i].fd);
    writes[i].fd = reads[i].fd = -1;
    writes[i].failed = reads[i].failed = 0;
  }
  for (int i = 0; i < MAX_WATCH; i++) watches[i].wd = -1;
  if (inotify_fd >= 0) close(inotify_fd);
  inotify_fd = -1;
}
