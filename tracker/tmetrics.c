/* SPDX-License-Identifier: ISC */
/*
 * tmetrics: the tracker's counters in Prometheus' text format (see
 * tmetrics.h). The format, version 0.0.4: for each family a "# HELP name
 * text" line (text with \ and LF escaped), a "# TYPE name counter|gauge"
 * line, then its samples "name{label="value",...} number", one per line,
 * every line ending in LF. Counters are named *_total.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tmetrics.h"
#include "util.h"
#include "version.h"

#define STR_(x) #x
#define STR(x)  STR_(x)

static const char *const path_name[TMETRICS_PATHS] = {
    [TMETRICS_P_ANNOUNCE] = "/announce", [TMETRICS_P_SCRAPE] = "/scrape",
    [TMETRICS_P_STATUS] = "/status",     [TMETRICS_P_RECEIPT] = "/receipt",
    [TMETRICS_P_RECEIPTS] = "/receipts", [TMETRICS_P_METRICS] = "/metrics",
    [TMETRICS_P_OTHER] = "other",
};

static const int code_number[TMETRICS_CODES] = {
    [TMETRICS_C_200] = 200, [TMETRICS_C_400] = 400, [TMETRICS_C_404] = 404,
    [TMETRICS_C_405] = 405, [TMETRICS_C_503] = 503, [TMETRICS_C_OTHER] = 0,
};

/* Label values of announce events, indexed by enum announce_event. */
static const char *const event_name[ANNOUNCE_EV_STOPPED + 1] = {
    [ANNOUNCE_EV_NONE] = "none",
    [ANNOUNCE_EV_STARTED] = "started",
    [ANNOUNCE_EV_COMPLETED] = "completed",
    [ANNOUNCE_EV_STOPPED] = "stopped",
};

static const char *const result_name[TMETRICS_RESULTS] = {
    [TMETRICS_OK] = "ok",
    [TMETRICS_REFUSED] = "refused",
};

enum tmetrics_path tmetrics_path_of(const char *path)
{
	for (int p = 0; p < TMETRICS_P_OTHER; p++)
		if (strcmp(path, path_name[p]) == 0)
			return (enum tmetrics_path)p;
	return TMETRICS_P_OTHER;
}

enum tmetrics_code tmetrics_code_of(int code)
{
	for (int c = 0; c < TMETRICS_C_OTHER; c++)
		if (code_number[c] == code)
			return (enum tmetrics_code)c;
	return TMETRICS_C_OTHER;
}

/* Room for n more bytes plus a NUL, so that buf is always a C string. */
static void reserve(struct tmetrics_out *o, size_t n)
{
	if (o->len + n + 1 <= o->cap)
		return;
	o->cap = o->cap ? o->cap : 4096;
	while (o->len + n + 1 > o->cap)
		o->cap *= 2;
	o->buf = xrealloc(o->buf, o->cap);
}

static void put(struct tmetrics_out *o, const char *s, size_t n)
{
	reserve(o, n);
	memcpy(o->buf + o->len, s, n);
	o->len += n;
	o->buf[o->len] = '\0';
}

static void puts_(struct tmetrics_out *o, const char *s)
{
	put(o, s, strlen(s));
}

static void putf(struct tmetrics_out *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void putf(struct tmetrics_out *o, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		fatal("vsnprintf failed");
	reserve(o, (size_t)n);
	va_start(ap, fmt);
	vsnprintf(o->buf + o->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	o->len += (size_t)n;
}

/* Append s with \ and LF escaped, and also " when quote is set (label values). */
static void put_escaped(struct tmetrics_out *o, const char *s, int quote)
{
	for (; *s != '\0'; s++) {
		if (*s == '\\')
			put(o, "\\\\", 2);
		else if (*s == '\n')
			put(o, "\\n", 2);
		else if (*s == '"' && quote)
			put(o, "\\\"", 2);
		else
			put(o, s, 1);
	}
}

void tmetrics_put_label_value(struct tmetrics_out *o, const char *s)
{
	put_escaped(o, s, 1);
}

static void family(struct tmetrics_out *o, const char *name, const char *type, const char *help)
{
	putf(o, "# HELP %s ", name);
	put_escaped(o, help, 0);
	putf(o, "\n# TYPE %s %s\n", name, type);
}

/* One sample: name{k1="v1",...} v. labels: pairs of name and value, NULL after the last. */
static void sample(struct tmetrics_out *o, const char *name, const char *const *labels, uint64_t v)
{
	puts_(o, name);
	if (labels != NULL && labels[0] != NULL) {
		for (int i = 0; labels[i] != NULL; i += 2) {
			putf(o, "%s%s=\"", i ? "," : "{", labels[i]);
			tmetrics_put_label_value(o, labels[i + 1]);
			puts_(o, "\"");
		}
		puts_(o, "}");
	}
	putf(o, " %llu\n", (unsigned long long)v);
}

/* A family of one sample without labels. */
static void single(struct tmetrics_out *o, const char *name, const char *type, const char *help,
                   uint64_t v)
{
	family(o, name, type, help);
	sample(o, name, NULL, v);
}

static void render_counters(struct tmetrics_out *o, const struct tmetrics *m)
{
	char code[16];

	family(o, "p2pvbd_tracker_announces_total", "counter",
	       "Valid announces by event and result (refused: past --max-swarms or "
	       "--max-peers, or a peer_id registered with another key). Malformed ones are "
	       "only in p2pvbd_tracker_http_requests_total (code 400).");
	for (int e = 0; e <= ANNOUNCE_EV_STOPPED; e++)
		for (int r = 0; r < TMETRICS_RESULTS; r++) {
			const char *const l[] = {"event", event_name[e], "result", result_name[r],
			                         NULL};

			sample(o, "p2pvbd_tracker_announces_total", l, m->announces[e][r]);
		}
	single(o, "p2pvbd_tracker_scrapes_total", "counter", "Valid scrapes answered.", m->scrapes);
	single(o, "p2pvbd_tracker_receipts_received_total", "counter",
	       "Completion receipts posted to /receipt, valid or not.", m->receipts_received);
	single(o, "p2pvbd_tracker_receipts_accepted_total", "counter",
	       "Completion receipts whose signature was verified and that were kept.",
	       m->receipts_accepted);
	single(o, "p2pvbd_tracker_peers_stopped_total", "counter",
	       "Peers removed at once because they announced event=stopped.", m->peers_stopped);
	single(o, "p2pvbd_tracker_peers_expired_total", "counter",
	       "Peers removed because they did not announce for 2 x interval + 5 seconds.",
	       m->peers_expired);
	family(o, "p2pvbd_tracker_http_requests_total", "counter",
	       "HTTP requests answered, by path (other: any unknown path) and status code.");
	for (int p = 0; p < TMETRICS_PATHS; p++)
		for (int c = 0; c < TMETRICS_CODES; c++) {
			const char *const l[] = {"path", path_name[p], "code", code, NULL};

			if (m->http[p][c] == 0)
				continue;
			if (c == TMETRICS_C_OTHER)
				snprintf(code, sizeof(code), "other");
			else
				snprintf(code, sizeof(code), "%d", code_number[c]);
			sample(o, "p2pvbd_tracker_http_requests_total", l, m->http[p][c]);
		}
}

static void render_tables(struct tmetrics_out *o, const struct tracker *t)
{
	uint64_t seeding = 0;
	unsigned listed = 0;
	char hex[2 * ANNOUNCE_HASH_LEN + 1];

	struct tracker_iter it;
	const struct tracker_swarm *s;

	for (s = tracker_first(t, &it); s != NULL; s = tracker_next(t, &it))
		seeding += s->complete;
	single(o, "p2pvbd_tracker_swarms", "gauge",
	       "Swarms (volumes) tracked now; at most --max-swarms.", t->nswarm);
	family(o, "p2pvbd_tracker_peers", "gauge",
	       "Peers tracked now, by state: seeding (nothing left to fetch) or leeching.");
	{
		const char *const ls[] = {"state", "seeding", NULL};
		const char *const ll[] = {"state", "leeching", NULL};

		sample(o, "p2pvbd_tracker_peers", ls, seeding);
		sample(o, "p2pvbd_tracker_peers", ll, t->npeer - seeding);
	}
	family(o, "p2pvbd_tracker_swarm_peers", "gauge",
	       "Peers of one swarm by state; info_hash is the swarm's in hex. Only the first " STR(
	           TMETRICS_MAX_SWARMS) " swarms are listed.");
	for (s = tracker_first(t, &it); s != NULL && listed < TMETRICS_MAX_SWARMS;
	     s = tracker_next(t, &it), listed++) {
		const char *const ls[] = {"info_hash", hex, "state", "seeding", NULL};
		const char *const ll[] = {"info_hash", hex, "state", "leeching", NULL};

		hex_encode(s->info_hash, ANNOUNCE_HASH_LEN, hex);
		sample(o, "p2pvbd_tracker_swarm_peers", ls, s->complete);
		sample(o, "p2pvbd_tracker_swarm_peers", ll, s->npeer - s->complete);
	}
	single(o, "p2pvbd_tracker_receipts", "gauge", "Completion receipts kept now.", t->nreceipt);
	single(o, "p2pvbd_tracker_max_swarms", "gauge", "The --max-swarms setting.",
	       t->cfg.max_swarms);
	single(o, "p2pvbd_tracker_max_peers", "gauge", "The --max-peers setting (per swarm).",
	       t->cfg.max_peers);
	single(o, "p2pvbd_tracker_interval_seconds", "gauge",
	       "The announce interval asked of clients (--interval).", t->cfg.interval);
}

void tmetrics_render(struct tmetrics_out *o, const struct tmetrics *m, const struct tracker *t,
                     uint64_t mono_now)
{
	const char *const version[] = {"version", P2PVBD_VERSION, NULL};

	family(o, "p2pvbd_tracker_build_info", "gauge",
	       "Always 1; the version label is the p2pvbd release.");
	sample(o, "p2pvbd_tracker_build_info", version, 1);
	single(o, "p2pvbd_tracker_start_time_seconds", "gauge",
	       "When the tracker started, in seconds since the Unix epoch.", m->start_wall);
	single(o, "p2pvbd_tracker_uptime_seconds", "gauge", "Seconds since the tracker started.",
	       mono_now >= m->start_mono ? mono_now - m->start_mono : 0);
	render_counters(o, m);
	render_tables(o, t);
}
