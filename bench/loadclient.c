/* The benchmark's load client: many SSE connections on one epoll loop, counting frames.
 *
 * A Python client measures itself as much as the server once thousands of clients receive
 * hundreds of thousands of frames a second; this one does little per byte (memchr for the blank
 * line that ends a frame), so the server stays the bottleneck.
 *
 * Usage: loadclient PORT CLIENTS PATH [ADDRESSES]
 *   Opens CLIENTS connections to 127.0.0.1:PORT (from ADDRESSES loopback source addresses,
 *   127.0.0.2 and up, so that ports do not run short), sends "GET PATH" on each, prints
 *   "ready" once every connection is open, then reads commands on stdin:
 *     expect N   wait until every client has N frames in all; print, as one JSON line, the
 *                CLOCK_MONOTONIC time at which the last client got each of the frames since the
 *                previous "expect" ({"last": [t, ...], "bytes": received so far})
 *     quit       close everything and exit
 *   A frame is what ends in a blank line ("\n\n"); the HTTP head ends in "\r\n\r\n" and chunk
 *   framing never holds "\n\n", so neither is counted.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    int fd;
    long frames;   /* frames received */
    char last;     /* the last byte received: a frame's blank line may span two reads */
} conn_t;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what) {
    fprintf(stderr, "loadclient: %s: %s\n", what, strerror(errno));
    exit(1);
}

/* Per frame index: how many clients have it, and when the last one got it. */
static long *arrived = NULL;
static double *last_at = NULL;
static long capacity = 0;
static long clients = 0;

static void grow(long needed) {
    if (needed <= capacity) return;
    long size = capacity ? capacity : 1024;
    while (size < needed) size *= 2;
    arrived = realloc(arrived, size * sizeof *arrived);
    last_at = realloc(last_at, size * sizeof *last_at);
    if (!arrived || !last_at) die("realloc");
    memset(arrived + capacity, 0, (size - capacity) * sizeof *arrived);
    memset(last_at + capacity, 0, (size - capacity) * sizeof *last_at);
    capacity = size;
}

static long complete_upto = 0;  /* every frame below this index reached every client */

static void count(conn_t *c, const char *data, ssize_t n, double t) {
    long found = 0;
    if (n > 0 && c->last == '\n' && data[0] == '\n') found++;
    const char *p = data, *end = data + n;
    while (p < end - 1) {
        const char *q = memchr(p, '\n', end - 1 - p);
        if (!q) break;
        if (q[1] == '\n') { found++; p = q + 2; } else p = q + 1;
    }
    if (n > 0) c->last = data[n - 1];
    if (!found) return;
    grow(c->frames + found);
    for (long k = c->frames; k < c->frames + found; k++) {
        if (++arrived[k] == clients) last_at[k] = t;
    }
    c->frames += found;
    while (complete_upto < capacity && arrived[complete_upto] == clients) complete_upto++;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: loadclient PORT CLIENTS PATH [ADDRESSES]\n");
        return 2;
    }
    int port = atoi(argv[1]);
    clients = atol(argv[2]);
    const char *path = argv[3];
    int addresses = argc > 4 ? atoi(argv[4]) : 1;
    if (addresses < 1) addresses = 1;

    struct rlimit limit;
    if (getrlimit(RLIMIT_NOFILE, &limit) == 0) {
        limit.rlim_cur = limit.rlim_max;
        setrlimit(RLIMIT_NOFILE, &limit);
    }
    char request[512];
    int request_len = snprintf(request, sizeof request,
                               "GET %s HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n",
                               path);

    int ep = epoll_create1(0);
    if (ep < 0) die("epoll_create1");
    conn_t *conns = calloc(clients, sizeof *conns);
    struct sockaddr_in server = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, "127.0.0.1", &server.sin_addr);
    for (long i = 0; i < clients; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0) die("socket");
        struct sockaddr_in source = {.sin_family = AF_INET, .sin_port = 0};
        source.sin_addr.s_addr = htonl(0x7f000002 + (i % addresses));
        if (bind(fd, (struct sockaddr *)&source, sizeof source) < 0) die("bind");
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (connect(fd, (struct sockaddr *)&server, sizeof server) < 0) die("connect");
        if (write(fd, request, request_len) != request_len) die("write");
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
        conns[i].fd = fd;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &conns[i]};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl");
    }
    fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
    struct epoll_event in = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, 0, &in);
    printf("ready\n");
    fflush(stdout);

    static char buf[1 << 16];
    char line[128];
    size_t line_len = 0;
    long expect = -1, reported = 0;
    long long received = 0;
    struct epoll_event events[512];
    for (;;) {
        int n = epoll_wait(ep, events, 512, 1000);
        if (n < 0 && errno != EINTR) die("epoll_wait");
        double t = now();
        for (int i = 0; i < n; i++) {
            conn_t *c = events[i].data.ptr;
            if (c == NULL) {  /* a command on stdin */
                ssize_t got = read(0, line + line_len, sizeof line - 1 - line_len);
                if (got == 0) goto done;
                if (got < 0) continue;
                line_len += got;
                char *nl;
                while ((nl = memchr(line, '\n', line_len))) {
                    *nl = 0;
                    if (strncmp(line, "expect ", 7) == 0) expect = atol(line + 7);
                    else if (strcmp(line, "quit") == 0) goto done;
                    size_t rest = line_len - (nl + 1 - line);
                    memmove(line, nl + 1, rest);
                    line_len = rest;
                }
                continue;
            }
            for (;;) {
                ssize_t got = read(c->fd, buf, sizeof buf);
                if (got > 0) {
                    received += got;
                    count(c, buf, got, t);
                    if (got < (ssize_t)sizeof buf) break;
                } else if (got == 0) {
                    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                    close(c->fd);
                    break;
                } else {
                    break;  /* EAGAIN */
                }
            }
        }
        if (expect >= 0 && complete_upto >= expect) {
            printf("{\"bytes\": %lld, \"last\": [", received);
            for (long k = reported; k < expect; k++) printf(k > reported ? ",%.6f" : "%.6f", last_at[k]);
            printf("]}\n");
            fflush(stdout);
            reported = expect;
            expect = -1;
        }
    }
done:
    for (long i = 0; i < clients; i++) close(conns[i].fd);
    return 0;
}
