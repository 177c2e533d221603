/*  util.c - logging, the home folder and stop signals. Small things
 *  every process needs and nothing else owns. */
#define _GNU_SOURCE
#include <ctype.h>
#include <pthread.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "nx_runtime.h"

/* ---- logging ---- */

static char s_proc[64] = "nexus";
static nx_log_level_t s_level = NX_LOG_INFO;

void nx_log_init(const char *process_name) {
    snprintf(s_proc, sizeof s_proc, "%s", process_name);
    const char *lvl = getenv("NEXUS_LOG");
    if (lvl) {
        if (!strcmp(lvl, "debug"))
            s_level = NX_LOG_DEBUG;
        else if (!strcmp(lvl, "warn"))
            s_level = NX_LOG_WARN;
        else if (!strcmp(lvl, "error"))
            s_level = NX_LOG_ERROR;
    }
}

void nx_log_set_level(nx_log_level_t level) { s_level = level; }

void nx_log(nx_log_level_t level, const char *fmt, ...) {
    if (level < s_level)
        return;
    static const char *const names[] = {"debug", "info", "warn", "error"};
    char line[2048];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    localtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof line, "%02d:%02d:%02d.%03ld %-5s %s[%d]: ", tm.tm_hour,
                     tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000, names[level], s_proc,
                     (int)getpid());
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof line - n - 1, fmt, ap);
    va_end(ap);
    size_t len = strlen(line);
    line[len++] = '\n';
    /* One write() per record keeps lines whole when processes share a log. */
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}

/* ---- home ---- */

static int mkdir_p(const char *dir) {
    char buf[512];
    snprintf(buf, sizeof buf, "%s", dir);
    for (char *p = buf + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            if (mkdir(buf, 0755) < 0 && errno != EEXIST)
                return -errno;
            *p = '/';
        }
    if (mkdir(buf, 0700) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

int nx_home_resolve(const char *home, const nx_company_t *company, bool create,
                    nx_home_t *ret_home) {
    nx_home_t h;
    memset(&h, 0, sizeof h);
    char base[PATH_MAX];
    if (!home || !*home)
        home = getenv("NEXUS_HOME");
    if (home && *home) {
        if (home[0] == '/')
            snprintf(base, sizeof base, "%s", home);
        else {
            char cwd[PATH_MAX];
            if (!getcwd(cwd, sizeof cwd))
                return -errno;
            snprintf(base, sizeof base, "%s/%s", cwd, home);
        }
    } else if (company) {
        char *slash = strrchr(company->path, '/');
        int n = slash ? (int)(slash - company->path) : 0;
        snprintf(base, sizeof base, "%.*s/.nexus", n, company->path);
    } else {
        char cwd[PATH_MAX];
        if (!getcwd(cwd, sizeof cwd))
            return -errno;
        snprintf(base, sizeof base, "%s/.nexus", cwd);
    }
    if (strlen(base) >= sizeof h.dir - 32)
        return -ENAMETOOLONG;
    snprintf(h.dir, sizeof h.dir, "%s", base);
    if (company && company->ceo_endpoint)
        snprintf(h.ceo, sizeof h.ceo, "%s", company->ceo_endpoint);
    else
        snprintf(h.ceo, sizeof h.ceo, "ipc://%s/ceo.sock", h.dir);
    if (company && company->events_endpoint)
        snprintf(h.events, sizeof h.events, "%s", company->events_endpoint);
    else
        snprintf(h.events, sizeof h.events, "ipc://%s/events.sock", h.dir);
    /* Unix socket paths are limited to 107 bytes. */
    if (strncmp(h.ceo, "ipc://", 6) == 0 && strlen(h.ceo) - 6 > 107)
        return -ENAMETOOLONG;
    snprintf(h.ledger, sizeof h.ledger, "%s/ledger.db", h.dir);
    snprintf(h.logs, sizeof h.logs, "%s/logs", h.dir);
    if (create) {
        int rc = mkdir_p(h.dir);
        if (rc == 0)
            rc = mkdir_p(h.logs);
        if (rc < 0)
            return rc;
    }
    *ret_home = h;
    return 0;
}

/* ---- stop signals ---- */

int nx_signals_block(void) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    if (pthread_sigmask(SIG_BLOCK, &set, NULL) != 0)
        return -EINVAL;
    int fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    return fd < 0 ? -errno : fd;
}

void nx_signals_unblock(void) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
}

static int on_signal(zloop_t *loop, zmq_pollitem_t *item, void *arg) {
    struct signalfd_siginfo si;
    if (read(item->fd, &si, sizeof si) == (ssize_t)sizeof si) {
        nx_info("signal %d (%s): stopping", (int)si.ssi_signo, strsignal((int)si.ssi_signo));
        return -1;
    }
    return 0;
}

void nx_signals_watch(zloop_t *loop, int sigfd) {
    if (sigfd < 0)
        return;
    zmq_pollitem_t item = {NULL, sigfd, ZMQ_POLLIN, 0};
    zloop_poller(loop, &item, on_signal, NULL);
}
