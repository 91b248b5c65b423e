/* SPDX-License-Identifier: ISC */
/*
 * util: logging, allocation wrappers, hex, time, sizes.
 */
#include "util.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <fcntl.h>
#include <libgen.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *log_prog = "p2pvbd";
static int log_lvl = LOG_LEVEL_INFO;
static enum log_style log_style_now = LOG_STYLE_PLAIN;
static void (*log_before_fn)(void *arg);
static void *log_before_arg;

/*
 * systemd connects stderr to the journal and says so in JOURNAL_STREAM
 * ("DEVICE:INODE" of that stream): only then are "<N>" prefixes right.
 */
static int stderr_is_journal(void)
{
	const char *js = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;

	if (js == NULL || sscanf(js, "%llu:%llu", &dev, &ino) != 2 ||
	    fstat(STDERR_FILENO, &st) != 0)
		return 0;
	return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void log_init(const char *progname, int level)
{
	const char *force = getenv("P2PVBD_LOG_TIME");

	log_prog = progname;
	log_lvl = level;
	if (stderr_is_journal())
		log_style_now = LOG_STYLE_JOURNAL;
	else if (force != NULL && force[0] != '\0')
		log_style_now = strcmp(force, "0") == 0 ? LOG_STYLE_PLAIN : LOG_STYLE_TIME;
	else
		log_style_now = isatty(STDERR_FILENO) ? LOG_STYLE_PLAIN : LOG_STYLE_TIME;
}

enum log_style log_style(void)
{
	return log_style_now;
}

void log_set_before(void (*fn)(void *arg), void *arg)
{
	log_before_fn = fn;
	log_before_arg = arg;
}

int log_level(void)
{
	return log_lvl;
}

/* "2026-12-07T17:01:02.345Z": ISO 8601, UTC, milliseconds. */
static void iso8601_now(char *buf, size_t len)
{
	struct timespec ts;
	struct tm tm;
	char sec[32];

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(sec, sizeof(sec), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf, len, "%s.%03dZ", sec, (int)(ts.tv_nsec / 1000000) % 1000);
}

void log_msg(int level, const char *fmt, ...)
{
	static const char *names[] = {"error", "warning", "info", "debug"};
	/* syslog priorities, as sd-daemon(3) prefixes them: err, warning, info, debug. */
	static const int prio[] = {3, 4, 6, 7};
	char buf[1024], stamp[64];
	va_list ap;
	int l = level < 0 ? 0 : level > 3 ? 3 : level;

	if (level > log_lvl)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (log_before_fn != NULL)
		log_before_fn(log_before_arg);
	/* One fprintf so that lines from concurrent processes do not interleave. */
	switch (log_style_now) {
	case LOG_STYLE_JOURNAL:
		fprintf(stderr, "<%d>%s: %s: %s\n", prio[l], log_prog, names[l], buf);
		break;
	case LOG_STYLE_TIME:
		iso8601_now(stamp, sizeof(stamp));
		fprintf(stderr, "%s %s: %s: %s\n", stamp, log_prog, names[l], buf);
		break;
	default:
		fprintf(stderr, "%s: %s: %s\n", log_prog, names[l], buf);
	}
}

void fatal(const char *fmt, ...)
{
	char buf[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	fprintf(stderr, "%s: fatal: %s\n", log_prog, buf);
	abort();
}

void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (p == NULL)
		fatal("out of memory allocating %zu bytes", n);
	return p;
}

void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);

	if (p == NULL)
		fatal("out of memory allocating %zu x %zu bytes", n, size);
	return p;
}

void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);

	if (q == NULL)
		fatal("out of memory reallocating %zu bytes", n);
	return q;
}

void *xgrow(void *p, size_t *cap, size_t n, size_t elem, size_t initial)
{
	if (n < *cap)
		return p;
	if (*cap > SIZE_MAX / 2 / elem)
		fatal("array of %zu x %zu bytes cannot grow", *cap, elem);
	*cap = *cap ? 2 * *cap : initial;
	return xrealloc(p, *cap * elem);
}

uint8_t *bitmap_new(uint64_t nbits)
{
	return xcalloc((size_t)((nbits + 7) / 8 + 1), 1);
}

char *xstrdup(const char *s)
{
	char *p = strdup(s);

	if (p == NULL)
		fatal("out of memory");
	return p;
}

char *xasprintf(const char *fmt, ...)
{
	char *p;
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&p, fmt, ap);
	va_end(ap);
	if (n < 0)
		fatal("out of memory");
	return p;
}

void hex_encode(const uint8_t *in, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 15];
	}
	out[2 * n] = '\0';
}

int hex_digit(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int hex_decode(const char *in, size_t in_len, uint8_t *out, size_t n)
{
	if (in_len != 2 * n)
		return -1;
	for (size_t i = 0; i < n; i++) {
		int hi = hex_digit(in[2 * i]), lo = hex_digit(in[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return -1;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}

uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

char *fmt_bytes(uint64_t n, char *buf, size_t len)
{
	static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
	double v = (double)n;
	size_t u = 0;

	while (v >= 1024 && u + 1 < ARRAY_LEN(units)) {
		v /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(buf, len, "%llu B", (unsigned long long)n);
	else
		snprintf(buf, len, "%.1f %s", v, units[u]);
	return buf;
}

/* ---- file I/O ---------------------------------------------------------- */

/* Read up to len bytes at off, retrying short reads; bytes read (< len only at EOF) or -1. */
ssize_t read_at(int fd, void *buf, size_t len, uint64_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = pread(fd, (char *)buf + done, len - done, (off_t)(off + done));

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (n == 0)
			break;
		done += (size_t)n;
	}
	return (ssize_t)done;
}

/* Write all len bytes at off, retrying short writes; 0 or -1 with errno set. */
int write_at(int fd, const void *buf, size_t len, uint64_t off)
{
	while (len > 0) {
		ssize_t n = pwrite(fd, buf, len, (off_t)off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (n == 0) {
			/* pwrite makes no progress only when the device is full. */
			errno = ENOSPC;
			return -1;
		}
		buf = (const char *)buf + n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

/* Zeros written where fallocate cannot make them (a file system without it). */
#define ZERO_BUF_LEN (64u * 1024u)

int zero_at(int fd, uint64_t off, uint64_t len, int punch)
{
	static const uint8_t zeros[ZERO_BUF_LEN];
	int mode = FALLOC_FL_KEEP_SIZE | (punch ? FALLOC_FL_PUNCH_HOLE : FALLOC_FL_ZERO_RANGE);

	if (fallocate(fd, mode, (off_t)off, (off_t)len) == 0)
		return 0;
	if (errno != EOPNOTSUPP && errno != ENOSYS)
		return -1;
	while (len > 0) {
		size_t n = len < sizeof(zeros) ? (size_t)len : sizeof(zeros);

		if (write_at(fd, zeros, n, off) < 0)
			return -1;
		off += n;
		len -= n;
	}
	return 0;
}

int fsync_dir_of(const char *path)
{
	char *copy = xstrdup(path);
	const char *dir = dirname(copy);
	int fd, ret = -1;

	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		log_error("opening directory %s: %s", dir, strerror(errno));
		goto out;
	}
	if (fsync(fd) < 0) {
		log_error("syncing directory %s: %s", dir, strerror(errno));
		goto out;
	}
	ret = 0;
out:
	if (fd >= 0)
		close(fd);
	free(copy);
	return ret;
}
