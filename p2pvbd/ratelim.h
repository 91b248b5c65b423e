/* SPDX-License-Identifier: ISC */
/*
 * ratelim: rate-limited log lines. A message that repeats (the same call
 * site, or one kind of message from a library) is let through in bursts of
 * RATELIM_BURST per RATELIM_WINDOW_MS; what comes after is dropped and
 * counted, and the next message let through says how many similar ones were
 * dropped before it. So a flood (a client that hammers, an accept() that
 * keeps failing) costs a few lines every ten seconds, never gigabytes.
 *
 * ratelim_check is pure (the caller passes the clock) and unit-tested;
 * ratelim_log and log_limited write through util's log_msg.
 */
#ifndef P2PVBD_RATELIM_H
#define P2PVBD_RATELIM_H

#include <stdint.h>

/* Messages of one kind let through per window: enough to see what is going on. */
#define RATELIM_BURST 5
/* The window: an operator watching the log sees a flood's count at least this often. */
#define RATELIM_WINDOW_MS 10000

/* One kind of message. Zero-initialised is ready to use (static storage). */
struct ratelim {
	uint64_t window_start; /* ms, of the current window */
	unsigned passed;       /* let through in the current window */
	uint64_t dropped;      /* dropped since the last one let through */
	int started;           /* window_start is set */
};

/*
 * One message at now_ms. Returns 1 to log it, 0 to drop it (counted). When
 * it returns 1, *dropped is how many were dropped since the last message let
 * through (to be reported with it), and *last is 1 if this was the last one
 * let through in the current window (to say that more will be suppressed).
 */
int ratelim_check(struct ratelim *rl, uint64_t now_ms, unsigned burst, uint64_t window_ms,
                  uint64_t *dropped, int *last);

/* log_msg(level, fmt, ...) through rl (RATELIM_BURST per RATELIM_WINDOW_MS). */
void ratelim_log(struct ratelim *rl, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * Route libevent's own messages (event_set_log_callback) into our log, each
 * severity through a limiter of its own: libevent logs some failures (such
 * as accept() errors) every time they happen.
 */
void ratelim_route_libevent(void);

/* log_msg through a limiter of its own for this call site. */
#define log_limited(level, ...)                                                                    \
	do {                                                                                       \
		static struct ratelim rl_;                                                         \
		ratelim_log(&rl_, level, __VA_ARGS__);                                             \
	} while (0)

#endif
