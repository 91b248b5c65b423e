/* SPDX-License-Identifier: ISC */
/*
 * netio: see netio.h.
 */
#include "netio.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

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
