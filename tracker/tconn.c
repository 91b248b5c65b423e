/* SPDX-License-Identifier: ISC */
/*
 * tconn: connection admission for the tracker's HTTP server (see tconn.h).
 *
 * Open connections are kept in a list in the order they were accepted.
 * Since every connection gets the same timeout, that is also the order of
 * their deadlines, so one timer, set for the oldest, serves them all.
 */
#include "tconn.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <netinet/in.h>

#include <event2/bufferevent.h>
#include <event2/listener.h>

#include "addrtab.h"
#include "ratelim.h"
#include "util.h"
#include "vcrypto.h"

struct conn {
	struct tconn *tc;
	struct evhttp_connection *evcon; /* evhttp's; it frees it, then calls on_close */
	struct addrtab_key addr;
	uint64_t deadline_ns; /* now_ns() clock */
	struct conn *prev, *next;
};

struct tconn {
	struct event_base *base;
	struct evconnlistener *lev; /* evhttp's; NULL once evhttp is being freed */
	struct tconn_config cfg;
	struct addrtab *per_addr; /* open connections per source address */
	struct conn *head, *tail; /* open connections, oldest first */
	unsigned nopen;
	struct bufferevent **pending; /* made by on_bev, not yet adopted (a reference each) */
	size_t npending, pending_cap;
	struct event *adopt_ev;    /* adopts the pending ones, in the same loop turn */
	struct event *deadline_ev; /* at the oldest connection's deadline */
	struct event *resume_ev;   /* re-enables accept after a failed accept() */
	int paused;                /* accept is disabled */
};

/* The listener's error callback gets evhttp's argument, not ours: one tconn per process. */
static struct tconn *the_tconn;

unsigned tconn_fd_budget(unsigned want)
{
	struct rlimit rl;
	rlim_t need = (rlim_t)want + TCONN_FD_RESERVE;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return want;
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need) {
		rlim_t to = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > need ? need : rl.rlim_max;

		if (to > rl.rlim_cur) {
			struct rlimit nrl = {to, rl.rlim_max};

			if (setrlimit(RLIMIT_NOFILE, &nrl) == 0)
				rl.rlim_cur = to;
		}
	}
	if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= need)
		return want;
	return rl.rlim_cur > 2 * TCONN_FD_RESERVE ? (unsigned)(rl.rlim_cur - TCONN_FD_RESERVE)
	                                          : (unsigned)(rl.rlim_cur / 2);
}

static void pause_accept(struct tconn *tc)
{
	if (tc->lev != NULL && !tc->paused) {
		evconnlistener_disable(tc->lev);
		tc->paused = 1;
	}
}

/* Accept again if it is paused and there is room (a connection closed, or the retry timer). */
static void maybe_resume(struct tconn *tc)
{
	if (tc->lev == NULL || !tc->paused || tc->nopen + tc->npending >= tc->cfg.max_conns)
		return;
	evconnlistener_enable(tc->lev);
	tc->paused = 0;
	event_del(tc->resume_ev);
}

static void schedule_deadline(struct tconn *tc)
{
	uint64_t now = now_ns(), us;
	struct timeval tv;

	if (tc->head == NULL)
		return;
	/* Rounded up, so that the timer never fires just before the deadline. */
	us = tc->head->deadline_ns > now ? (tc->head->deadline_ns - now + 999u) / 1000u : 0;
	tv.tv_sec = (time_t)(us / 1000000u);
	tv.tv_usec = (suseconds_t)(us % 1000000u);
	event_add(tc->deadline_ev, &tv);
}

/* Stop counting c, and free it. */
static void conn_forget(struct conn *c)
{
	struct tconn *tc = c->tc;

	if (c->prev)
		c->prev->next = c->next;
	else
		tc->head = c->next;
	if (c->next)
		c->next->prev = c->prev;
	else
		tc->tail = c->prev;
	addrtab_sub(tc->per_addr, &c->addr);
	tc->nopen--;
	free(c);
	maybe_resume(tc);
}

/* evhttp frees a connection (closed by either side, failed, or timed out idle). */
static void on_close(struct evhttp_connection *evcon, void *arg)
{
	(void)evcon;
	conn_forget(arg);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct tconn *tc = arg;
	uint64_t now = now_ns();
	char where[64];

	(void)fd;
	(void)what;
	while (tc->head != NULL && tc->head->deadline_ns <= now) {
		struct evhttp_connection *evcon = tc->head->evcon;

		addrtab_key_format(&tc->head->addr, where, sizeof(where));
		log_limited(LOG_LEVEL_INFO,
		            "closed a connection from %s: no complete request and reply within "
		            "%u s (--request-timeout)",
		            where, tc->cfg.timeout_s);
		/* Forgotten first, so that nothing depends on evhttp calling on_close. */
		evhttp_connection_set_closecb(evcon, NULL, NULL);
		conn_forget(tc->head);
		evhttp_connection_free(evcon);
	}
	schedule_deadline(tc);
}

/* The source address of a connected socket as an addrtab key; 0 or -1. */
static int peer_key(evutil_socket_t fd, struct addrtab_key *k)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

	if (getpeername(fd, (struct sockaddr *)&ss, &len) != 0)
		return -1;
	if (ss.ss_family == AF_INET) {
		addrtab_key(4, (const uint8_t *)&((struct sockaddr_in *)&ss)->sin_addr, k);
		return 0;
	}
	if (ss.ss_family == AF_INET6) {
		const uint8_t *ip = ((struct sockaddr_in6 *)&ss)->sin6_addr.s6_addr;

		if (memcmp(ip, mapped, sizeof(mapped)) == 0)
			addrtab_key(4, ip + 12, k);
		else
			addrtab_key(6, ip, k);
		return 0;
	}
	return -1;
}

/* Admit or drop one connection evhttp has just set up on bev. */
static void adopt_one(struct tconn *tc, struct bufferevent *bev)
{
	void *arg = NULL;
	struct evhttp_connection *evcon;
	evutil_socket_t fd = bufferevent_getfd(bev);
	struct addrtab_key k;
	struct conn *c;
	char where[64];
	unsigned n;

	bufferevent_getcb(bev, NULL, NULL, NULL, &arg);
	evcon = arg;
	if (evcon == NULL || fd < 0)
		return; /* evhttp has freed it already (it could not set it up) */
	if (peer_key(fd, &k) < 0) {
		evhttp_connection_free(evcon); /* reset by the client before we looked */
		return;
	}
	addrtab_key_format(&k, where, sizeof(where));
	n = addrtab_count(tc->per_addr, &k);
	if (n >= tc->cfg.max_per_addr || tc->nopen >= tc->cfg.max_conns) {
		if (n >= tc->cfg.max_per_addr)
			log_limited(LOG_LEVEL_WARN,
			            "refused a connection from %s: it has %u open already "
			            "(--max-connections-per-address)",
			            where, n);
		else
			log_limited(LOG_LEVEL_WARN,
			            "refused a connection from %s: %u connections open "
			            "(--max-connections)",
			            where, tc->nopen);
		evhttp_connection_free(evcon);
		return;
	}
	c = xcalloc(1, sizeof(*c));
	c->tc = tc;
	c->evcon = evcon;
	c->addr = k;
	c->deadline_ns = now_ns() + (uint64_t)tc->cfg.timeout_s * 1000000000u;
	c->prev = tc->tail;
	if (tc->tail)
		tc->tail->next = c;
	else
		tc->head = c;
	tc->tail = c;
	tc->nopen++;
	addrtab_add(tc->per_addr, &k);
	evhttp_connection_set_closecb(evcon, on_close, c);
	if (c == tc->head)
		schedule_deadline(tc);
}

static void on_adopt(evutil_socket_t fd, short what, void *arg)
{
	struct tconn *tc = arg;

	(void)fd;
	(void)what;
	for (size_t i = 0; i < tc->npending; i++) {
		struct bufferevent *bev = tc->pending[i];

		tc->pending[i] = NULL;
		adopt_one(tc, bev);
		bufferevent_decref(bev);
	}
	tc->npending = 0;
	maybe_resume(tc);
}

/* evhttp accepted a connection and wants its bufferevent (evhttp_set_bevcb). */
static struct bufferevent *on_bev(struct event_base *base, void *arg)
{
	struct tconn *tc = arg;
	/* Options 0, as evhttp's own: evhttp closes the socket when it frees the connection. */
	struct bufferevent *bev = bufferevent_socket_new(base, -1, 0);

	if (bev == NULL)
		fatal("out of memory");
	/* Our reference keeps it valid until on_adopt, even if evhttp gives up on it. */
	bufferevent_incref(bev);
	tc->pending = xgrow(tc->pending, &tc->pending_cap, tc->npending, sizeof(*tc->pending), 16);
	tc->pending[tc->npending++] = bev;
	event_active(tc->adopt_ev, EV_TIMEOUT, 1);
	/* At the cap: the listener stops accepting after this one (it checks). */
	if (tc->nopen + tc->npending >= tc->cfg.max_conns)
		pause_accept(tc);
	return bev;
}

static void on_resume(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	maybe_resume(arg);
}

/* accept() failed with an error that retrying at once will not cure. */
static void on_accept_error(struct evconnlistener *lev, void *arg)
{
	struct tconn *tc = the_tconn;
	int err = EVUTIL_SOCKET_ERROR();
	struct timeval tv = {0, TCONN_ACCEPT_RETRY_MS * 1000};

	(void)lev;
	(void)arg;
	if (tc == NULL || tc->lev == NULL)
		return;
	log_limited(LOG_LEVEL_WARN,
	            "cannot accept connections: %s (%u open); pausing accept for %d ms or until "
	            "one closes",
	            strerror(err), tc->nopen, TCONN_ACCEPT_RETRY_MS);
	pause_accept(tc);
	event_add(tc->resume_ev, &tv);
}

struct tconn *tconn_new(struct event_base *base, struct evhttp *http,
                        struct evhttp_bound_socket *bound, const struct tconn_config *cfg)
{
	struct tconn *tc = xcalloc(1, sizeof(*tc));
	uint64_t seed;

	vcrypto_random(&seed, sizeof(seed));
	tc->base = base;
	tc->cfg = *cfg;
	tc->per_addr = addrtab_new(cfg->max_conns / 4, seed);
	tc->lev = evhttp_bound_socket_get_listener(bound);
	tc->adopt_ev = event_new(base, -1, 0, on_adopt, tc);
	tc->deadline_ev = evtimer_new(base, on_deadline, tc);
	tc->resume_ev = evtimer_new(base, on_resume, tc);
	if (tc->adopt_ev == NULL || tc->deadline_ev == NULL || tc->resume_ev == NULL)
		fatal("out of memory");
	the_tconn = tc;
	evhttp_set_bevcb(http, on_bev, tc);
	evconnlistener_set_error_cb(tc->lev, on_accept_error);
	return tc;
}

unsigned tconn_open(const struct tconn *tc)
{
	return tc->nopen;
}

void tconn_closing(struct tconn *tc)
{
	if (tc != NULL)
		tc->lev = NULL;
}

void tconn_free(struct tconn *tc)
{
	if (tc == NULL)
		return;
	/* evhttp_free closed every connection (on_close ran); drop any not yet adopted. */
	for (size_t i = 0; i < tc->npending; i++)
		bufferevent_decref(tc->pending[i]);
	free(tc->pending);
	event_free(tc->adopt_ev);
	event_free(tc->deadline_ev);
	event_free(tc->resume_ev);
	addrtab_free(tc->per_addr);
	if (the_tconn == tc)
		the_tconn = NULL;
	free(tc);
}
