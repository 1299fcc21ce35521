/*
 * echo: a single-threaded epoll TCP echo server, the backend of the peer
 * benchmark's direct and HAProxy paths (benches/peers/run.sh).
 *
 *   echo PORT            listens on 127.0.0.1:PORT (0: any free port)
 *
 * Prints "echo: listening on 127.0.0.1:PORT" once it accepts connections.
 * Writes back every byte it reads; closes when the peer does. The fast path
 * allocates nothing: a read goes into one shared buffer and is written back
 * at once; only a write the socket cannot take whole (never seen with 1 KiB
 * on loopback) parks the rest in a buffer of that connection's own.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF 16384
#define EVENTS 256

struct pending {
    char *data;
    size_t off, len;
};

static struct pending *pend; /* indexed by fd; NULL data when nothing waits */
static int maxfd;
static int ep;

static void die(const char *what) {
    perror(what);
    exit(1);
}

static void drop(int fd) {
    if (fd < maxfd && pend[fd].data) {
        free(pend[fd].data);
        pend[fd].data = NULL;
    }
    close(fd); /* also leaves the epoll set */
}

/* Writes what could not be written before; 1 when all is out. */
static int flush_pending(int fd) {
    struct pending *p = &pend[fd];
    while (p->off < p->len) {
        ssize_t n = write(fd, p->data + p->off, p->len - p->off);
        if (n < 0) {
            if (errno == EAGAIN) return 0;
            return -1;
        }
        p->off += (size_t)n;
    }
    free(p->data);
    p->data = NULL;
    return 1;
}

static void on_readable(int fd, char *buf) {
    ssize_t n = read(fd, buf, BUF);
    if (n == 0) {
        drop(fd);
        return;
    }
    if (n < 0) {
        if (errno != EAGAIN) drop(fd);
        return;
    }
    ssize_t w = 0;
    while (w < n) {
        ssize_t k = write(fd, buf + w, (size_t)(n - w));
        if (k < 0) {
            if (errno != EAGAIN) {
                drop(fd);
                return;
            }
            break;
        }
        w += k;
    }
    if (w < n) {
        if (fd >= maxfd) {
            drop(fd);
            return;
        }
        struct pending *p = &pend[fd];
        p->len = (size_t)(n - w);
        p->off = 0;
        p->data = malloc(p->len);
        if (!p->data) die("malloc");
        memcpy(p->data, buf + w, p->len);
        struct epoll_event ev = {.events = EPOLLOUT, .data.fd = fd};
        if (epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev) < 0) drop(fd);
    }
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: echo PORT\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    maxfd = (int)(rl.rlim_cur > 1048576 ? 1048576 : rl.rlim_cur);
    pend = calloc((size_t)maxfd, sizeof *pend);
    if (!pend) die("calloc");

    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (ls < 0) die("socket");
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1]))};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(ls, (struct sockaddr *)&a, sizeof a) < 0) die("bind");
    if (listen(ls, 65535) < 0) die("listen"); /* capped by net.core.somaxconn */
    socklen_t al = sizeof a;
    getsockname(ls, (struct sockaddr *)&a, &al);

    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) die("epoll_create1");
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = ls};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev) < 0) die("epoll_ctl");
    printf("echo: listening on 127.0.0.1:%d\n", ntohs(a.sin_port));
    fflush(stdout);

    static char buf[BUF];
    struct epoll_event events[EVENTS];
    for (;;) {
        int n = epoll_wait(ep, events, EVENTS, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            int fd = events[i].data.fd;
            if (fd == ls) {
                for (int k = 0; k < 64; k++) {
                    int c = accept4(ls, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (c < 0) break; /* EAGAIN, or a connection reset in the queue */
                    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    struct epoll_event cev = {.events = EPOLLIN, .data.fd = c};
                    if (epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev) < 0) close(c);
                }
                continue;
            }
            if (fd < maxfd && pend[fd].data) {
                int r = flush_pending(fd);
                if (r < 0) {
                    drop(fd);
                } else if (r > 0) {
                    struct epoll_event cev = {.events = EPOLLIN, .data.fd = fd};
                    if (epoll_ctl(ep, EPOLL_CTL_MOD, fd, &cev) < 0) drop(fd);
                }
                continue;
            }
            on_readable(fd, buf);
        }
    }
}
