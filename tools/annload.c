/* SPDX-License-Identifier: ISC */
/*
 * annload: a load generator for BitTorrent HTTP trackers, used by
 * tools/bench_tracker.sh to compare p2pvbd-tracker with opentracker.
 *
 * It keeps CONNS announces in flight against a loopback HOST:PORT, each on
 * its own TCP connection (HTTP/1.0, "Connection: close"), so that a tracker
 * that keeps connections alive and one that closes after every reply are
 * measured the same way. Announces pick one of SWARMS info hashes and one of
 * PEERS_PER_SWARM peers of it; hashes and the request sequence come from
 * fixed seeds, so every tracker sees the same hashes and the same mix.
 *
 * A reply counts as an announce when it is HTTP 200, its body is a complete
 * bencoded dictionary (starts with 'd', ends with 'e', matches
 * Content-Length when the server sends one) and holds no "failure reason".
 * Anything else, a refused connection, or no complete reply within
 * REQ_TIMEOUT_MS, is an error.
 *
 * Ephemeral ports: every socket has SO_LINGER 0 and is closed only after the
 * server's FIN (or on error), so the close sends RST and neither side keeps a
 * TIME_WAIT entry; the load cannot run out of ports however long it runs.
 * Should connect() still find no free port (EADDRNOTAVAIL), the slot waits
 * PORT_BACKOFF_MS and tries again; such retries are counted, not errors.
 *
 * Single-threaded: one epoll loop, one state machine per connection slot.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memmem, strncasecmp */
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define EXIT_USAGE 2

#define HASH_LEN 20
/* An announce request line and headers: about 300 bytes with every binary byte encoded. */
#define REQ_MAX 512
/*
 * One reply: status line, a few headers and a dictionary with at most
 * NUMWANT peers (50 x 18 bytes as IPv6). A reply larger than this is not
 * an announce reply and counts as an error.
 */
#define RESP_MAX 8192
/* Peers asked for per announce, as a typical client does. */
#define NUMWANT 50
/* A request without a complete reply after this long is stuck: closed, counted as an error. */
#define REQ_TIMEOUT_MS 5000
/* How long a slot waits when the kernel had no ephemeral port (EADDRNOTAVAIL). */
#define PORT_BACKOFF_MS 1
/* How long a slot waits after a refused or failed connection, so a dead server is not spun on. */
#define ERROR_BACKOFF_MS 10
/* Replies before this are not counted: the server's tables and caches fill up first. */
#define WARMUP_MS 1000
/* How often slot deadlines are scanned; a timeout fires at most this late. */
#define SCAN_MS 50
/* How long the initial probe waits for the server to accept a connection. */
#define PROBE_TIMEOUT_MS 2000
/* Events taken from epoll per call. */
#define EVENTS_MAX 256
/* Option bounds: far above what a two-core benchmark uses, low enough to stay cheap. */
#define MAX_CONNS   10000
#define MAX_SECONDS 3600
#define MAX_SWARMS  1000000
/* Ports are 1024 + (offset + peer) mod 64000, unique within a swarm only up to 64000 peers. */
#define MAX_PEERS 64000
/* One byte per peer remembers whether it sent event=started: at most 16 MiB. */
#define MAX_PEER_SLOTS (16u * 1024 * 1024)
/* Seeds of the info hashes and of the request sequence: fixed so runs are comparable. */
#define HASH_SEED 0x616e6e6c6f616431ull /* "annload1" */
#define REQ_SEED  0x9e3779b97f4a7c15ull
/* peer_id prefix in the Azureus style most clients use. */
#define PEER_ID_PREFIX "-AL0001-"

enum conn_state {
	CONN_IDLE = 0,    /* no socket; start a request now */
	CONN_BACKOFF = 1, /* no socket; start a request at deadline */
	CONN_SENDING = 2, /* connect() issued; writing the request once the socket takes it */
	CONN_READING = 3, /* request written, reading until the server closes */
};

/* One in-flight request: a slot reused for the next request when this one ends. */
struct conn {
	int fd;
	enum conn_state state;
	uint64_t deadline_ms; /* timeout (with a socket) or end of back-off (without) */
	size_t req_len, req_off, resp_len;
	char req[REQ_MAX];
	char resp[RESP_MAX];
};

struct load {
	struct sockaddr_in addr;
	char hostport[64]; /* for the Host header and messages */
	int epfd;
	unsigned nconn, nswarm, npeer, seconds;
	uint8_t (*hash)[HASH_LEN]; /* owned, nswarm entries */
	uint8_t *started;          /* owned, nswarm * npeer flags */
	uint64_t rng;
	uint64_t measure_start_ms, measure_end_ms;
	uint64_t ok;           /* good replies completed inside the measurement window */
	uint64_t errors;       /* failed requests over the whole run, warm-up included */
	uint64_t timeouts;     /* of those, requests that hit REQ_TIMEOUT_MS */
	uint64_t port_retries; /* connect() calls that found no ephemeral port */
	struct conn *conn;     /* owned, nconn slots */
};

static const char usage_text[] =
    "usage: annload [-c CONNS] [-d SECONDS] [-s SWARMS] [-p PEERS_PER_SWARM] HOST:PORT\n"
    "       annload [-s SWARMS] --print-hashes\n"
    "\n"
    "Keeps CONNS HTTP/1.0 announces in flight against a BitTorrent tracker on a\n"
    "loopback address, one TCP connection per announce, and prints one JSON line:\n"
    "  {\"announces_per_s\": X, \"errors\": N, \"conns\": C, \"seconds\": S, ...}\n"
    "announces_per_s counts replies that are HTTP 200 with a bencoded dictionary\n"
    "without \"failure reason\", completed in the SECONDS after a 1 s warm-up.\n"
    "errors counts every other outcome (bad reply, refused connection, no reply\n"
    "within 5 s) over the whole run, warm-up included.\n"
    "Also printed: timeouts (of the errors), port_retries (connect() found no\n"
    "free ephemeral port and was retried 1 ms later), swarms, peers_per_swarm and\n"
    "cpu_s (annload's own CPU time).\n"
    "\n"
    "options:\n"
    "  -c, --conns N        concurrent requests (default 64, at most 10000)\n"
    "  -d, --duration SECS  measurement time after the warm-up (default 5)\n"
    "  -s, --swarms N       distinct info hashes (default 1000)\n"
    "  -p, --peers N        peers per swarm (default 100, at most 64000)\n"
    "      --print-hashes   print the SWARMS info hashes (40 hex digits a line) and exit\n"
    "  -h, --help           this text\n"
    "\n"
    "The hashes and the request sequence use fixed seeds, so every run sends the\n"
    "same announces. Exit codes: 0 success, 1 no connection or no good reply,\n"
    "2 usage error.\n";

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t splitmix64(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* The nswarm info hashes: one splitmix64 stream, so a smaller SWARMS is a prefix of a larger. */
static void hashes_make(uint8_t (*hash)[HASH_LEN], unsigned nswarm)
{
	uint64_t s = HASH_SEED;
	uint8_t word[8];
	size_t have = 0;

	for (unsigned i = 0; i < nswarm; i++) {
		for (size_t k = 0; k < HASH_LEN; k++) {
			if (have == 0) {
				uint64_t v = splitmix64(&s);

				memcpy(word, &v, sizeof(word));
				have = sizeof(word);
			}
			hash[i][k] = word[sizeof(word) - have--];
		}
	}
}

/* Percent-encode n bytes into out (room for 3n+1); unreserved characters (RFC 3986) stay. */
static size_t url_encode(const uint8_t *in, size_t n, char *out)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		uint8_t c = in[i];

		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		    c == '-' || c == '.' || c == '_' || c == '~') {
			out[o++] = (char)c;
		} else {
			out[o++] = '%';
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 15];
		}
	}
	out[o] = '\0';
	return o;
}

/*
 * Write the next announce of the fixed sequence into c->req. A peer is
 * identified by (swarm, index): its peer_id, port and left never change, and
 * its first announce carries event=started.
 */
static void request_make(struct load *l, struct conn *c)
{
	unsigned swarm = (unsigned)(splitmix64(&l->rng) % l->nswarm);
	unsigned peer = (unsigned)(splitmix64(&l->rng) % l->npeer);
	size_t slot = (size_t)swarm * l->npeer + peer;
	uint8_t id[HASH_LEN];
	char ih_enc[3 * HASH_LEN + 1], id_enc[3 * HASH_LEN + 1];
	unsigned port = 1024 + (swarm * 7919u + peer) % 64000u;
	/* One peer in eight is a seed: trackers that treat seeds differently do that work too. */
	uint64_t left = peer % 8 == 0 ? 0 : 1073741824ull - peer;
	int first = !l->started[slot], n;

	memcpy(id, PEER_ID_PREFIX, 8);
	for (int k = 0; k < 4; k++) {
		id[8 + k] = (uint8_t)(swarm >> (24 - 8 * k));
		id[12 + k] = (uint8_t)(peer >> (24 - 8 * k));
		id[16 + k] = (uint8_t)((swarm * 31u + peer) >> (24 - 8 * k));
	}
	l->started[slot] = 1;
	url_encode(l->hash[swarm], HASH_LEN, ih_enc);
	url_encode(id, HASH_LEN, id_enc);
	n = snprintf(c->req, sizeof(c->req),
	             "GET /announce?info_hash=%s&peer_id=%s&port=%u&uploaded=0&downloaded=0"
	             "&left=%" PRIu64 "&compact=1%s&numwant=%d HTTP/1.0\r\n"
	             "Host: %s\r\nConnection: close\r\n\r\n",
	             ih_enc, id_enc, port, left, first ? "&event=started" : "", NUMWANT,
	             l->hostport);
	if (n < 0 || (size_t)n >= sizeof(c->req)) {
		fprintf(stderr, "annload: request does not fit its buffer\n");
		abort();
	}
	c->req_len = (size_t)n;
	c->req_off = 0;
	c->resp_len = 0;
}

/* Case-insensitive search for a header name at the start of a line in the header block. */
static const char *header_find(const char *h, size_t hlen, const char *name)
{
	size_t nlen = strlen(name);

	for (const char *p = h; p != NULL && p < h + hlen;) {
		const char *eol = memchr(p, '\n', (size_t)(h + hlen - p));

		if ((size_t)(h + hlen - p) > nlen && strncasecmp(p, name, nlen) == 0 &&
		    p[nlen] == ':')
			return p + nlen + 1;
		p = eol ? eol + 1 : NULL;
	}
	return NULL;
}

/* 1 when resp[0..len) is a successful announce reply (see the top of this file), else 0. */
static int reply_ok(const char *resp, size_t len)
{
	const char *end = memmem(resp, len, "\r\n\r\n", 4), *body, *cl;
	size_t hlen, blen;

	if (len < 12 || memcmp(resp, "HTTP/1.", 7) != 0 || memcmp(resp + 8, " 200", 4) != 0)
		return 0;
	if (end == NULL)
		return 0;
	hlen = (size_t)(end - resp) + 2;
	body = end + 4;
	blen = len - (size_t)(body - resp);
	cl = header_find(resp, hlen, "Content-Length");
	if (cl != NULL) {
		char *stop;
		unsigned long v = strtoul(cl, &stop, 10);

		if (stop == cl || v != blen)
			return 0;
	}
	if (blen < 2 || body[0] != 'd' || body[blen - 1] != 'e')
		return 0;
	return memmem(body, blen, "failure reason", 14) == NULL;
}

static void conn_close(struct conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
}

/* The slot failed: count it, close, and start again after back-off ms. */
static void conn_fail(struct load *l, struct conn *c, uint64_t now, unsigned backoff)
{
	l->errors++;
	conn_close(c);
	c->state = CONN_BACKOFF;
	c->deadline_ms = now + backoff;
}

static void conn_start(struct load *l, struct conn *c, uint64_t now);

/* The server closed the connection: judge the reply, then start the slot's next request. */
static void conn_done(struct load *l, struct conn *c, uint64_t now)
{
	conn_close(c);
	if (!reply_ok(c->resp, c->resp_len)) {
		l->errors++;
	} else if (now >= l->measure_start_ms && now < l->measure_end_ms) {
		l->ok++;
	}
	c->state = CONN_IDLE;
	conn_start(l, c, now);
}

/*
 * Drive slot c as far as its socket allows (edge-triggered: until EAGAIN).
 * events are the epoll events that woke it, 0 when called directly.
 *
 * System calls are what limits a load generator that opens a connection
 * per request, so each one saved counts: the request is sent without first
 * asking SO_ERROR (send reports a failed connect itself, and says EAGAIN
 * while the handshake is under way); nothing is read before epoll reports
 * data; and when epoll already reported the server's FIN (EPOLLRDHUP), one
 * recv that does not fill the buffer has read the whole reply, so the recv
 * that would return 0 is skipped.
 */
static void conn_step(struct load *l, struct conn *c, uint64_t now, uint32_t events)
{
	for (;;) {
		switch (c->state) {
		case CONN_IDLE:
		case CONN_BACKOFF:
			return;
		case CONN_SENDING: {
			ssize_t n =
			    send(c->fd, c->req + c->req_off, c->req_len - c->req_off, MSG_NOSIGNAL);

			if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
				return; /* still connecting, or a full buffer: EPOLLOUT follows */
			if (n <= 0) {
				conn_fail(l, c, now, ERROR_BACKOFF_MS);
				return;
			}
			c->req_off += (size_t)n;
			if (c->req_off < c->req_len)
				break;
			/* No reply can be there yet; its arrival raises EPOLLIN. */
			c->state = CONN_READING;
			return;
		}
		case CONN_READING: {
			size_t room = sizeof(c->resp) - c->resp_len;
			ssize_t n;

			if (room == 0) {
				conn_fail(l, c, now, 0); /* reply too large */
				return;
			}
			if (!(events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)))
				return; /* the EPOLLOUT of the finished handshake */
			n = recv(c->fd, c->resp + c->resp_len, room, 0);
			if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
				return;
			if (n < 0 && errno != ECONNRESET) {
				conn_fail(l, c, now, 0);
				return;
			}
			if (n <= 0) {
				/* EOF, or a reset after the reply: the reply is judged as it is. */
				conn_done(l, c, now);
				return;
			}
			c->resp_len += (size_t)n;
			if ((events & (EPOLLRDHUP | EPOLLHUP)) && (size_t)n < room) {
				/* The FIN was queued behind all the data, and recv took it all. */
				conn_done(l, c, now);
				return;
			}
			break;
		}
		}
	}
}

/* Open a socket for slot c and start its next request. */
static void conn_start(struct load *l, struct conn *c, uint64_t now)
{
	static const struct linger lin = {.l_onoff = 1, .l_linger = 0};
	struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET};

	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		fprintf(stderr, "annload: socket: %s\n", strerror(errno));
		conn_fail(l, c, now, ERROR_BACKOFF_MS);
		return;
	}
	/* RST on close: no TIME_WAIT, so ephemeral ports are never used up (see the top). */
	setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lin, sizeof(lin));
	request_make(l, c);
	c->deadline_ms = now + REQ_TIMEOUT_MS;
	c->state = CONN_SENDING;
	ev.data.u32 = (uint32_t)(c - l->conn);
	if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0) {
		fprintf(stderr, "annload: epoll_ctl: %s\n", strerror(errno));
		exit(1);
	}
	if (connect(c->fd, (const struct sockaddr *)&l->addr, sizeof(l->addr)) < 0 &&
	    errno != EINPROGRESS) {
		if (errno == EADDRNOTAVAIL) {
			l->port_retries++;
			conn_close(c);
			c->state = CONN_BACKOFF;
			c->deadline_ms = now + PORT_BACKOFF_MS;
		} else {
			conn_fail(l, c, now, ERROR_BACKOFF_MS);
		}
		return;
	}
	/* On loopback the handshake has often finished already: try to send now. */
	conn_step(l, c, now, 0);
}

/* Time out stuck requests and restart slots whose back-off is over. */
static void conns_scan(struct load *l, uint64_t now)
{
	for (unsigned i = 0; i < l->nconn; i++) {
		struct conn *c = &l->conn[i];

		if (c->state == CONN_IDLE || now < c->deadline_ms)
			continue;
		if (c->state != CONN_BACKOFF) {
			/* Stuck: an error, and the slot starts over at once. */
			l->timeouts++;
			conn_fail(l, c, now, 0);
		}
		conn_start(l, c, now);
	}
}

/* One blocking-with-timeout connection to check that anyone listens; 0 or -1 with a message. */
static int probe(const struct load *l)
{
	struct pollfd pfd;
	int fd, err = 0, rc = -1;
	socklen_t elen = sizeof(err);

	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		fprintf(stderr, "annload: socket: %s\n", strerror(errno));
		return -1;
	}
	if (connect(fd, (const struct sockaddr *)&l->addr, sizeof(l->addr)) < 0) {
		if (errno != EINPROGRESS) {
			err = errno;
			goto out;
		}
		pfd.fd = fd;
		pfd.events = POLLOUT;
		if (poll(&pfd, 1, PROBE_TIMEOUT_MS) != 1) {
			err = ETIMEDOUT;
			goto out;
		}
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0)
			err = errno;
		if (err != 0)
			goto out;
	}
	rc = 0;
out:
	if (rc < 0)
		fprintf(stderr, "annload: cannot connect to %s: %s\n", l->hostport, strerror(err));
	close(fd);
	return rc;
}

/* "A.B.C.D:PORT" on 127.0.0.0/8 into l->addr; 0 or -1. Only loopback: this is a local benchmark. */
static int parse_target(struct load *l, const char *s)
{
	const char *colon = strrchr(s, ':');
	char host[INET_ADDRSTRLEN];
	char *end;
	unsigned long port;

	if (colon == NULL || (size_t)(colon - s) >= sizeof(host) || colon[1] < '0' ||
	    colon[1] > '9')
		return -1;
	memcpy(host, s, (size_t)(colon - s));
	host[colon - s] = '\0';
	errno = 0;
	port = strtoul(colon + 1, &end, 10);
	if (errno != 0 || *end != '\0' || port == 0 || port > 65535)
		return -1;
	memset(&l->addr, 0, sizeof(l->addr));
	l->addr.sin_family = AF_INET;
	l->addr.sin_port = htons((uint16_t)port);
	if (inet_pton(AF_INET, host, &l->addr.sin_addr) != 1)
		return -1;
	if ((ntohl(l->addr.sin_addr.s_addr) >> 24) != 127) {
		fprintf(stderr, "annload: %s is not a loopback address (127.0.0.0/8)\n", host);
		return -1;
	}
	snprintf(l->hostport, sizeof(l->hostport), "%s:%lu", host, port);
	return 0;
}

static int parse_uint(const char *s, unsigned min, unsigned max, unsigned *out)
{
	char *end;
	unsigned long v;

	if (s[0] < '0' || s[0] > '9')
		return -1;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < min || v > max)
		return -1;
	*out = (unsigned)v;
	return 0;
}

/* Run the load until the measurement window closes. */
static void run(struct load *l)
{
	struct epoll_event ev[EVENTS_MAX];
	uint64_t now = mono_ms(), next_scan = now + SCAN_MS;

	l->measure_start_ms = now + WARMUP_MS;
	l->measure_end_ms = l->measure_start_ms + (uint64_t)l->seconds * 1000;
	for (unsigned i = 0; i < l->nconn; i++)
		conn_start(l, &l->conn[i], now);
	while (now < l->measure_end_ms) {
		uint64_t wake = next_scan < l->measure_end_ms ? next_scan : l->measure_end_ms;
		int n = epoll_wait(l->epfd, ev, EVENTS_MAX, wake > now ? (int)(wake - now) : 0);

		if (n < 0 && errno != EINTR) {
			fprintf(stderr, "annload: epoll_wait: %s\n", strerror(errno));
			exit(1);
		}
		now = mono_ms();
		for (int i = 0; i < n; i++) {
			struct conn *c = &l->conn[ev[i].data.u32];

			conn_step(l, c, now, ev[i].events);
		}
		if (now >= next_scan) {
			conns_scan(l, now);
			next_scan = now + SCAN_MS;
		}
	}
}

int main(int argc, char **argv)
{
	enum { OPT_PRINT_HASHES = 256 };
	static const struct option opts[] = {
	    {"conns", required_argument, NULL, 'c'},
	    {"duration", required_argument, NULL, 'd'},
	    {"swarms", required_argument, NULL, 's'},
	    {"peers", required_argument, NULL, 'p'},
	    {"print-hashes", no_argument, NULL, OPT_PRINT_HASHES},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	struct load l = {
	    .epfd = -1, .nconn = 64, .nswarm = 1000, .npeer = 100, .seconds = 5, .rng = REQ_SEED};
	int print_hashes = 0, opt, rc = 1;
	struct rlimit rl;
	struct rusage ru;
	double cpu_s;

	while ((opt = getopt_long(argc, argv, "c:d:s:p:h", opts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			if (parse_uint(optarg, 1, MAX_CONNS, &l.nconn) < 0)
				goto usage;
			break;
		case 'd':
			if (parse_uint(optarg, 1, MAX_SECONDS, &l.seconds) < 0)
				goto usage;
			break;
		case 's':
			if (parse_uint(optarg, 1, MAX_SWARMS, &l.nswarm) < 0)
				goto usage;
			break;
		case 'p':
			if (parse_uint(optarg, 1, MAX_PEERS, &l.npeer) < 0)
				goto usage;
			break;
		case OPT_PRINT_HASHES:
			print_hashes = 1;
			break;
		case 'h':
			fputs(usage_text, stdout);
			return 0;
		default:
			goto usage;
		}
	}
	if ((uint64_t)l.nswarm * l.npeer > MAX_PEER_SLOTS) {
		fprintf(stderr, "annload: SWARMS x PEERS_PER_SWARM is at most %u\n",
		        MAX_PEER_SLOTS);
		return EXIT_USAGE;
	}
	l.hash = calloc(l.nswarm, sizeof(*l.hash));
	if (l.hash == NULL) {
		fprintf(stderr, "annload: out of memory\n");
		return 1;
	}
	hashes_make(l.hash, l.nswarm);
	if (print_hashes) {
		if (optind != argc)
			goto usage;
		for (unsigned i = 0; i < l.nswarm; i++) {
			for (int k = 0; k < HASH_LEN; k++)
				printf("%02x", l.hash[i][k]);
			putchar('\n');
		}
		free(l.hash);
		return fflush(stdout) == 0 ? 0 : 1;
	}
	if (optind + 1 != argc || parse_target(&l, argv[optind]) < 0)
		goto usage;

	/* Every slot holds one socket; leave room for stdio and epoll. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
	    rl.rlim_cur < (rlim_t)l.nconn + 16) {
		fprintf(stderr, "annload: -c %u needs %u file descriptors; the limit is %llu\n",
		        l.nconn, l.nconn + 16, (unsigned long long)rl.rlim_cur);
		goto out;
	}
	signal(SIGPIPE, SIG_IGN);
	if (probe(&l) < 0)
		goto out;
	l.started = calloc((size_t)l.nswarm * l.npeer, 1);
	l.conn = calloc(l.nconn, sizeof(*l.conn));
	if (l.started == NULL || l.conn == NULL) {
		fprintf(stderr, "annload: out of memory\n");
		goto out;
	}
	for (unsigned i = 0; i < l.nconn; i++)
		l.conn[i].fd = -1;
	l.epfd = epoll_create1(EPOLL_CLOEXEC);
	if (l.epfd < 0) {
		fprintf(stderr, "annload: epoll_create1: %s\n", strerror(errno));
		goto out;
	}

	run(&l);

	/* Our own CPU use, so the caller can tell a busy load generator from a slow server. */
	getrusage(RUSAGE_SELF, &ru);
	cpu_s = (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
	        (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
	printf("{\"announces_per_s\": %.1f, \"errors\": %" PRIu64 ", \"conns\": %u, "
	       "\"seconds\": %u, \"timeouts\": %" PRIu64 ", \"port_retries\": %" PRIu64
	       ", \"swarms\": %u, \"peers_per_swarm\": %u, \"cpu_s\": %.2f}\n",
	       (double)l.ok / l.seconds, l.errors, l.nconn, l.seconds, l.timeouts, l.port_retries,
	       l.nswarm, l.npeer, cpu_s);
	fflush(stdout);
	if (l.ok == 0) {
		fprintf(stderr, "annload: no announce to %s succeeded (%" PRIu64 " errors)\n",
		        l.hostport, l.errors);
		goto out;
	}
	rc = 0;
out:
	if (l.conn != NULL)
		for (unsigned i = 0; i < l.nconn; i++)
			conn_close(&l.conn[i]);
	if (l.epfd >= 0)
		close(l.epfd);
	free(l.conn);
	free(l.started);
	free(l.hash);
	return rc;
usage:
	fputs(usage_text, stderr);
	free(l.hash);
	return EXIT_USAGE;
}
