/* SPDX-License-Identifier: ISC */
/*
 * Unit tests for the tracker's /metrics text (tmetrics.c): label escaping
 * as the exposition format defines it, the shape of the whole text checked
 * line by line (HELP then TYPE once per family, samples only under their
 * family, counters named *_total, label syntax), values that follow the
 * counters and the tables, the cap on per-swarm series, and the mapping of
 * paths and status codes to counter slots.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tmetrics.h"
#include "tracker.h"

static struct tracker *mk(unsigned max_swarms)
{
	struct tracker_config cfg = {.interval = 7, .max_swarms = max_swarms, .max_peers = 50};

	return tracker_new(&cfg);
}

/* Announce peer `peer` into swarm `swarm` (info_hash: 20 bytes of it, then the index). */
static void add(struct tracker *t, unsigned swarm, char peer, uint64_t left, enum announce_event ev)
{
	static uint8_t p4[ANNOUNCE_NUMWANT_MAX * 6], p6[ANNOUNCE_NUMWANT_MAX * 18];
	struct announce_reply rep;
	struct announce_req r;
	struct tracker_addr a = {.family = 4, .ip = {127, 0, 0, 1}, .port = 1};
	const char *why = NULL;

	memset(&r, 0, sizeof(r));
	memset(r.info_hash, 0xab, sizeof(r.info_hash));
	memcpy(r.info_hash + 16, &swarm, sizeof(swarm));
	memset(r.peer_id, peer, sizeof(r.peer_id));
	r.port = 1;
	r.left = left;
	r.event = ev;
	r.numwant = 10;
	cr_assert_eq(tracker_announce(t, &r, &a, 1, &rep, p4, p6, &why), 0, "%s", why);
}

static char *render(const struct tmetrics *m, const struct tracker *t, uint64_t mono_now)
{
	struct tmetrics_out o = {0};

	tmetrics_render(&o, m, t, mono_now);
	cr_assert_not_null(o.buf);
	cr_assert_eq(strlen(o.buf), o.len);
	return o.buf;
}

/* The value of the sample whose name and labels are exactly `series`, or -1 if absent. */
static long long value_of(const char *text, const char *series)
{
	size_t n = strlen(series);

	for (const char *l = text; *l != '\0'; l = strchr(l, '\n') + 1) {
		if (strncmp(l, series, n) == 0 && l[n] == ' ')
			return strtoll(l + n + 1, NULL, 10);
	}
	return -1;
}

/* How many sample lines of family `name` there are. */
static int count_samples(const char *text, const char *name)
{
	size_t n = strlen(name);
	int k = 0;

	for (const char *l = text; *l != '\0'; l = strchr(l, '\n') + 1)
		if (strncmp(l, name, n) == 0 && (l[n] == '{' || l[n] == ' '))
			k++;
	return k;
}

static int is_name_char(char c, int first)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
	       (!first && c >= '0' && c <= '9');
}

/* Skip {k="v",...}; returns the character after '}', or NULL if the syntax is wrong. */
static const char *skip_labels(const char *p)
{
	if (*p != '{')
		return p;
	p++;
	for (;;) {
		if (!is_name_char(*p, 1))
			return NULL;
		while (is_name_char(*p, 0))
			p++;
		if (p[0] != '=' || p[1] != '"')
			return NULL;
		for (p += 2; *p != '"'; p++) {
			if (*p == '\n' || *p == '\0')
				return NULL;
			if (*p == '\\') {
				p++;
				if (*p != '\\' && *p != '"' && *p != 'n')
					return NULL;
			}
		}
		p++;
		if (*p == '}')
			return p + 1;
		if (*p != ',')
			return NULL;
		p++;
	}
}

/*
 * Check the text against the format: every line ends in LF; each family has
 * "# HELP name" then "# TYPE name counter|gauge" on the next line, once;
 * every sample belongs to the family announced last; counters end in _total;
 * values are decimal integers.
 */
static void check_format(const char *text)
{
	char family[128] = "", type[16] = "", seen[64][128];
	int nseen = 0;

	cr_assert(text[0] != '\0');
	cr_assert_eq(text[strlen(text) - 1], '\n', "the last line has no LF");
	for (const char *l = text; *l != '\0'; l = strchr(l, '\n') + 1) {
		const char *end = strchr(l, '\n');
		char line[1024];

		cr_assert_lt((size_t)(end - l), sizeof(line));
		memcpy(line, l, (size_t)(end - l));
		line[end - l] = '\0';
		if (strncmp(line, "# HELP ", 7) == 0) {
			const char *next = end + 1;
			char name[128], t2[128], ty[16];

			cr_assert_eq(sscanf(line + 7, "%127s", name), 1);
			cr_assert(strlen(line) > 8 + strlen(name), "HELP without text: %s", line);
			for (int i = 0; i < nseen; i++)
				cr_assert_str_neq(seen[i], name, "family %s twice", name);
			cr_assert_lt(nseen, 64);
			strcpy(seen[nseen++], name);
			cr_assert_eq(sscanf(next, "# TYPE %127s %15s", t2, ty), 2,
			             "no TYPE line after HELP of %s", name);
			cr_assert_str_eq(t2, name);
			cr_assert(strcmp(ty, "counter") == 0 || strcmp(ty, "gauge") == 0, "%s", ty);
			if (strcmp(ty, "counter") == 0)
				cr_assert(strlen(name) > 6 &&
				              strcmp(name + strlen(name) - 6, "_total") == 0,
				          "counter %s does not end in _total", name);
			strcpy(family, name);
			strcpy(type, ty);
			l = next; /* the TYPE line is checked */
			continue;
		}
		cr_assert_neq(line[0], '#', "stray comment: %s", line);
		{
			const char *p = line, *v;
			char *vend;
			size_t n;

			cr_assert(is_name_char(*p, 1), "bad sample line: %s", line);
			while (is_name_char(*p, 0))
				p++;
			n = (size_t)(p - line);
			cr_assert(family[0] != '\0', "sample before any family: %s", line);
			cr_assert(n == strlen(family) && strncmp(line, family, n) == 0,
			          "sample %s outside its family %s", line, family);
			v = skip_labels(p);
			cr_assert_not_null(v, "bad labels: %s", line);
			cr_assert_eq(*v, ' ', "no space before the value: %s", line);
			strtoull(v + 1, &vend, 10);
			cr_assert(vend > v + 1 && *vend == '\0', "bad value: %s", line);
		}
	}
}

Test(tmetrics, label_value_escaping)
{
	struct tmetrics_out o = {0};

	tmetrics_put_label_value(&o, "plain");
	cr_assert_str_eq(o.buf, "plain");
	o.len = 0;
	/* The format's three escapes: backslash, double quote, line feed. */
	tmetrics_put_label_value(&o, "a\\b\"c\nd");
	cr_assert_str_eq(o.buf, "a\\\\b\\\"c\\nd");
	o.len = 0;
	tmetrics_put_label_value(&o, "\\\\\"\n\n");
	cr_assert_str_eq(o.buf, "\\\\\\\\\\\"\\n\\n");
	cr_assert_eq(o.len, 10);
	o.len = 0;
	o.buf[0] = '\0';
	tmetrics_put_label_value(&o, "");
	cr_assert_str_eq(o.buf, "");
	/* Other bytes (tabs, UTF-8) pass unchanged. */
	tmetrics_put_label_value(&o, "t\tä");
	cr_assert_str_eq(o.buf, "t\tä");
	free(o.buf);
}

Test(tmetrics, empty_tracker)
{
	struct tracker *t = mk(100);
	struct tmetrics m = {.start_wall = 1700000000, .start_mono = 40};
	char *text = render(&m, t, 52);

	check_format(text);
	cr_assert_eq(value_of(text, "p2pvbd_tracker_start_time_seconds"), 1700000000);
	cr_assert_eq(value_of(text, "p2pvbd_tracker_uptime_seconds"), 12);
	cr_assert_eq(value_of(text, "p2pvbd_tracker_build_info{version=\"0.1.0\"}"), 1);
	cr_assert_eq(value_of(text, "p2pvbd_tracker_swarms"), 0);
	cr_assert_eq(value_of(text, "p2pvbd_tracker_peers{state=\"seeding\"}"), 0);
	cr_assert_eq(value_of(text, "p2pvbd_tracker_peers{state=\"leeching\"}"), 0);
	cr_assert_eq(value_of(text, "p2pvbd_tracker_max_swarms"), 100);
	cr_assert_eq(value_of(text, "p2pvbd_tracker_max_peers"), 50);
	cr_assert_eq(value_of(text, "p2pvbd_tracker_interval_seconds"), 7);
	/* Every event and result is there from the start, at 0, so that rate() works at once. */
	cr_assert_eq(count_samples(text, "p2pvbd_tracker_announces_total"), 8);
	cr_assert_eq(
	    value_of(text, "p2pvbd_tracker_announces_total{event=\"stopped\",result=\"refused\"}"),
	    0);
	/* No request answered yet: the family is announced but has no samples. */
	cr_assert_eq(count_samples(text, "p2pvbd_tracker_http_requests_total"), 0);
	cr_assert_eq(count_samples(text, "p2pvbd_tracker_swarm_peers"), 0);
	free(text);

	/* A clock behind the start (never happens with a monotonic one) is not a huge uptime. */
	text = render(&m, t, 39);
	cr_assert_eq(value_of(text, "p2pvbd_tracker_uptime_seconds"), 0);
	free(text);
	tracker_free(t);
}

Test(tmetrics, counters_and_tables)
{
	struct tracker *t = mk(100);
	struct tmetrics m = {0};
	char *text;

	m.announces[ANNOUNCE_EV_STARTED][TMETRICS_OK] = 3;
	m.announces[ANNOUNCE_EV_COMPLETED][TMETRICS_REFUSED] = 2;
	m.announces[ANNOUNCE_EV_STOPPED][TMETRICS_OK] = 1;
	m.scrapes = 4;
	m.receipts_received = 6;
	m.receipts_accepted = 5;
	m.peers_stopped = 9;
	m.peers_expired = 8;
	m.http[TMETRICS_P_ANNOUNCE][TMETRICS_C_200] = 11;
	m.http[TMETRICS_P_ANNOUNCE][TMETRICS_C_400] = 12;
	m.http[TMETRICS_P_OTHER][TMETRICS_C_404] = 13;
	m.http[TMETRICS_P_METRICS][TMETRICS_C_OTHER] = 14;
	/* Swarm 1: two leechers and a seed; swarm 2: one seed. */
	add(t, 1, 'a', 10, ANNOUNCE_EV_STARTED);
	add(t, 1, 'b', 10, ANNOUNCE_EV_STARTED);
	add(t, 1, 'c', 0, ANNOUNCE_EV_STARTED);
	add(t, 2, 'a', 0, ANNOUNCE_EV_STARTED);

	text = render(&m, t, 0);
	check_format(text);
	cr_assert_eq(
	    value_of(text, "p2pvbd_tracker_announces_total{event=\"started\",result=\"ok\"}"), 3);
	cr_assert_eq(
	    value_of(text,
	             "p2pvbd_tracker_announces_total{event=\"completed\",result=\"refused\"}"),
	    2);
	cr_assert_eq(
	    value_of(text, "p2pvbd_tracker_announces_total{event=\"stopped\",result=\"ok\"}"), 1);
	cr_assert_eq(value_of(text, "p2pvbd_tracker_announces_total{event=\"none\",result=\"ok\"}"),
	             0);
	cr_assert_eq(value_of(text, "p2pvbd_tracker_scrapes_total"), 4);
	cr_assert_eq(value_of(text, "p2pvbd_tracker_receipts_received_total"), 6);
	cr_assert_eq(value_of(text, "p2pvbd_tracker_receipts_accepted_total"), 5);
	cr_assert_eq(value_of(text, "p2pvbd_tracker_peers_stopped_total"), 9);
	cr_assert_eq(value_of(text, "p2pvbd_tracker_peers_expired_total"), 8);
	cr_assert_eq(
	    value_of(text, "p2pvbd_tracker_http_requests_total{path=\"/announce\",code=\"200\"}"),
	    11);
	cr_assert_eq(
	    value_of(text, "p2pvbd_tracker_http_requests_total{path=\"/announce\",code=\"400\"}"),
	    12);
	cr_assert_eq(
	    value_of(text, "p2pvbd_tracker_http_requests_total{path=\"other\",code=\"404\"}"), 13);
	cr_assert_eq(
	    value_of(text, "p2pvbd_tracker_http_requests_total{path=\"/metrics\",code=\"other\"}"),
	    14);
	cr_assert_eq(count_samples(text, "p2pvbd_tracker_http_requests_total"), 4,
	             "only pairs that happened are listed");

	cr_assert_eq(value_of(text, "p2pvbd_tracker_swarms"), 2);
	cr_assert_eq(value_of(text, "p2pvbd_tracker_peers{state=\"seeding\"}"), 2);
	cr_assert_eq(value_of(text, "p2pvbd_tracker_peers{state=\"leeching\"}"), 2);
	cr_assert_eq(value_of(text,
	                      "p2pvbd_tracker_swarm_peers{info_hash="
	                      "\"abababababababababababababababab01000000\",state=\"leeching\"}"),
	             2);
	cr_assert_eq(value_of(text,
	                      "p2pvbd_tracker_swarm_peers{info_hash="
	                      "\"abababababababababababababababab01000000\",state=\"seeding\"}"),
	             1);
	cr_assert_eq(value_of(text,
	                      "p2pvbd_tracker_swarm_peers{info_hash="
	                      "\"abababababababababababababababab02000000\",state=\"seeding\"}"),
	             1);
	cr_assert_eq(count_samples(text, "p2pvbd_tracker_swarm_peers"), 4);
	free(text);

	/* The seed of swarm 1 stops and swarm 2's only peer too: the gauges follow at once. */
	add(t, 1, 'c', 0, ANNOUNCE_EV_STOPPED);
	add(t, 2, 'a', 0, ANNOUNCE_EV_STOPPED);
	text = render(&m, t, 0);
	check_format(text);
	cr_assert_eq(value_of(text, "p2pvbd_tracker_swarms"), 1);
	cr_assert_eq(value_of(text, "p2pvbd_tracker_peers{state=\"seeding\"}"), 0);
	cr_assert_eq(value_of(text, "p2pvbd_tracker_peers{state=\"leeching\"}"), 2);
	cr_assert_eq(value_of(text,
	                      "p2pvbd_tracker_swarm_peers{info_hash="
	                      "\"abababababababababababababababab01000000\",state=\"seeding\"}"),
	             0);
	cr_assert_eq(value_of(text,
	                      "p2pvbd_tracker_swarm_peers{info_hash="
	                      "\"abababababababababababababababab02000000\",state=\"seeding\"}"),
	             -1, "a swarm that is gone has no series");
	free(text);
	tracker_free(t);
}

Test(tmetrics, per_swarm_series_are_capped)
{
	unsigned n = TMETRICS_MAX_SWARMS + 7;
	struct tracker *t = mk(n);
	struct tmetrics m = {0};
	char *text;

	for (unsigned i = 0; i < n; i++)
		add(t, i, 'p', i % 2, ANNOUNCE_EV_STARTED);
	text = render(&m, t, 0);
	check_format(text);
	cr_assert_eq(count_samples(text, "p2pvbd_tracker_swarm_peers"), 2 * TMETRICS_MAX_SWARMS);
	cr_assert_eq(value_of(text, "p2pvbd_tracker_swarms"), n);
	/* The totals still count every peer. */
	cr_assert_eq(value_of(text, "p2pvbd_tracker_peers{state=\"seeding\"}"), (n + 1) / 2);
	cr_assert_eq(value_of(text, "p2pvbd_tracker_peers{state=\"leeching\"}"), n / 2);
	free(text);
	tracker_free(t);
}

Test(tmetrics, paths_and_codes)
{
	cr_assert_eq(tmetrics_path_of("/announce"), TMETRICS_P_ANNOUNCE);
	cr_assert_eq(tmetrics_path_of("/scrape"), TMETRICS_P_SCRAPE);
	cr_assert_eq(tmetrics_path_of("/status"), TMETRICS_P_STATUS);
	cr_assert_eq(tmetrics_path_of("/receipt"), TMETRICS_P_RECEIPT);
	cr_assert_eq(tmetrics_path_of("/receipts"), TMETRICS_P_RECEIPTS);
	cr_assert_eq(tmetrics_path_of("/metrics"), TMETRICS_P_METRICS);
	/* Anything else is one series, whatever clients send: no unbounded label values. */
	cr_assert_eq(tmetrics_path_of("/metrics/"), TMETRICS_P_OTHER);
	cr_assert_eq(tmetrics_path_of("/Announce"), TMETRICS_P_OTHER);
	cr_assert_eq(tmetrics_path_of(""), TMETRICS_P_OTHER);
	cr_assert_eq(tmetrics_path_of("/announce\"x"), TMETRICS_P_OTHER);
	cr_assert_eq(tmetrics_code_of(200), TMETRICS_C_200);
	cr_assert_eq(tmetrics_code_of(400), TMETRICS_C_400);
	cr_assert_eq(tmetrics_code_of(404), TMETRICS_C_404);
	cr_assert_eq(tmetrics_code_of(405), TMETRICS_C_405);
	cr_assert_eq(tmetrics_code_of(503), TMETRICS_C_503);
	cr_assert_eq(tmetrics_code_of(418), TMETRICS_C_OTHER);
	cr_assert_eq(tmetrics_code_of(0), TMETRICS_C_OTHER);
}
