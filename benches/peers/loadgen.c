/*
 * loadgen: new TCP streams per second against an echo server, for the peer
 * benchmark (benches/peers/run.sh).
 *
 *   loadgen HOST:PORT IN_FLIGHT SECONDS PAYLOAD [--warmup S] [--sources N] [--timeout S]
 *
 * IN_FLIGHT connections at once, each a new TCP connection: connect, write
 * PAYLOAD bytes, read the PAYLOAD bytes echoed back (checked), close; then
 * the next one in its place. One thread, epoll, non-blocking sockets, no
 * allocation after start: the slots, the payload and the latency histogram
 * are made once.
 *
 * Only streams that end inside the measurement window (after --warmup,
 * default 0.5 s, for SECONDS) count; latency is from the connect call to the
 * last echoed byte read. After the window no stream starts, and those in
 * flight are let finish (within 1 s; any left are closed and counted as
 * abandoned), so that the servers see no connection cut short. --sources N binds each connection to one of
 * 127.0.0.1 .. 127.0.0.N in turn (the port chosen at connect), so that the
 * client side's TIME_WAIT sockets spread over N times the local ports.
 *
 * Prints one line:
 *   streams=N seconds=S rate=R p50_us=A p99_us=B errors=E cpu_s=C ...
 * where cpu_s is this process's CPU (user + system) over the window, and
 * the rest break errors down and give totals over the whole run (warm-up
 * included), for CPU-per-stream figures of the servers measured around it.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

/* Latency histogram: 1 us buckets below 100 ms, 100 us buckets to 10 s. */
#define FINE_US 100000
#define COARSE_STEP 100
#define COARSE_N ((10000000 - FINE_US) / COARSE_STEP)
#define BUCKETS (FINE_US + COARSE_N + 1)

enum state { IDLE, WRITING, READING };

struct slot {
    int fd;
    enum state state;
    size_t done;   /* bytes written (WRITING) or read back (READING) */
    double start;  /* when connect was called */
    double retry;  /* IDLE: when to try again after an immediate failure */
};

enum err { E_REFUSED, E_RESET, E_ADDRNOTAVAIL, E_EOF, E_MISMATCH, E_TIMEOUT, E_OTHER, E_N };
static const char *err_names[E_N] = {"refused", "reset", "addrnotavail", "eof", "mismatch", "timeout", "other"};

static uint32_t hist[BUCKETS];
static struct slot *slots;
static int n_slots;
static char *payload;
static size_t payload_len;
static struct sockaddr_in target;
static int n_sources;
static unsigned next_source;
static int ep;
static double win_start, win_end, timeout_s = 5.0;
static uint64_t win_streams, total_streams, errors[E_N], total_errors, abandoned;
static int retries_pending;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static double cpu(void) {
    struct rusage r;
    getrusage(RUSAGE_SELF, &r);
    return (double)(r.ru_utime.tv_sec + r.ru_stime.tv_sec) + (double)(r.ru_utime.tv_usec + r.ru_stime.tv_usec) * 1e-6;
}

static void record(double latency_s) {
    double us = latency_s * 1e6;
    size_t b;
    if (us < FINE_US)
        b = (size_t)us;
    else if (us < 10000000)
        b = FINE_US + (size_t)((us - FINE_US) / COARSE_STEP);
    else
        b = BUCKETS - 1;
    hist[b]++;
}

/* The bucket's upper edge in microseconds. */
static double bucket_us(size_t b) {
    if (b < FINE_US) return (double)b + 1;
    return FINE_US + (double)(b - FINE_US + 1) * COARSE_STEP;
}

static double percentile(double p) {
    uint64_t total = 0, want, seen = 0;
    for (size_t b = 0; b < BUCKETS; b++) total += hist[b];
    if (!total) return 0;
    want = (uint64_t)(p * (double)total);
    if (want >= total) want = total - 1;
    for (size_t b = 0; b < BUCKETS; b++) {
        seen += hist[b];
        if (seen > want) return bucket_us(b);
    }
    return bucket_us(BUCKETS - 1);
}

static enum err classify(int e) {
    switch (e) {
    case ECONNREFUSED: return E_REFUSED;
    case ECONNRESET:
    case EPIPE: return E_RESET;
    case EADDRNOTAVAIL:
    case EADDRINUSE: return E_ADDRNOTAVAIL;
    default: return E_OTHER;
    }
}

static void count_error(enum err e, double t) {
    total_errors++;
    if (t >= win_start && t <= win_end) errors[e]++;
}

static void finish(struct slot *s) {
    close(s->fd); /* leaves the epoll set */
    s->fd = -1;
    s->state = IDLE;
}

static void fail(struct slot *s, enum err e, double t) {
    count_error(e, t);
    finish(s);
    s->retry = t; /* start again on the next turn of the loop */
    retries_pending = 1;
}

static int want(struct slot *s, uint32_t events, int op) {
    struct epoll_event ev = {.events = events, .data.ptr = s};
    return epoll_ctl(ep, op, s->fd, &ev);
}

/* Writes what is left of the payload; moves to READING when all is out. */
static void do_write(struct slot *s, int registered, double t) {
    while (s->done < payload_len) {
        ssize_t n = write(s->fd, payload + s->done, payload_len - s->done);
        if (n < 0) {
            if (errno == EAGAIN) {
                if (!registered && want(s, EPOLLOUT, EPOLL_CTL_ADD) < 0) fail(s, E_OTHER, t);
                return;
            }
            fail(s, classify(errno), t);
            return;
        }
        s->done += (size_t)n;
    }
    s->state = READING;
    s->done = 0;
    if (want(s, EPOLLIN, registered ? EPOLL_CTL_MOD : EPOLL_CTL_ADD) < 0) fail(s, E_OTHER, t);
}

static void start(struct slot *s, double t) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        count_error(E_OTHER, t);
        s->retry = t + 0.001;
        retries_pending = 1;
        return;
    }
    /* No TCP_NODELAY: the payload goes in one write, which Nagle never holds
     * back (nothing is unacknowledged before it). */
    int one = 1;
    if (n_sources > 0) {
        struct sockaddr_in src = {.sin_family = AF_INET};
        src.sin_addr.s_addr = htonl(0x7f000001u + (next_source++ % (unsigned)n_sources));
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        if (bind(fd, (struct sockaddr *)&src, sizeof src) < 0) {
            count_error(classify(errno), t);
            close(fd);
            s->retry = t + 0.001;
            retries_pending = 1;
            return;
        }
    }
    s->fd = fd;
    s->state = WRITING;
    s->done = 0;
    s->start = t;
    if (connect(fd, (struct sockaddr *)&target, sizeof target) < 0 && errno != EINPROGRESS) {
        /* Refused or no local port: back off a millisecond, not a busy loop. */
        count_error(classify(errno), t);
        finish(s);
        s->retry = t + 0.001;
        retries_pending = 1;
        return;
    }
    /* On loopback the handshake is usually done by now: write at once. */
    do_write(s, 0, t);
}

static void on_readable(struct slot *s, double t) {
    static char buf[65536];
    for (;;) {
        size_t room = payload_len - s->done + 1; /* one more, to see extra bytes */
        if (room > sizeof buf) room = sizeof buf;
        ssize_t n = read(s->fd, buf, room);
        if (n < 0) {
            if (errno == EAGAIN) return;
            fail(s, classify(errno), t);
            return;
        }
        if (n == 0) {
            fail(s, E_EOF, t);
            return;
        }
        if (s->done + (size_t)n > payload_len || memcmp(buf, payload + s->done, (size_t)n) != 0) {
            fail(s, E_MISMATCH, t);
            return;
        }
        s->done += (size_t)n;
        if (s->done == payload_len) {
            total_streams++;
            if (t >= win_start && t <= win_end) {
                win_streams++;
                record(t - s->start);
            }
            finish(s);
            s->retry = t;
            if (t < win_end) start(s, t);
            return;
        }
    }
}

static void usage(void) {
    fprintf(stderr, "usage: loadgen HOST:PORT IN_FLIGHT SECONDS PAYLOAD [--warmup S] [--sources N] [--timeout S]\n");
    exit(2);
}

int main(int argc, char **argv) {
    if (argc < 5) usage();
    double warmup = 0.5;
    for (int i = 5; i < argc; i++) {
        if (i + 1 >= argc) usage();
        if (!strcmp(argv[i], "--warmup"))
            warmup = atof(argv[++i]);
        else if (!strcmp(argv[i], "--sources"))
            n_sources = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--timeout"))
            timeout_s = atof(argv[++i]);
        else
            usage();
    }
    char host[256];
    const char *colon = strrchr(argv[1], ':');
    if (!colon || (size_t)(colon - argv[1]) >= sizeof host) usage();
    memcpy(host, argv[1], (size_t)(colon - argv[1]));
    host[colon - argv[1]] = 0;
    target.sin_family = AF_INET;
    target.sin_port = htons((uint16_t)atoi(colon + 1));
    if (inet_pton(AF_INET, host, &target.sin_addr) != 1) {
        fprintf(stderr, "loadgen: %s is not an IPv4 address\n", host);
        return 2;
    }
    n_slots = atoi(argv[2]);
    double seconds = atof(argv[3]);
    payload_len = (size_t)atol(argv[4]);
    if (n_slots < 1 || seconds <= 0 || payload_len < 1) usage();

    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)n_slots + 64) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    slots = calloc((size_t)n_slots, sizeof *slots);
    payload = malloc(payload_len);
    if (!slots || !payload) return 1;
    for (size_t i = 0; i < payload_len; i++) payload[i] = (char)('a' + i % 26);
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) {
        perror("epoll_create1");
        return 1;
    }

    double t0 = now(), cpu0 = cpu(), cpu_win0 = 0, cpu_win1 = 0, drained_at = 0;
    int in_window = 0;
    win_start = t0 + warmup;
    win_end = win_start + seconds;
    for (int i = 0; i < n_slots; i++) {
        slots[i].fd = -1;
        slots[i].state = IDLE;
        start(&slots[i], t0);
    }
    struct epoll_event events[256];
    double last_scan = t0;
    for (;;) {
        double t = now();
        if (!in_window && t >= win_start) {
            cpu_win0 = cpu();
            in_window = 1;
        }
        if (t >= win_end) {
            /* The window is over: start nothing more, let the streams in
             * flight end (counted in the totals only), within 1 s. */
            if (!drained_at) {
                cpu_win1 = cpu();
                drained_at = t;
            }
            int busy = 0;
            for (int i = 0; i < n_slots; i++) busy += slots[i].state != IDLE;
            if (!busy || t - drained_at > 1.0) break;
        }
        int wait_ms = retries_pending ? 1 : 50;
        double left_ms = (win_end - t) * 1e3;
        if (left_ms > 0 && left_ms < wait_ms) wait_ms = (int)left_ms + 1;
        int n = epoll_wait(ep, events, 256, wait_ms);
        if (n < 0 && errno != EINTR) {
            perror("epoll_wait");
            return 1;
        }
        t = now();
        for (int i = 0; i < n; i++) {
            struct slot *s = events[i].data.ptr;
            if (s->state == WRITING)
                do_write(s, 1, t);
            else if (s->state == READING)
                on_readable(s, t);
        }
        if (retries_pending || t - last_scan > 0.1) {
            retries_pending = 0;
            last_scan = t;
            for (int i = 0; i < n_slots; i++) {
                struct slot *s = &slots[i];
                if (s->state != IDLE && t - s->start > timeout_s) fail(s, E_TIMEOUT, t);
                if (s->state == IDLE && t < win_end) {
                    if (s->retry <= t)
                        start(s, t);
                    else
                        retries_pending = 1;
                }
            }
        }
    }
    double t_end = now(), cpu_end = cpu();
    for (int i = 0; i < n_slots; i++) {
        if (slots[i].state != IDLE) {
            abandoned++;
            close(slots[i].fd);
        }
    }
    uint64_t errs = 0;
    for (int e = 0; e < E_N; e++) errs += errors[e];
    double window = drained_at - win_start;
    if (window > seconds) window = seconds; /* streams after win_end are not counted */
    printf("streams=%llu seconds=%.3f rate=%.1f p50_us=%.0f p99_us=%.0f errors=%llu cpu_s=%.3f",
           (unsigned long long)win_streams, window, (double)win_streams / window, percentile(0.50), percentile(0.99),
           (unsigned long long)errs, cpu_win1 - cpu_win0);
    for (int e = 0; e < E_N; e++) printf(" %s=%llu", err_names[e], (unsigned long long)errors[e]);
    printf(" p999_us=%.0f max_us=%.0f abandoned=%llu total_streams=%llu total_errors=%llu total_seconds=%.3f "
           "total_cpu_s=%.3f\n",
           percentile(0.999), percentile(1.0), (unsigned long long)abandoned, (unsigned long long)total_streams,
           (unsigned long long)total_errors, t_end - t0, cpu_end - cpu0);
    return 0;
}
