/* SPDX-License-Identifier: ISC */
/*
 * cli: what the command lines of both programs (p2pvbd and p2pvbd-tracker)
 * share: usage errors, the checks made before any work, writing a small file
 * atomically, and the signals that stop a program cleanly. The parsers of
 * option values (sizes, rates, durations, HOST:PORT) are in parse.h.
 *
 * Exit codes of both programs: 0 success, 1 failure, CLI_EXIT_USAGE.
 */
#ifndef P2PVBD_CLI_H
#define P2PVBD_CLI_H

#include <stdint.h>

#include <event2/event.h>

/* The exit code of a usage error (a bad option or argument; nothing was done). */
#define CLI_EXIT_USAGE 2
/* Signals that stop a program cleanly: SIGINT, SIGTERM, SIGHUP. */
#define CLI_NSIGNALS 3

/*
 * A usage error: one line saying what is wrong, one pointing at the help
 * (the whole help text would bury the message). who is the command line up
 * to its options, "p2pvbd seed" or "p2pvbd-tracker". Returns CLI_EXIT_USAGE.
 */
int cli_usage_error(const char *who, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * HOST:PORT or [IPV6]:PORT to listen on (--listen, --metrics; port 0: any
 * free port) into p; parse_hostport's rules. 0 or -1.
 */
struct uri_peer;
int cli_parse_listen(const char *spec, struct uri_peer *p);

/*
 * What getopt refused (its own message is off: opterr = 0), for
 * cli_usage_error. Valid until the next call.
 */
const char *cli_bad_option(char **argv);

/*
 * Checks before work: everything cheap is checked before an image is hashed
 * or a peer dialled, so that a mistake costs a second, not the minutes of a
 * hash. Each logs the reason (what names the option) and returns -1, or 0.
 */
/* host:port can be bound now (the listener itself comes later). */
int cli_check_bind(const char *host, uint16_t port, const char *what);
/* -e ADDR: a Unix socket path we may take, or a TCP address we can bind. */
int cli_check_export(const char *spec);
/* A Unix socket path (--ctl, -e unix:PATH): not someone else's (sockpath_claim), and its
 * directory can take it. */
int cli_check_socket_path(const char *path, const char *what);
/* host resolves. */
int cli_check_resolves(const char *host, const char *what);
/* A tracker URL: http://HOST[:PORT]/PATH whose host resolves. */
int cli_check_tracker(const char *url);
/* A file we will write later (--stats, --progress-log, --uri-file): not a directory, writable. */
int cli_check_writable(const char *path, const char *what);

/* Write the string data to path atomically (temp file, fsync, rename); 0 or -1 (logged). */
int cli_write_file_atomic(const char *path, const char *data);

/*
 * SIGINT, SIGTERM and SIGHUP (the terminal went away) all call fn(sig, EV_SIGNAL,
 * arg) from the loop of base: the program stops cleanly. ev receives the events;
 * cli_signals_free frees them (the NULL ones too).
 */
void cli_signals_add(struct event_base *base, event_callback_fn fn, void *arg,
                     struct event *ev[CLI_NSIGNALS]);
void cli_signals_free(struct event *ev[CLI_NSIGNALS]);

/* Where a block device's sidecar files go unless --state-dir says otherwise (never /dev). */
#define CLI_BLOCKDEV_STATE_DIR "/var/lib/p2pvbd"
/*
 * Where the sidecar files of an image (fetch's OUT.p2pvbd-state, -key,
 * -pages; seed's IMAGE.p2pvbd-seed) go, as a path prefix: the image's path
 * itself, or DIR/basename with --state-dir DIR; a block device's in
 * CLI_BLOCKDEV_STATE_DIR unless --state-dir says otherwise. The directory is
 * made (0700) if missing. NULL (logged) if it cannot be. Caller frees.
 */
char *cli_sidecar(const char *path, const char *state_dir);

#endif
