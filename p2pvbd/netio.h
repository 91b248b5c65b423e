/* SPDX-License-Identifier: ISC */
/*
 * netio: a socket reader that reads in big gulps, for connections whose
 * output goes through a libevent bufferevent.
 *
 * libevent 2.1's evbuffer_read() moves at most 4096 bytes per call
 * (EVBUFFER_MAX_READ) whatever bufferevent_set_max_single_read() says, so a
 * socket bufferevent wakes the loop and makes three system calls (epoll,
 * ioctl, readv) for every 4 KiB: about 800,000 calls per GiB received. And a
 * bufferevent's input buffer cannot be filled from outside (libevent freezes
 * its end). So connections read with a netio_reader instead: their own
 * event and input buffer, recv() of up to 256 KiB at a time, and a read
 * timeout; the bufferevent is used for output only.
 */
#ifndef P2PVBD_NETIO_H
#define P2PVBD_NETIO_H

#include <stddef.h>

#include <event2/buffer.h>
#include <event2/event.h>

struct netio_reader {
	struct event *ev;
	struct evbuffer *in; /* owned; bytes read and not yet consumed */
	size_t high;         /* stop reading while this much waits in `in` */
	int paused;          /* by the owner */
	int full;            /* by `high` */
	struct timeval timeout;
	int has_timeout;
	/* New bytes are in `in` (or, after resume, still are). */
	void (*on_data)(void *arg);
	/* The connection ended: err = 0 for EOF, an errno, or ETIMEDOUT after
	 * `timeout` without a byte. Reading has stopped. */
	void (*on_end)(void *arg, int err);
	void *arg;
};

/*
 * Start reading fd (not owned: closed by whoever owns it). timeout NULL:
 * none. high: how many unconsumed bytes make it stop reading until
 * netio_reader_consumed() (at least one whole message). 0 or -1.
 */
int netio_reader_init(struct netio_reader *r, struct event_base *base, int fd, size_t high,
                      const struct timeval *timeout, void (*on_data)(void *),
                      void (*on_end)(void *, int), void *arg);
/* Stop reading for good and free the buffer. Safe on a zeroed struct. */
void netio_reader_free(struct netio_reader *r);
/* The owner stops / restarts reading (back-pressure). */
void netio_reader_pause(struct netio_reader *r);
void netio_reader_resume(struct netio_reader *r);
/* The owner consumed input: reading restarts if it had stopped at `high`. */
void netio_reader_consumed(struct netio_reader *r);
/* Change `high` (e.g. once a connection is trusted with more); reading restarts if below it. */
void netio_reader_set_high(struct netio_reader *r, size_t high);

/*
 * A lingering close: the last bytes written to socket fd (an ERROR saying
 * why we close) must reach the other side. close() on a socket with unread
 * input sends a reset, and a reset can make the other side's kernel drop
 * what it had not yet read, our ERROR too. So: shutdown(SHUT_WR) (a FIN after
 * our bytes), then read and discard until the other side closes, at most
 * NETIO_LINGER_MS, then close. Takes a dup of fd (the caller closes fd as
 * usual). At most NETIO_LINGER_MAX at once; beyond, or if dup fails, just
 * the FIN.
 */
#define NETIO_LINGER_MS  2000
#define NETIO_LINGER_MAX 64
void netio_linger_close(struct event_base *base, int fd);
/* Lingering closes in progress (tests). */
int netio_lingering(void);

#endif
