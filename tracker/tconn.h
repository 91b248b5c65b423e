/* SPDX-License-Identifier: ISC */
/*
 * tconn: which connections p2pvbd-tracker's HTTP server (libevent's evhttp)
 * takes, and for how long (DESIGN.md rule 9: nothing before a complete
 * request can exhaust anything).
 *
 *  - At most max_conns connections are open at once; at the cap, accept()
 *    pauses (the kernel's backlog holds newcomers) until one closes.
 *  - At most max_per_addr of them come from one source address (an IPv6
 *    /64); more are closed as soon as they are accepted.
 *  - Each connection is closed timeout_s seconds after it was accepted,
 *    whatever it did meanwhile: a client that sends its request one byte at
 *    a time (which restarts evhttp's own idle timeout on every byte) is
 *    dropped just like an idle one. A tracker answers in microseconds, so
 *    only the slow and the idle ever reach the deadline.
 *  - When accept() fails for lack of descriptors or memory (EMFILE, ENFILE,
 *    ENOBUFS, ENOMEM), accepting pauses for TCONN_ACCEPT_RETRY_MS or until
 *    a connection closes, instead of retrying (and logging) in a loop.
 *
 * How: libevent 2.1 has no hook for a new server connection (2.2 has
 * evhttp_set_newreqcb). evhttp_set_bevcb lets us create each connection's
 * bufferevent; right after evhttp has set it up (in the same loop turn) we
 * read its socket's address and learn the connection from the callback
 * argument evhttp gave the bufferevent, then set a close callback to count
 * it down. t_tracker_limits.sh checks that this holds.
 */
#ifndef P2PVBD_TCONN_H
#define P2PVBD_TCONN_H

#include <event2/event.h>
#include <event2/http.h>

/*
 * Connections at once, by default (fewer if the descriptor limit is lower):
 * far more than a tracker needs (each lives milliseconds), and about 32 MB
 * of buffers at most.
 */
#define TCONN_MAX_DEFAULT 16384
/*
 * Connections from one address: a client makes one at a time, a NAT a few;
 * an attacker with one address cannot hold more than this.
 */
#define TCONN_PER_ADDR_DEFAULT 32
/* Seconds from accept until a connection is closed, by default (--request-timeout). */
#define TCONN_TIMEOUT_DEFAULT_S 10
/* Descriptors kept for everything but connections: stdio, epoll, the listener, signals. */
#define TCONN_FD_RESERVE 32
/* How long accept pauses after it failed for lack of descriptors or memory. */
#define TCONN_ACCEPT_RETRY_MS 250

struct tconn_config {
	unsigned max_conns;    /* connections open at once */
	unsigned max_per_addr; /* of them from one source address (IPv6: /64) */
	unsigned timeout_s;    /* a connection is closed this long after it was accepted */
};

struct tconn;

/*
 * Raise the soft RLIMIT_NOFILE towards the hard one, as far as want
 * connections need (plus TCONN_FD_RESERVE), and return how many
 * connections the limit allows.
 */
unsigned tconn_fd_budget(unsigned want);

/*
 * Take charge of the connections of http (evhttp_set_bevcb) and of the
 * listener of bound (its accept errors). One per process. Aborts on
 * out-of-memory. Free with tconn_free after evhttp_free, and call
 * tconn_closing before evhttp_free.
 */
struct tconn *tconn_new(struct event_base *base, struct evhttp *http,
                        struct evhttp_bound_socket *bound, const struct tconn_config *cfg);
/* Connections open now. */
unsigned tconn_open(const struct tconn *tc);
/* evhttp is about to be freed (its listener first): stop touching the listener. */
void tconn_closing(struct tconn *tc);
void tconn_free(struct tconn *tc);

#endif
