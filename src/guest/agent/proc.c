/*
 * Commands: each runs in its own session (setsid), so a signal to its process group reaches
 * its children too. stdout and stderr are separate pipes (or one pty). EXIT is sent after the
 * process is reaped and its pipes drained: everything it wrote arrives before its exit.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>
#include "agent.h"

#define MAX_PROCS 128
#define MAX_ARGS 4096
#define PENDING_MAX (1u << 20)

struct proc {
  int used;
  uint32_t id;
  pid_t pid;
  int out, err, in; /* -1 when closed; with a pty, out == in == the master */
  int pty;
  int reaped, status;
  char cmd[256];
  uint8_t *pending; /* stdin bytes not yet written */
  size_t plen;
  int close_in;     /* EOF requested once pending is written */
};
static struct proc procs[MAX_PROCS];

static int sigchld_fd = -1;
static sigset_t chld_mask;

/* SIGCHLD through a signalfd in the poll set: an exit wakes the loop at once (a default
 * SIGCHLD would not interrupt poll). Children get the signal unblocked again before exec. */
void proc_init(void) {
  sigemptyset(&chld_mask);
  sigaddset(&chld_mask, SIGCHLD);
  sigprocmask(SIG_BLOCK, &chld_mask, NULL);
  sigchld_fd = signalfd(-1, &chld_mask, SFD_NONBLOCK | SFD_CLOEXEC);
}

int proc_sigchld_fd(void) {
  return sigchld_fd;
}

void proc_sigchld(void) {
  struct signalfd_siginfo si;
  while (read(sigchld_fd, &si, sizeof si) == (ssize_t)sizeof si) {
  }
}

static struct proc *find(uint32_t id) {
  for (int i = 0; i < MAX_PROCS; i++)
    if (procs[i].used && procs[i].id == id) return &procs[i];
  return NULL;
}

struct user {
  uid_t uid;
  gid_t gid;
  char home[256];
  char name[64];
};

/* /etc/passwd by hand: a static binary without glibc's NSS. Numeric ids are accepted too. */
static int lookup_user(const char *name, struct user *u) {
  FILE *f = fopen("/etc/passwd", "re");
  char line[1024];
  int found = 0;
  while (f && !found && fgets(line, sizeof line, f)) {
    char *fields[7];
    int nf = 0;
    char *s = line;
    for (; nf < 7; nf++) {
      fields[nf] = s;
      char *c = strchr(s, nf == 6 ? '\n' : ':');
      if (!c) {
        nf++;
        break;
      }
      *c = 0;
      s = c + 1;
    }
    if (nf < 6) continue;
    if (strcmp(fields[0], name) == 0 || strcmp(fields[2], name) == 0) {
      u->uid = (uid_t)strtoul(fields[2], NULL, 10);
      u->gid = (gid_t)strtoul(fields[3], NULL, 10);
      snprintf(u->home, sizeof u->home, "%s", fields[5]);
      snprintf(u->name, sizeof u->name, "%s", fields[0]);
      found = 1;
    }
  }
  if (f) fclose(f);
  if (!found && name[0] >= '0' && name[0] <= '9') {
    u->uid = u->gid = (uid_t)strtoul(name, NULL, 10);
    snprintf(u->home, sizeof u->home, "/");
    snprintf(u->name, sizeof u->name, "%s", name);
    found = 1;
  }
  return found;
}

static void nonblock(int fd) {
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

static int open_pty(int *master, char *slave, size_t n) {
  int m = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (m < 0) return -1;
  int unlock = 0, num = 0;
  if (ioctl(m, TIOCSPTLCK, &unlock) < 0 || ioctl(m, TIOCGPTN, &num) < 0) {
    close(m);
    return -1;
  }
  snprintf(slave, n, "/dev/pts/%d", num);
  *master = m;
  return 0;
}

void proc_exec(uint32_t id, struct rd *r) {
  uint32_t flags = rd_u32(r);
  uint16_t cols = rd_u16(r), rows = rd_u16(r);
  char *cwd = rd_str(r), *user = rd_str(r);
  char *argv[MAX_ARGS + 1], *envp[MAX_ARGS + 8];
  int argc = 0, envc = 0;
  uint32_t na = rd_u32(r);
  for (uint32_t i = 0; i < na && !r->bad && argc < MAX_ARGS; i++) argv[argc++] = rd_str(r);
  uint32_t ne = rd_u32(r);
  char *given[MAX_ARGS];
  int ng = 0;
  for (uint32_t i = 0; i < ne && !r->bad && ng < MAX_ARGS; i++) given[ng++] = rd_str(r);
  argv[argc] = NULL;
  struct user u;
  struct proc *p = NULL;
  int outp[2] = {-1, -1}, errp[2] = {-1, -1}, inp[2] = {-1, -1}, master = -1;
  char slave[64];
  if (r->bad || argc == 0 || na > MAX_ARGS || ne > MAX_ARGS) {
    send_error(id, EINVAL, "exec: malformed request");
    goto out;
  }
  for (int i = 0; i < argc; i++)
    if (!argv[i]) {
      send_error(id, EINVAL, "exec: malformed request");
      goto out;
    }
  if (find(id)) {
    send_error(id, EEXIST, "exec: id in use");
    goto out;
  }
  for (int i = 0; i < MAX_PROCS && !p; i++)
    if (!procs[i].used) p = &procs[i];
  if (!p) {
    send_error(id, EAGAIN, "exec: too many commands");
    goto out;
  }
  if (!lookup_user(user[0] ? user : "root", &u)) {
    send_error(id, ENOENT, "exec: no such user");
    goto out;
  }
  const char *dir = cwd[0] ? cwd : u.home;
  struct stat st;
  if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
    send_error(id, errno ? errno : ENOTDIR, "exec: cwd");
    goto out;
  }
  if (flags & EXEC_PTY) {
    if (open_pty(&master, slave, sizeof slave) < 0) {
      send_error(id, errno, "exec: pty");
      goto out;
    }
    struct winsize ws = {rows ? rows : 24, cols ? cols : 80, 0, 0};
    ioctl(master, TIOCSWINSZ, &ws);
  } else if (pipe2(outp, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0 || ((flags & EXEC_STDIN) && pipe2(inp, O_CLOEXEC) < 0)) {
    send_error(id, errno, "exec: pipe");
    goto fail;
  }
  /* Environment: a login-like base, then the caller's KEY=VALUE pairs (later ones win in getenv order). */
  char e_home[300], e_user[100], e_logname[100];
  snprintf(e_home, sizeof e_home, "HOME=%s", u.home);
  snprintf(e_user, sizeof e_user, "USER=%s", u.name);
  snprintf(e_logname, sizeof e_logname, "LOGNAME=%s", u.name);
  envp[envc++] = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  envp[envc++] = e_home;
  envp[envc++] = e_user;
  envp[envc++] = e_logname;
  envp[envc++] = (flags & EXEC_PTY) ? "TERM=xterm-256color" : "TERM=dumb";
  for (int i = 0; i < ng; i++)
    if (given[i] && strchr(given[i], '=')) {
      /* Replace a base entry of the same name. */
      size_t k = (size_t)(strchr(given[i], '=') - given[i]) + 1;
      int j = 0;
      for (; j < envc; j++)
        if (strncmp(envp[j], given[i], k) == 0) break;
      envp[j] = given[i];
      if (j == envc) envc++;
    }
  envp[envc] = NULL;
  pid_t pid = fork();
  if (pid < 0) {
    send_error(id, errno, "exec: fork");
    goto fail;
  }
  if (pid == 0) {
    sigprocmask(SIG_UNBLOCK, &chld_mask, NULL);
    setsid();
    if (flags & EXEC_PTY) {
      int s = open(slave, O_RDWR);
      if (s < 0) _exit(126);
      ioctl(s, TIOCSCTTY, 0);
      dup2(s, 0);
      dup2(s, 1);
      dup2(s, 2);
      if (s > 2) close(s);
    } else {
      int devnull = open("/dev/null", O_RDWR);
      dup2((flags & EXEC_STDIN) ? inp[0] : devnull, 0);
      dup2(outp[1], 1);
      dup2(errp[1], 2);
    }
    signal(SIGPIPE, SIG_DFL);
    if (chdir(dir) < 0) _exit(126);
    if (u.uid != 0 || u.gid != 0) {
      if (setgroups(0, NULL) < 0 || setgid(u.gid) < 0 || setuid(u.uid) < 0) {
        dprintf(2, "visor-agent: cannot become %s: %s\n", u.name, strerror(errno));
        _exit(126);
      }
    }
    extern char **environ;
    environ = envp;
    execvp(argv[0], argv);
    dprintf(2, "visor-agent: %s: %s\n", argv[0], strerror(errno));
    _exit(errno == ENOENT ? 127 : 126);
  }
  memset(p, 0, sizeof *p);
  p->used = 1;
  p->id = id;
  p->pid = pid;
  p->pty = (flags & EXEC_PTY) != 0;
  if (p->pty) {
    p->out = p->in = master;
    p->err = -1;
    nonblock(master);
  } else {
    close(outp[1]);
    close(errp[1]);
    p->out = outp[0];
    p->err = errp[0];
    nonblock(p->out);
    nonblock(p->err);
    if (flags & EXEC_STDIN) {
      close(inp[0]);
      p->in = inp[1];
      nonblock(p->in);
    } else
      p->in = -1;
  }
  size_t off = 0;
  for (int i = 0; i < argc && off + 2 < sizeof p->cmd; i++)
    off += (size_t)snprintf(p->cmd + off, sizeof p->cmd - off, i ? " %s" : "%s", argv[i]);
  {
    struct wr w;
    wr_init(&w, G_STARTED, id);
    wr_u32(&w, (uint32_t)pid);
    wr_send(&w);
  }
  goto out;
fail:
  for (int i = 0; i < 2; i++) {
    if (outp[i] >= 0) close(outp[i]);
    if (errp[i] >= 0) close(errp[i]);
    if (inp[i] >= 0) close(inp[i]);
  }
  if (master >= 0) close(master);
out:
  free(cwd);
  free(user);
  for (int i = 0; i < argc; i++) free(argv[i]);
  for (int i = 0; i < ng; i++) free(given[i]);
}

static void flush_stdin(struct proc *p) {
  while (p->in >= 0 && p->plen > 0) {
    ssize_t k = write(p->in, p->pending, p->plen);
    if (k < 0) {
      if (errno == EAGAIN || errno == EINTR) return;
      p->plen = 0; /* the reader is gone: the rest is dropped */
      break;
    }
    memmove(p->pending, p->pending + k, p->plen - (size_t)k);
    p->plen -= (size_t)k;
  }
  if (p->plen == 0 && p->close_in && p->in >= 0 && !p->pty) {
    close(p->in);
    p->in = -1;
  }
}

/* STDIN: the bytes are acknowledged at once (the host's window counts them) and kept until
 * the command reads them, up to PENDING_MAX; an empty body closes stdin. */
void proc_stdin(uint32_t id, const uint8_t *b, uint32_t len) {
  struct proc *p = find(id);
  send_ack(id, len);
  if (!p || p->in < 0) return;
  if (len == 0) {
    p->close_in = 1;
    flush_stdin(p);
    return;
  }
  if (p->plen + len > PENDING_MAX) return;
  uint8_t *n = realloc(p->pending, p->plen + len);
  if (!n) return;
  p->pending = n;
  memcpy(p->pending + p->plen, b, len);
  p->plen += len;
  flush_stdin(p);
}

void proc_signal(uint32_t id, int sig) {
  struct proc *p = find(id);
  if (!p || p->reaped) {
    send_error(id, ESRCH, "signal");
    return;
  }
  if (sig <= 0 || sig > 64) {
    send_error(id, EINVAL, "signal");
    return;
  }
  if (kill(-p->pid, sig) < 0 && kill(p->pid, sig) < 0) {
    send_error(id, errno, "signal");
    return;
  }
  send_simple(G_OK, id);
}

void proc_resize(uint32_t id, uint16_t cols, uint16_t rows) {
  struct proc *p = find(id);
  if (!p || !p->pty || p->out < 0) {
    send_error(id, ENOTTY, "resize");
    return;
  }
  struct winsize ws = {rows, cols, 0, 0};
  ioctl(p->out, TIOCSWINSZ, &ws);
  send_simple(G_OK, id);
}

void proc_list(uint32_t id) {
  struct wr w;
  wr_init(&w, G_PROC_LIST, id);
  uint32_t n = 0;
  for (int i = 0; i < MAX_PROCS; i++)
    if (procs[i].used && !procs[i].reaped) n++;
  wr_u32(&w, n);
  for (int i = 0; i < MAX_PROCS; i++)
    if (procs[i].used && !procs[i].reaped) {
      wr_u32(&w, procs[i].id);
      wr_u32(&w, (uint32_t)procs[i].pid);
      wr_str(&w, procs[i].cmd);
    }
  wr_send(&w);
}

/* Reads what a pipe holds now; returns 0 at EOF or error (the fd is closed), 1 otherwise. */
static int drain(struct proc *p, int *fd, uint8_t type) {
  static uint8_t buf[DATA_CHUNK];
  for (int rounds = 0; rounds < 16; rounds++) {
    ssize_t k = read(*fd, buf, sizeof buf);
    if (k > 0) {
      send_data(type, p->id, buf, (size_t)k);
      continue;
    }
    if (k < 0 && (errno == EAGAIN || errno == EINTR)) return 1;
    /* EOF, or EIO from a pty master once the last slave is closed */
    if (p->pty && *fd == p->in) p->in = -1;
    close(*fd);
    *fd = -1;
    return 0;
  }
  return 1;
}

static void finish(struct proc *p) {
  /* Drain what the command wrote before it exited; a child of it keeping the pipe open does
   * not hold the exit back. */
  while (p->out >= 0 && drain(p, &p->out, G_STDOUT)) {
    struct pollfd pf = {p->out, POLLIN, 0};
    if (poll(&pf, 1, 0) <= 0) break;
  }
  while (p->err >= 0 && drain(p, &p->err, G_STDERR)) {
    struct pollfd pf = {p->err, POLLIN, 0};
    if (poll(&pf, 1, 0) <= 0) break;
  }
  if (p->out >= 0) close(p->out);
  if (p->err >= 0) close(p->err);
  if (p->in >= 0 && p->in != p->out) close(p->in);
  struct wr w;
  wr_init(&w, G_EXIT, p->id);
  int code = WIFEXITED(p->status) ? WEXITSTATUS(p->status) : -1;
  int sig = WIFSIGNALED(p->status) ? WTERMSIG(p->status) : 0;
  wr_u32(&w, (uint32_t)code);
  wr_u32(&w, (uint32_t)sig);
  wr_send(&w);
  free(p->pending);
  memset(p, 0, sizeof *p);
}

void proc_reap(void) {
  for (;;) {
    int status;
    pid_t pid = waitpid(-1, &status, WNOHANG);
    if (pid <= 0) return;
    for (int i = 0; i < MAX_PROCS; i++)
      if (procs[i].used && procs[i].pid == pid) {
        procs[i].reaped = 1;
        procs[i].status = status;
        finish(&procs[i]);
      }
  }
}

int proc_pollfds(struct pollfd *fds, int max) {
  int n = 0;
  for (int i = 0; i < MAX_PROCS && n + 3 <= max; i++) {
    struct proc *p = &procs[i];
    if (!p->used) continue;
    if (p->out >= 0) fds[n++] = (struct pollfd){p->out, (short)(POLLIN | (p->pty && p->plen ? POLLOUT : 0)), 0};
    if (p->err >= 0) fds[n++] = (struct pollfd){p->err, POLLIN, 0};
    if (!p->pty && p->in >= 0 && p->plen) fds[n++] = (struct pollfd){p->in, POLLOUT, 0};
  }
  return n;
}

void proc_events(struct pollfd *fds, int n) {
  for (int j = 0; j < n; j++) {
    if (!fds[j].revents) continue;
    for (int i = 0; i < MAX_PROCS; i++) {
      struct proc *p = &procs[i];
      if (!p->used) continue;
      if (fds[j].fd == p->out && p->out >= 0) {
        if (fds[j].revents & POLLOUT) flush_stdin(p);
        if (fds[j].revents & (POLLIN | POLLHUP | POLLERR)) {
          /* a pty master reports EIO while the slave is closed: that is its EOF */
          if (!drain(p, &p->out, G_STDOUT) && p->pty) p->in = -1;
        }
      } else if (fds[j].fd == p->err && p->err >= 0) {
        if (fds[j].revents & (POLLIN | POLLHUP | POLLERR)) drain(p, &p->err, G_STDERR);
      } else if (fds[j].fd == p->in && p->in >= 0 && !p->pty) {
        if (fds[j].revents & POLLOUT) flush_stdin(p);
        else if (fds[j].revents & (POLLHUP | POLLERR)) {
          close(p->in);
          p->in = -1;
          p->plen = 0;
        }
      }
    }
  }
}
