/* SPDX-License-Identifier: ISC */
/*
 * ratelim: rate-limited log lines (see ratelim.h).
 */
#include "ratelim.h"

#include <stdarg.h>
#include <stdio.h>

#include <event2/event.h>

#include "util.h"

int ratelim_check(struct ratelim *rl, uint64_t now_ms, unsigned burst, uint64_t window_ms,
                  uint64_t *dropped, int *last)
{
	if (!rl->started || now_ms - rl->window_start >= window_ms || now_ms < rl->window_start) {
		rl->started = 1;
		rl->window_start = now_ms;
		rl->passed = 0;
	}
	if (rl->passed >= burst) {
		rl->dropped++;
		return 0;
	}
	rl->passed++;
	*dropped = rl->dropped;
	*last = rl->passed == burst;
	rl->dropped = 0;
	return 1;
}

void ratelim_log(struct ratelim *rl, int level, const char *fmt, ...)
{
	char buf[900];
	uint64_t dropped;
	int last;
	va_list ap;

	if (level > log_level())
		return; /* not shown anyway: neither counted nor formatted */
	if (!ratelim_check(rl, now_ns() / 1000000u, RATELIM_BURST, RATELIM_WINDOW_MS, &dropped,
	                   &last))
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (dropped > 0)
		log_msg(level, "%s (%llu similar messages were suppressed before this one)", buf,
		        (unsigned long long)dropped);
	else if (last)
		log_msg(level, "%s (similar messages are suppressed for up to %d s)", buf,
		        RATELIM_WINDOW_MS / 1000);
	else
		log_msg(level, "%s", buf);
}

static void on_libevent_log(int severity, const char *msg)
{
	static struct ratelim rl[4];
	int i = severity == EVENT_LOG_DEBUG  ? 0
	        : severity == EVENT_LOG_MSG  ? 1
	        : severity == EVENT_LOG_WARN ? 2
	                                     : 3;
	static const int level[] = {LOG_LEVEL_DEBUG, LOG_LEVEL_INFO, LOG_LEVEL_WARN,
	                            LOG_LEVEL_ERROR};

	ratelim_log(&rl[i], level[i], "libevent: %s", msg);
}

void ratelim_route_libevent(void)
{
	event_set_log_callback(on_libevent_log);
}
