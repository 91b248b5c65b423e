/* SPDX-License-Identifier: ISC */
/*
 * util: logging, allocation wrappers that never return NULL, growable arrays,
 * bitmaps, hex, time.
 */
#ifndef P2PVBD_UTIL_H
#define P2PVBD_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

enum log_level { LOG_LEVEL_ERROR = 0, LOG_LEVEL_WARN = 1, LOG_LEVEL_INFO = 2, LOG_LEVEL_DEBUG = 3 };

/*
 * Messages go to stderr, prefixed with the program name and level, and:
 *  - LOG_STYLE_JOURNAL under systemd (JOURNAL_STREAM names stderr): a "<N>"
 *    syslog priority prefix, which journald reads (it adds the time);
 *  - LOG_STYLE_TIME when stderr is not a terminal: an ISO 8601 UTC
 *    timestamp ("2026-12-07T17:01:02.345Z");
 *  - LOG_STYLE_PLAIN on a terminal.
 * P2PVBD_LOG_TIME=1 forces timestamps, =0 turns them off (not under systemd).
 */
enum log_style { LOG_STYLE_PLAIN, LOG_STYLE_TIME, LOG_STYLE_JOURNAL };
void log_init(const char *progname, int level);
enum log_style log_style(void);
int log_level(void);
/* fn(arg) runs before each message is written (the progress bar clears its line). */
void log_set_before(void (*fn)(void *arg), void *arg);
void log_msg(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define log_error(...) log_msg(LOG_LEVEL_ERROR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug(...)                                                                             \
	do {                                                                                       \
		if (log_level() >= LOG_LEVEL_DEBUG)                                                \
			log_msg(LOG_LEVEL_DEBUG, __VA_ARGS__);                                     \
	} while (0)

/* For bugs and out-of-memory only: logs and aborts. */
void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* Allocation that aborts on failure; the caller owns the result. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/*
 * Room for one more element in the array p of *cap elements of elem bytes
 * that holds n: when it is full (n >= *cap), its capacity doubles (or
 * becomes initial from 0). Returns the array, reallocated or not.
 */
void *xgrow(void *p, size_t *cap, size_t n, size_t elem, size_t initial);

/*
 * Bitmaps: bit i of map is (map[i / 8] >> (i % 8)) & 1. bitmap_new returns
 * one for nbits bits, all clear, with a spare byte at the end (so that even
 * an empty one is a byte that can be read); the caller frees it.
 */
uint8_t *bitmap_new(uint64_t nbits);
static inline int bit_get(const uint8_t *map, uint32_t i)
{
	return (map[i >> 3] >> (i & 7)) & 1;
}
static inline void bit_set(uint8_t *map, uint32_t i)
{
	map[i >> 3] |= (uint8_t)(1u << (i & 7));
}
static inline void bit_clear(uint8_t *map, uint32_t i)
{
	map[i >> 3] &= (uint8_t) ~(1u << (i & 7));
}

/* Lower-case hex of n bytes into out (2n+1 bytes, NUL-terminated). */
void hex_encode(const uint8_t *in, size_t n, char *out);
/* Value of one hex digit (either case), or -1. */
int hex_digit(int c);
/* Exactly 2n hex digits (either case) into n bytes; 0 or -1. */
int hex_decode(const char *in, size_t in_len, uint8_t *out, size_t n);

/*
 * File I/O at an offset, retrying short transfers and EINTR.
 * read_at: bytes read (fewer than len only at end of file) or -1 (errno).
 * write_at: 0, or -1 (errno; ENOSPC when no progress is made).
 * zero_at: zero len bytes at off: deallocated (punch != 0) or allocated zeros,
 * written out where the file system cannot; 0 or -1 (errno).
 */
ssize_t read_at(int fd, void *buf, size_t len, uint64_t off);
int write_at(int fd, const void *buf, size_t len, uint64_t off);
int zero_at(int fd, uint64_t off, uint64_t len, int punch);
/* fsync the directory that holds path, so that a name made in it survives a crash. 0 or -1
 * (logged). */
int fsync_dir_of(const char *path);

/* Monotonic clock in nanoseconds. */
uint64_t now_ns(void);
/* Time unit conversions (NS_PER_S: nanoseconds in a second). */
#define NS_PER_S  1000000000u
#define NS_PER_MS 1000000u
#define NS_PER_US 1000u
#define US_PER_S  1000000u
#define MS_PER_S  1000u

/* "1.5 GiB", "312 KiB": into buf of at least 16 bytes; returns buf. */
char *fmt_bytes(uint64_t n, char *buf, size_t len);

#endif
