/* SPDX-License-Identifier: ISC */
/*
 * progress: what a fetch shows of its progress. For people, on stdout: a bar
 * that fits the terminal, or a line every 5 s when stdout is not one. For
 * plots, --progress-log: "UNIX-TIME BYTES-DONE BYTES-TOTAL" lines.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "swarm.h"
#include "util.h"

/* The progress bar's width in columns: at most (more says nothing more), at least (or none). */
#define PROGRESS_BAR_MAX 30
#define PROGRESS_BAR_MIN 10
/* Without a terminal, a progress line every this many ns. */
#define PROGRESS_LINE_NS 5000000000ull

struct progress {
	struct event *ev;
	struct swarm *sw;
	int tty;
	int drawn;   /* a bar is on the terminal's current line */
	int stopped; /* not a terminal: the line saying "done" was printed */
	uint64_t start_ns, last_ns, last_done;
	int have_first;
	double rate; /* bytes/s, smoothed */
	uint64_t last_line_ns;
};

/* Before a log line: take the bar off its line (it is drawn again at the next tick). */
static void progress_clear(void *arg)
{
	struct progress *pr = arg;

	if (pr->drawn) {
		fputs("\r\033[K", stdout);
		fflush(stdout);
		pr->drawn = 0;
	}
}

static void fmt_eta(double secs, char *buf, size_t len)
{
	unsigned long s = secs > 0 && secs < 1e7 ? (unsigned long)secs : 0;

	if (secs <= 0 || secs >= 1e7)
		snprintf(buf, len, "ETA --:--");
	else if (s >= 3600)
		snprintf(buf, len, "ETA %lu:%02lu:%02lu", s / 3600, s / 60 % 60, s % 60);
	else
		snprintf(buf, len, "ETA %lu:%02lu", s / 60, s % 60);
}

/* Columns of the terminal on stdout (80 if it does not say). */
static int term_columns(void)
{
	struct winsize ws;

	if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 20)
		return ws.ws_col;
	return 80;
}

/* The bar and text on the terminal's current line; a newline after the final one. */
static void progress_draw_tty(struct progress *pr, const char *text, double pct, int final)
{
	int cols = term_columns(), width = cols - 1 - (int)strlen(text) - 3;
	char bar[PROGRESS_BAR_MAX + 1];

	if (width > PROGRESS_BAR_MAX)
		width = PROGRESS_BAR_MAX;
	if (width >= PROGRESS_BAR_MIN) {
		int fill = (int)(pct * width / 100);

		for (int i = 0; i < width; i++)
			bar[i] = i < fill ? '#' : '.';
		bar[width] = '\0';
		printf("\r\033[K[%s] %.*s", bar, cols - 1 - width - 3, text);
	} else {
		printf("\r\033[K%.*s", cols - 1, text);
	}
	pr->drawn = 1;
	if (final) {
		printf("\n");
		pr->drawn = 0;
	}
	fflush(stdout);
}

/*
 * Percent, rate and ETA count the bytes that must travel (zero chunks never
 * do). On a terminal: one bar that fits the width; otherwise a line every
 * 5 s until the volume is complete, then one last line and no more.
 */
static void progress_draw(struct progress *pr, int final)
{
	uint64_t done, total, now = now_ns();
	char b1[16], b2[16], b3[16], eta[32], text[160];
	double pct, dt;
	int complete;

	swarm_travel(pr->sw, &done, &total);
	if (!swarm_volume_size(pr->sw) || pr->stopped)
		return;
	complete = swarm_complete(pr->sw);
	if (!pr->have_first) {
		pr->have_first = 1;
		pr->last_done = done;
		pr->last_ns = now;
	}
	dt = (double)(now - pr->last_ns) / 1e9;
	if (dt >= 0.5) {
		double inst = done > pr->last_done ? (double)(done - pr->last_done) / dt : 0;

		pr->rate = pr->rate == 0 ? inst : 0.7 * pr->rate + 0.3 * inst;
		pr->last_done = done;
		pr->last_ns = now;
	}
	/* The last line shows the average network rate over the whole run. */
	if (final && now > pr->start_ns)
		pr->rate = (double)swarm_stats(pr->sw)->bytes_fetched /
		           ((double)(now - pr->start_ns) / 1e9);
	pct = total ? 100.0 * (double)done / (double)total : 100.0;
	if (complete)
		snprintf(eta, sizeof(eta), "done");
	else
		fmt_eta(pr->rate > 0 ? (double)(total - done) / pr->rate : -1, eta, sizeof(eta));
	snprintf(text, sizeof(text), "%5.1f%%  %s / %s  %s/s  %s", pct,
	         fmt_bytes(done, b1, sizeof(b1)), fmt_bytes(total, b2, sizeof(b2)),
	         fmt_bytes((uint64_t)pr->rate, b3, sizeof(b3)), eta);
	if (pr->tty) {
		progress_draw_tty(pr, text, pct, final);
	} else if (final || complete || now - pr->last_line_ns >= PROGRESS_LINE_NS) {
		pr->last_line_ns = now;
		printf("progress: %s\n", text);
		fflush(stdout);
		pr->stopped = complete || final;
	}
}

static void progress_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	progress_draw(arg, 0);
}

struct progress *progress_new(struct event_base *base, struct swarm *sw)
{
	struct progress *pr = xcalloc(1, sizeof(*pr));
	struct timeval tv;

	pr->sw = sw;
	pr->tty = isatty(STDOUT_FILENO);
	pr->start_ns = now_ns();
	tv.tv_sec = pr->tty ? 0 : 1;
	tv.tv_usec = pr->tty ? 200000 : 0;
	pr->ev = event_new(base, -1, EV_PERSIST, progress_cb, pr);
	event_add(pr->ev, &tv);
	if (pr->tty)
		log_set_before(progress_clear, pr);
	return pr;
}

void progress_final(struct progress *pr)
{
	if (pr != NULL)
		progress_draw(pr, 1);
}

void progress_free(struct progress *pr)
{
	if (pr == NULL)
		return;
	if (pr->tty)
		log_set_before(NULL, NULL); /* pr goes */
	if (pr->ev)
		event_free(pr->ev);
	free(pr);
}

/* ---- --progress-log ---------------------------------------------------- */

/* Machine-readable progress for plots, "UNIX-TIME DONE TOTAL" per line. */
struct progress_log {
	FILE *f;
	struct event *ev;
	struct swarm *sw;
};

static void progress_log_write(struct progress_log *pl)
{
	struct timespec ts;
	uint64_t done, total;

	clock_gettime(CLOCK_REALTIME, &ts);
	swarm_progress(pl->sw, &done, &total);
	fprintf(pl->f, "%lld.%03ld %llu %llu\n", (long long)ts.tv_sec, ts.tv_nsec / 1000000,
	        (unsigned long long)done, (unsigned long long)total);
	fflush(pl->f);
}

static void progress_log_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	progress_log_write(arg);
}

struct progress_log *progress_log_new(struct event_base *base, struct swarm *sw, const char *path)
{
	struct timeval tv = {0, 200000};
	struct progress_log *pl;
	FILE *f = fopen(path, "a");

	if (f == NULL) {
		log_error("cannot open %s: %s", path, strerror(errno));
		return NULL;
	}
	pl = xcalloc(1, sizeof(*pl));
	pl->f = f;
	pl->sw = sw;
	pl->ev = event_new(base, -1, EV_PERSIST, progress_log_cb, pl);
	event_add(pl->ev, &tv);
	return pl;
}

void progress_log_final(struct progress_log *pl)
{
	if (pl != NULL)
		progress_log_write(pl);
}

void progress_log_free(struct progress_log *pl)
{
	if (pl == NULL)
		return;
	if (pl->ev)
		event_free(pl->ev);
	fclose(pl->f);
	free(pl);
}
