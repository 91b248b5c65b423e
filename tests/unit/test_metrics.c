/* SPDX-License-Identifier: ISC */
/*
 * Unit tests for metrics: the Prometheus text (label escaping, histogram
 * buckets cumulative and ending in +Inf, one HELP and one TYPE per family,
 * every sample inside its family, counters named _total) read back with a
 * small strict reader of the exposition format written here from its spec;
 * and the status extras (ETA, JSON escaping, the peer list).
 */
#include <criterion/criterion.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "metrics.h"

/* The evbuffer's contents as a NUL-terminated string (caller frees); the buffer is freed. */
static char *drain(struct evbuffer *b)
{
	size_t n = evbuffer_get_length(b);
	char *s = malloc(n + 1);

	cr_assert_not_null(s);
	evbuffer_remove(b, s, n);
	s[n] = '\0';
	evbuffer_free(b);
	return s;
}

static void peer_at(struct swarm_peer_info *p, const char *addr, const char *role, double in,
                    double out, int64_t chunks)
{
	memset(p, 0, sizeof(*p));
	snprintf(p->address, sizeof(p->address), "%s", addr);
	p->role = role;
	p->fetch_rate = in;
	p->serve_rate = out;
	p->chunks = chunks;
	p->bytes_fetched = (uint64_t)in * 3;
	p->bytes_served = (uint64_t)out * 3;
}

/* A fetch half way, two peers (one with every character that needs escaping), some faults. */
static void sample_snapshot(struct swarm_status *st, struct swarm_stats *stats,
                            struct swarm_peer_info peers[2])
{
	memset(st, 0, sizeof(*st));
	memset(stats, 0, sizeof(*stats));
	st->have_root = 1;
	st->generation = 3;
	st->image_size = 1 << 30;
	st->chunk_size = 1 << 18;
	st->chunks_total = 4096;
	st->bytes_done = 1 << 29;
	st->bytes_left = 1 << 28;
	st->peers = 2;
	st->fetch_rate = 12.5e6;
	st->serve_rate = 1.25e6;
	st->output = "/var/lib/vm \"one\"\\disk\n.img";
	for (int i = 0; i < MANIFEST_ID_LEN; i++)
		st->volume_id[i] = (uint8_t)(0xa0 + i);
	st->faults_waiting = 2;
	st->fault_latency.bucket[0] = 4;
	st->fault_latency.bucket[3] = 2;
	st->fault_latency.bucket[SWARM_FAULT_BUCKETS - 1] = 1;
	st->fault_latency.bucket[SWARM_FAULT_BUCKETS] = 3; /* slower than every bound */
	st->fault_latency.count = 10;
	st->fault_latency.sum_s = 55.25;
	st->handshakes = 3;
	st->handshakes_refused = 6;
	st->handshakes_dropped = 7;
	st->handshakes_late = 8;
	st->frames_late = 9;
	stats->bytes_fetched = 1 << 29;
	stats->chunks_fetched = 2048;
	stats->bytes_served = 12345;
	stats->bad_pieces = 1;
	peer_at(&peers[0], "127.0.0.1:7001", "source", 1e6, 0, 4000);
	peer_at(&peers[1], "we\\ird\"host\nname:1", "peer", 0, 2.5e5, -1);
}

static char *render(const struct swarm_status *st, const struct swarm_stats *stats,
                    const struct swarm_peer_info *peers, int n)
{
	struct evbuffer *b = evbuffer_new();

	metrics_render(b, st, stats, peers, n);
	return drain(b);
}

/* ---- a strict reader of the text format (version 0.0.4) ---------------- */

#define MAX_FAMILIES 64
#define MAX_SAMPLES  256
#define MAX_LABELS   4

struct family {
	char name[96];
	char type[16];
	int helps, types, samples;
};

struct sample {
	char name[96];
	int nlabels;
	char key[MAX_LABELS][32];
	char val[MAX_LABELS][128]; /* unescaped */
	double value;
	int family; /* index into families */
};

struct page {
	struct family fam[MAX_FAMILIES];
	int nfam;
	struct sample smp[MAX_SAMPLES];
	int nsmp;
};

static int fam_find(struct page *pg, const char *name)
{
	for (int i = 0; i < pg->nfam; i++)
		if (strcmp(pg->fam[i].name, name) == 0)
			return i;
	return -1;
}

static int name_char(char c, int first)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
	       (!first && c >= '0' && c <= '9');
}

/* A metric or label name at *p; advances *p. */
static void read_name(const char **p, char *out, size_t len)
{
	size_t n = 0;

	cr_assert(name_char(**p, 1), "a name starts with a letter: %.40s", *p);
	while (name_char(**p, n == 0)) {
		cr_assert_lt(n + 1, len);
		out[n++] = *(*p)++;
	}
	out[n] = '\0';
}

/* Is the sample name s part of family f (histograms: _bucket, _sum, _count)? */
static int in_family(const char *s, const struct family *f)
{
	size_t n = strlen(f->name);

	if (strcmp(s, f->name) == 0)
		return strcmp(f->type, "histogram") != 0;
	if (strcmp(f->type, "histogram") != 0 || strncmp(s, f->name, n) != 0)
		return 0;
	return strcmp(s + n, "_bucket") == 0 || strcmp(s + n, "_sum") == 0 ||
	       strcmp(s + n, "_count") == 0;
}

/*
 * Read a whole page: every line ends in a newline; comments are HELP then
 * TYPE of one family, before its samples; a sample is name{labels} value.
 */
static void read_page(const char *text, struct page *pg)
{
	const char *p = text;
	int cur = -1;

	memset(pg, 0, sizeof(*pg));
	cr_assert(strlen(text) > 0 && text[strlen(text) - 1] == '\n', "the page ends in a newline");
	while (*p) {
		const char *eol = strchr(p, '\n');
		char name[96];

		cr_assert_not_null(eol);
		if (strncmp(p, "# HELP ", 7) == 0 || strncmp(p, "# TYPE ", 7) == 0) {
			int help = p[2] == 'H';
			int f;

			p += 7;
			read_name(&p, name, sizeof(name));
			cr_assert_eq(*p, ' ', "a space after the name in a comment");
			f = fam_find(pg, name);
			if (f < 0) {
				cr_assert(help, "HELP comes before TYPE for %s", name);
				cr_assert_lt(pg->nfam, MAX_FAMILIES);
				f = pg->nfam++;
				snprintf(pg->fam[f].name, sizeof(pg->fam[f].name), "%s", name);
			}
			cr_assert_eq(pg->fam[f].samples, 0, "%s: comment after samples", name);
			if (help) {
				pg->fam[f].helps++;
			} else {
				size_t tl = (size_t)(eol - p - 1);

				cr_assert_lt(tl, sizeof(pg->fam[f].type));
				memcpy(pg->fam[f].type, p + 1, tl);
				pg->fam[f].type[tl] = '\0';
				cr_assert(strcmp(pg->fam[f].type, "counter") == 0 ||
				              strcmp(pg->fam[f].type, "gauge") == 0 ||
				              strcmp(pg->fam[f].type, "histogram") == 0,
				          "%s: type %s", name, pg->fam[f].type);
				pg->fam[f].types++;
			}
			cur = f;
			p = eol + 1;
			continue;
		}
		cr_assert_neq(*p, '#', "an unknown comment: %.40s", p);
		{
			struct sample *s = &pg->smp[pg->nsmp];
			char *end;

			cr_assert_lt(pg->nsmp, MAX_SAMPLES);
			memset(s, 0, sizeof(*s));
			read_name(&p, s->name, sizeof(s->name));
			cr_assert(cur >= 0 && in_family(s->name, &pg->fam[cur]),
			          "sample %s outside its family (TYPE first)", s->name);
			cr_assert_neq(pg->fam[cur].types, 0, "sample %s before its TYPE", s->name);
			if (*p == '{') {
				p++;
				while (*p != '}') {
					size_t n = 0;

					cr_assert_lt(s->nlabels, MAX_LABELS);
					read_name(&p, s->key[s->nlabels], sizeof(s->key[0]));
					cr_assert_eq(*p++, '=');
					cr_assert_eq(*p++, '"');
					while (*p != '"') {
						char c = *p++;

						cr_assert_neq(c, '\n',
						              "a raw newline in a label value");
						cr_assert_neq(c, '\0');
						if (c == '\\') {
							c = *p++;
							cr_assert(c == '\\' || c == '"' || c == 'n',
							          "bad escape \\%c", c);
							if (c == 'n')
								c = '\n';
						}
						cr_assert_lt(n + 1, sizeof(s->val[0]));
						s->val[s->nlabels][n++] = c;
					}
					p++;
					s->nlabels++;
					if (*p == ',')
						p++;
					else
						cr_assert_eq(*p, '}', "labels: %.40s", p);
				}
				p++;
			}
			cr_assert_eq(*p++, ' ', "%s: one space before the value", s->name);
			if (strncmp(p, "+Inf", 4) == 0) {
				s->value = INFINITY;
				end = (char *)p + 4;
			} else {
				s->value = strtod(p, &end);
				cr_assert_neq(end, p, "%s: no value", s->name);
			}
			cr_assert_eq(end, eol, "%s: text after the value", s->name);
			s->family = cur;
			pg->fam[cur].samples++;
			pg->nsmp++;
			p = eol + 1;
		}
	}
}

static const char *label(const struct sample *s, const char *key)
{
	for (int i = 0; i < s->nlabels; i++)
		if (strcmp(s->key[i], key) == 0)
			return s->val[i];
	return NULL;
}

/* The value of the unlabelled sample name; fails if there is none. */
static double value_of(const struct page *pg, const char *name)
{
	for (int i = 0; i < pg->nsmp; i++)
		if (strcmp(pg->smp[i].name, name) == 0 && pg->smp[i].nlabels == 0)
			return pg->smp[i].value;
	cr_assert_fail("no sample %s", name);
	return 0;
}

/* ---- tests ----------------------------------------------------------------- */

Test(metrics, label_escaping)
{
	struct evbuffer *b = evbuffer_new();
	char *s;

	metrics_label_value(b, "a\\b\"c\nd");
	s = drain(b);
	cr_assert_str_eq(s, "a\\\\b\\\"c\\nd");
	free(s);
	b = evbuffer_new();
	metrics_label_value(b, "plain 127.0.0.1:7001 \xc3\xa9");
	s = drain(b);
	cr_assert_str_eq(s, "plain 127.0.0.1:7001 \xc3\xa9", "UTF-8 and spaces pass as they are");
	free(s);
}

Test(metrics, every_family_once_and_well_formed)
{
	struct swarm_status st;
	struct swarm_stats stats;
	struct swarm_peer_info peers[2];
	struct page pg;
	char *text;

	sample_snapshot(&st, &stats, peers);
	text = render(&st, &stats, peers, 2);
	read_page(text, &pg);
	cr_assert_geq(pg.nfam, 20, "the families the README lists: %d", pg.nfam);
	for (int i = 0; i < pg.nfam; i++) {
		const struct family *f = &pg.fam[i];
		size_t n = strlen(f->name);

		cr_assert_eq(f->helps, 1, "%s: %d HELP lines", f->name, f->helps);
		cr_assert_eq(f->types, 1, "%s: %d TYPE lines", f->name, f->types);
		cr_assert_eq(strncmp(f->name, "p2pvbd_", 7), 0, "%s: our prefix", f->name);
		if (strcmp(f->type, "counter") == 0)
			cr_assert(n > 6 && strcmp(f->name + n - 6, "_total") == 0,
			          "counter %s ends in _total", f->name);
		else
			cr_assert(n <= 6 || strcmp(f->name + n - 6, "_total") != 0,
			          "%s %s ends in _total", f->type, f->name);
	}
	/* Values come through. */
	cr_assert_eq(value_of(&pg, "p2pvbd_fetched_bytes_total"), (double)(1 << 29));
	cr_assert_eq(value_of(&pg, "p2pvbd_served_bytes_total"), 12345);
	cr_assert_eq(value_of(&pg, "p2pvbd_bad_pieces_total"), 1);
	cr_assert_eq(value_of(&pg, "p2pvbd_generation"), 3);
	cr_assert_eq(value_of(&pg, "p2pvbd_complete"), 0);
	cr_assert_eq(value_of(&pg, "p2pvbd_final"), 0);
	cr_assert_eq(value_of(&pg, "p2pvbd_faults_waiting"), 2);
	cr_assert_eq(value_of(&pg, "p2pvbd_peers_connected"), 2);
	cr_assert_eq(value_of(&pg, "p2pvbd_image_size_bytes"), (double)(1 << 30));
	cr_assert_eq(value_of(&pg, "p2pvbd_fetch_bytes_per_second"), 12.5e6);
	cr_assert_eq(value_of(&pg, "p2pvbd_handshakes_in_progress"), 3);
	cr_assert_eq(value_of(&pg, "p2pvbd_handshakes_refused_total"), 6);
	cr_assert_eq(value_of(&pg, "p2pvbd_handshakes_dropped_total"), 7);
	cr_assert_eq(value_of(&pg, "p2pvbd_handshakes_late_total"), 8);
	cr_assert_eq(value_of(&pg, "p2pvbd_frames_late_total"), 9);
	free(text);
}

Test(metrics, peer_samples_carry_escaped_labels)
{
	struct swarm_status st;
	struct swarm_stats stats;
	struct swarm_peer_info peers[2];
	struct page pg;
	char *text;
	int rx = 0, chunks = 0;

	sample_snapshot(&st, &stats, peers);
	text = render(&st, &stats, peers, 2);
	cr_assert_not_null(strstr(text, "peer=\"we\\\\ird\\\"host\\nname:1\""), "%s", text);
	read_page(text, &pg);
	for (int i = 0; i < pg.nsmp; i++) {
		const struct sample *s = &pg.smp[i];

		if (strcmp(s->name, "p2pvbd_peer_receive_bytes_per_second") == 0) {
			const struct swarm_peer_info *p = &peers[rx++];

			cr_assert_str_eq(label(s, "peer"), p->address, "read back unescaped");
			cr_assert_str_eq(label(s, "role"), p->role);
			cr_assert_eq(s->value, p->fetch_rate);
		}
		if (strcmp(s->name, "p2pvbd_peer_chunks") == 0) {
			chunks++;
			cr_assert_str_eq(label(s, "peer"), "127.0.0.1:7001");
			cr_assert_eq(s->value, 4000);
		}
		if (strcmp(s->name, "p2pvbd_info") == 0) {
			cr_assert_str_eq(label(s, "output"), st.output);
			cr_assert_str_eq(label(s, "role"), "fetch");
			cr_assert_str_eq(label(s, "volume_id"), "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf");
		}
	}
	cr_assert_eq(rx, 2);
	cr_assert_eq(chunks, 1, "a peer whose holdings are unknown has no chunks sample");
	free(text);
}

Test(metrics, histogram_cumulative_ending_in_inf)
{
	struct swarm_status st;
	struct swarm_stats stats;
	struct swarm_peer_info peers[2];
	struct page pg;
	char *text;
	double last_le = -1, last_count = -1, inf = -1;
	int buckets = 0;

	sample_snapshot(&st, &stats, peers);
	text = render(&st, &stats, peers, 2);
	read_page(text, &pg);
	for (int i = 0; i < pg.nsmp; i++) {
		const struct sample *s = &pg.smp[i];
		const char *le = label(s, "le");
		double v;

		if (strcmp(s->name, "p2pvbd_fault_latency_seconds_bucket") != 0)
			continue;
		cr_assert_not_null(le);
		cr_assert_eq(inf, -1, "a bucket after +Inf");
		if (strcmp(le, "+Inf") == 0) {
			inf = s->value;
		} else {
			v = strtod(le, NULL);
			cr_assert_gt(v, last_le, "le ascending: %s", le);
			cr_assert_eq(v, swarm_fault_le_us[buckets] / 1e6, "bucket %d bound",
			             buckets);
			last_le = v;
		}
		cr_assert_geq(s->value, last_count, "cumulative at le=%s", le);
		last_count = s->value;
		buckets++;
	}
	cr_assert_eq(buckets, SWARM_FAULT_BUCKETS + 1);
	cr_assert_eq(last_le, 10, "the largest bound is 10 s");
	/* 4 in the first, 2 in the fourth, 1 in the last: 7 within 10 s, 3 slower. */
	cr_assert_eq(inf, 10);
	cr_assert_eq(value_of(&pg, "p2pvbd_fault_latency_seconds_count"), inf);
	cr_assert_eq(value_of(&pg, "p2pvbd_fault_latency_seconds_sum"), 55.25);
	cr_assert_not_null(strstr(text, "p2pvbd_fault_latency_seconds_bucket{le=\"0.001\"} 4\n"));
	cr_assert_not_null(strstr(text, "p2pvbd_fault_latency_seconds_bucket{le=\"0.01\"} 6\n"));
	cr_assert_not_null(strstr(text, "p2pvbd_fault_latency_seconds_bucket{le=\"5\"} 6\n"));
	cr_assert_not_null(strstr(text, "p2pvbd_fault_latency_seconds_bucket{le=\"10\"} 7\n"));
	free(text);
}

Test(metrics, no_peers_still_every_family)
{
	struct swarm_status st;
	struct swarm_stats stats;
	struct swarm_peer_info peers[2];
	struct page with, without;
	char *a, *b;

	sample_snapshot(&st, &stats, peers);
	a = render(&st, &stats, peers, 2);
	b = render(&st, &stats, NULL, 0);
	read_page(a, &with);
	read_page(b, &without);
	cr_assert_eq(with.nfam, without.nfam, "families do not depend on the peers");
	for (int i = 0; i < with.nfam; i++)
		cr_assert_str_eq(with.fam[i].name, without.fam[i].name);
	free(a);
	free(b);
}

Test(metrics, eta)
{
	struct swarm_status st;

	memset(&st, 0, sizeof(st));
	cr_assert_lt(metrics_eta(&st), 0, "no volume yet: unknown");
	st.have_root = 1;
	st.bytes_left = 1000;
	cr_assert_lt(metrics_eta(&st), 0, "nothing arriving: unknown");
	st.fetch_rate = 100;
	cr_assert_float_eq(metrics_eta(&st), 10.0, 1e-9);
	st.complete = 1;
	cr_assert_eq(metrics_eta(&st), 0);
	st.seed = 1;
	cr_assert_lt(metrics_eta(&st), 0, "a seed has no ETA");
}

Test(metrics, status_json_members)
{
	struct swarm_status st;
	struct swarm_stats stats;
	struct swarm_peer_info peers[2];
	struct evbuffer *b = evbuffer_new();
	char *s;

	sample_snapshot(&st, &stats, peers);
	metrics_status_json(b, &st, peers, 2);
	s = drain(b);
	cr_assert_eq(s[0], ',', "members to append inside the object");
	cr_assert_not_null(strstr(s, ",\"volume_id\":\"a0a1a2a3a4a5a6a7a8a9aaabacadaeaf\""));
	cr_assert_not_null(strstr(s, ",\"output\":\"/var/lib/vm \\\"one\\\"\\\\disk\\u000a.img\""),
	                   "%s", s);
	cr_assert_not_null(strstr(s, ",\"eta_s\":21.5,"), "2^28 / 12.5e6 = 21.47: %s", s);
	cr_assert_null(strstr(s, "\"receipts\""), "receipts only at a seed");
	cr_assert_not_null(strstr(s, ",\"handshakes_in_progress\":3,\"handshakes_refused\":6,"
	                             "\"handshakes_dropped\":7,\"handshakes_late\":8,"
	                             "\"frames_late\":9,"),
	                   "%s", s);
	cr_assert_not_null(strstr(s, ",\"peers\":[{\"address\":\"127.0.0.1:7001\",\"role\":"
	                             "\"source\",\"fetch_rate\":1000000,\"serve_rate\":0,"
	                             "\"chunks\":4000,"),
	                   "%s", s);
	cr_assert_not_null(strstr(s, "{\"address\":\"we\\\\ird\\\"host\\u000aname:1\",\"role\":"
	                             "\"peer\",\"fetch_rate\":0,\"serve_rate\":250000,"
	                             "\"chunks\":null,"),
	                   "%s", s);
	for (const char *p = s; *p; p++)
		cr_assert_geq((unsigned char)*p, 0x20, "no raw control character");
	free(s);

	st.seed = 1;
	st.receipts = 7;
	st.output = NULL;
	b = evbuffer_new();
	metrics_status_json(b, &st, NULL, 0);
	s = drain(b);
	cr_assert_not_null(strstr(s, ",\"output\":null,\"eta_s\":null,"), "%s", s);
	cr_assert_not_null(strstr(s, ",\"receipts\":7,"), "%s", s);
	cr_assert_not_null(strstr(s, ",\"peers\":[]"), "%s", s);
	free(s);
}

Test(metrics, status_text_table)
{
	struct swarm_status st;
	struct swarm_stats stats;
	struct swarm_peer_info peers[2];
	struct evbuffer *b = evbuffer_new();
	char *s;

	sample_snapshot(&st, &stats, peers);
	metrics_status_text(b, &st, peers, 1);
	s = drain(b);
	cr_assert_not_null(strstr(s, "volume a0a1a2a3a4a5a6a7a8a9aaabacadaeaf"), "%s", s);
	cr_assert_not_null(strstr(s, "127.0.0.1:7001"), "%s", s);
	cr_assert_not_null(strstr(s, "source"), "%s", s);
	cr_assert_not_null(strstr(s, "4000"), "%s", s);
	free(s);
}

Test(metrics, values_in_the_formats_spelling)
{
	struct swarm_status st;
	struct swarm_stats stats;
	struct swarm_peer_info peers[2];
	struct page pg;
	char *text;

	sample_snapshot(&st, &stats, peers);
	st.fetch_rate = NAN;
	st.serve_rate = INFINITY;
	peers[0].fetch_rate = 1.5;
	text = render(&st, &stats, peers, 2);
	cr_assert_not_null(strstr(text, "\np2pvbd_fetch_bytes_per_second NaN\n"), "%s", text);
	cr_assert_not_null(strstr(text, "\np2pvbd_serve_bytes_per_second +Inf\n"), "%s", text);
	cr_assert_not_null(strstr(text, ",role=\"source\"} 1.5\n"), "%s", text);
	cr_assert_not_null(strstr(text, "\np2pvbd_image_size_bytes 1073741824\n"),
	                   "integers exact");
	read_page(text, &pg);
	free(text);
}
