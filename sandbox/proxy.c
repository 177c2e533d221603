/*  proxy.c - `net: allow`: egress only to listed host:port pairs.
 *
 *      agent ──TCP──> forwarder (inside, 127.0.0.1:3128, in init's netns)
 *                       └──Unix socket, bound in──> proxy (outside, the
 *                          `nexus sandbox-proxy` process) ──TCP──> host:port
 *
 *  The proxy speaks HTTP CONNECT, which every agent CLI honours through
 *  HTTPS_PROXY; it refuses any target not on the allowlist with 403. Both
 *  sides fork one process per connection and splice bytes with poll():
 *  simple code, and the forwarder runs only async-signal-safe calls (it is
 *  forked from a process cloned out of a multi-threaded one). */
#define _GNU_SOURCE
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sandbox_int.h"

/* Copies bytes both ways until either side closes. */
static void splice_fds(int a, int b) {
    char buf[16384];
    struct pollfd p[2] = {{a, POLLIN, 0}, {b, POLLIN, 0}};
    for (;;) {
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            return;
        }
        for (int i = 0; i < 2; i++) {
            if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            ssize_t n = read(p[i].fd, buf, sizeof buf);
            if (n <= 0)
                return;
            const char *q = buf;
            while (n > 0) {
                ssize_t w = write(p[1 - i].fd, q, (size_t)n);
                if (w <= 0)
                    return;
                q += w;
                n -= w;
            }
        }
    }
}

/* ---- inside: the forwarder (system calls only) ---- */

int nx_proxy_forwarder_start(const char *unix_path) {
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (ls < 0)
        return -errno;
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons(NX_PROXY_PORT);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(ls, (struct sockaddr *)&a, sizeof a) < 0 || listen(ls, 64) < 0) {
        int e = errno;
        close(ls);
        return -e;
    }
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(ls);
        return -e;
    }
    if (pid > 0) {
        close(ls);
        return 0;
    }
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    signal(SIGCHLD, SIG_IGN); /* connection children reap themselves */
    for (;;) {
        int c = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0) {
            if (errno == EINTR)
                continue;
            _exit(0);
        }
        if (fork() == 0) {
            int u = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
            struct sockaddr_un ua;
            memset(&ua, 0, sizeof ua);
            ua.sun_family = AF_UNIX;
            size_t n = strlen(unix_path);
            if (n >= sizeof ua.sun_path)
                _exit(1);
            memcpy(ua.sun_path, unix_path, n);
            if (u >= 0 && connect(u, (struct sockaddr *)&ua, sizeof ua) == 0)
                splice_fds(c, u);
            _exit(0);
        }
        close(c);
    }
}

/* ---- outside: the proxy (`nexus sandbox-proxy SOCKET HOST:PORT...`) ---- */

static bool allowed(char **allow, int nallow, const char *host, const char *port) {
    char want[600];
    snprintf(want, sizeof want, "%s:%s", host, port);
    for (int i = 0; i < nallow; i++)
        if (strcasecmp(allow[i], want) == 0)
            return true;
    return false;
}

static void reply(int fd, const char *text) {
    ssize_t w = write(fd, text, strlen(text));
    (void)w;
}

static void serve(int c, char **allow, int nallow) {
    char req[4096];
    size_t len = 0;
    while (len < sizeof req - 1 && !memmem(req, len, "\r\n\r\n", 4)) {
        ssize_t n = read(c, req + len, sizeof req - 1 - len);
        if (n <= 0)
            return;
        len += (size_t)n;
    }
    req[len] = '\0';
    char host[512], port[16];
    if (sscanf(req, "CONNECT %511[^:]:%15[0-9] HTTP/1.%*d", host, port) != 2) {
        reply(c, "HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n");
        return;
    }
    if (!allowed(allow, nallow, host, port)) {
        fprintf(stderr, "nexus sandbox-proxy: refused %s:%s (not on the allowlist)\n", host, port);
        reply(c, "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n");
        return;
    }
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(host, port, &hints, &res) != 0 || !res) {
        reply(c, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n");
        return;
    }
    int t = -1;
    for (struct addrinfo *ai = res; ai && t < 0; ai = ai->ai_next) {
        t = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, 0);
        if (t >= 0 && connect(t, ai->ai_addr, ai->ai_addrlen) < 0) {
            close(t);
            t = -1;
        }
    }
    freeaddrinfo(res);
    if (t < 0) {
        reply(c, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n");
        return;
    }
    reply(c, "HTTP/1.1 200 Connection established\r\n\r\n");
    splice_fds(c, t);
    close(t);
}

int nx_proxy_main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: nexus sandbox-proxy SOCKET [HOST:PORT...]\n");
        return 2;
    }
    int ls = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un a;
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    snprintf(a.sun_path, sizeof a.sun_path, "%s", argv[1]);
    unlink(a.sun_path);
    if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof a) < 0 || listen(ls, 64) < 0) {
        fprintf(stderr, "nexus sandbox-proxy: %s: %s\n", argv[1], strerror(errno));
        return 1;
    }
    /* Ready: the parent waits for this byte on stdout before it starts the
     * sandbox, so the socket exists when it is bound in. */
    reply(1, "r");
    close(1);
    signal(SIGCHLD, SIG_IGN);
    for (;;) {
        int c = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0) {
            if (errno == EINTR)
                continue;
            return 1;
        }
        if (fork() == 0) {
            serve(c, argv + 2, argc - 2);
            _exit(0);
        }
        close(c);
    }
}
