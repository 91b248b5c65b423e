/* SPDX-License-Identifier: ISC */
/*
 * netio: see netio.h.
 */
#include "netio.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event_struct.h>

#include "util.h"

/* One recv() at most this large: a few frames, into one buffer extent. */
#define NETIO_GULP (256u * 1024u)
/* Gulps per wake-up, so that one busy connection cannot starve the others. */
#define NETIO_GULPS_PER_WAKE 8

static void netio_update(struct netio_reader *r)
{
	int want = !r->paused && !r->full;

	if (want)
		event_add(r->ev, r->has_timeout ? &r->timeout : NULL);
	else
		event_del(r->ev);
}

static void netio_cb(evutil_socket_t fd, short what, void *arg)
{
	struct netio_reader *r = arg;
	size_t got = 0;
	int err = -1; /* -1: still open */

	if (what & EV_TIMEOUT) {
		event_del(r->ev);
		r->on_end(r->arg, ETIMEDOUT);
		return;
	}
	for (int i = 0; i < NETIO_GULPS_PER_WAKE && evbuffer_get_length(r->in) < r->high; i++) {
		struct evbuffer_iovec v;
		ssize_t n;

		if (evbuffer_reserve_space(r->in, NETIO_GULP, &v, 1) < 1)
			fatal("netio: cannot reserve input space");
		n = recv(fd, v.iov_base, v.iov_len < NETIO_GULP ? v.iov_len : NETIO_GULP,
		         MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n <= 0) {
			err = n == 0 ? 0 : errno;
			break;
		}
		v.iov_len = (size_t)n;
		evbuffer_commit_space(r->in, &v, 1);
		got += (size_t)n;
		if ((size_t)n < NETIO_GULP)
			break; /* drained */
	}
	if (evbuffer_get_length(r->in) >= r->high && !r->full) {
		r->full = 1;
		netio_update(r);
	}
	if (got > 0)
		r->on_data(r->arg);
	/* on_data may have freed the reader's owner: only touch r if not ended. */
	if (err >= 0) {
		event_del(r->ev);
		r->on_end(r->arg, err);
	}
}

int netio_reader_init(struct netio_reader *r, struct event_base *base, int fd, size_t high,
                      const struct timeval *timeout, void (*on_data)(void *),
                      void (*on_end)(void *, int), void *arg)
{
	memset(r, 0, sizeof(*r));
	r->in = evbuffer_new();
	r->ev = event_new(base, fd, EV_READ | EV_PERSIST, netio_cb, r);
	if (r->in == NULL || r->ev == NULL) {
		netio_reader_free(r);
		return -1;
	}
	r->high = high;
	if (timeout != NULL) {
		r->timeout = *timeout;
		r->has_timeout = 1;
	}
	r->on_data = on_data;
	r->on_end = on_end;
	r->arg = arg;
	netio_update(r);
	return 0;
}

void netio_reader_free(struct netio_reader *r)
{
	if (r->ev != NULL)
		event_free(r->ev);
	if (r->in != NULL)
		evbuffer_free(r->in);
	r->ev = NULL;
	r->in = NULL;
}

void netio_reader_pause(struct netio_reader *r)
{
	r->paused = 1;
	if (r->ev)
		netio_update(r);
}

void netio_reader_resume(struct netio_reader *r)
{
	r->paused = 0;
	if (r->ev)
		netio_update(r);
}

void netio_reader_consumed(struct netio_reader *r)
{
	if (r->full && evbuffer_get_length(r->in) < r->high) {
		r->full = 0;
		if (r->ev)
			netio_update(r);
	}
}

void netio_reader_set_high(struct netio_reader *r, size_t high)
{
	r->high = high;
	if (r->in != NULL)
		netio_reader_consumed(r);
}

/*
 * Lingering closes in progress, in fixed slots: nothing is allocated, so a
 * process that exits while one lingers leaks nothing, and descriptors cannot
 * pile up.
 */
static struct linger_close {
	struct event ev;
	int fd; /* -1: free slot */
	uint64_t deadline_ns;
} lingers[NETIO_LINGER_MAX];
static int lingering;
static int lingers_ready;

int netio_lingering(void)
{
	return lingering;
}

static void linger_cb(evutil_socket_t fd, short what, void *arg)
{
	struct linger_close *l = arg;
	char buf[16384];
	ssize_t n;

	if ((what & EV_READ) && now_ns() < l->deadline_ns) {
		n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n > 0 || (n < 0 && (errno == EAGAIN || errno == EINTR)))
			return; /* discarded; wait for the end */
	}
	/* EOF, an error or the time is up: now closing sends no reset. */
	event_del(&l->ev);
	close(l->fd);
	l->fd = -1;
	lingering--;
}

void netio_linger_close(struct event_base *base, int fd)
{
	struct timeval tv = {NETIO_LINGER_MS / 1000, (NETIO_LINGER_MS % 1000) * 1000};
	struct linger_close *l = NULL;
	int dfd;

	if (fd < 0)
		return;
	shutdown(fd, SHUT_WR);
	if (!lingers_ready) {
		for (int i = 0; i < NETIO_LINGER_MAX; i++)
			lingers[i].fd = -1;
		lingers_ready = 1;
	}
	for (int i = 0; i < NETIO_LINGER_MAX && l == NULL; i++)
		if (lingers[i].fd < 0)
			l = &lingers[i];
	if (l == NULL || (dfd = dup(fd)) < 0)
		return;
	l->fd = dfd;
	l->deadline_ns = now_ns() + (uint64_t)NETIO_LINGER_MS * NS_PER_MS;
	if (event_assign(&l->ev, base, dfd, EV_READ | EV_PERSIST, linger_cb, l) != 0 ||
	    event_add(&l->ev, &tv) != 0) {
		close(dfd);
		l->fd = -1;
		return;
	}
	lingering++;
}
