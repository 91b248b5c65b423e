/* SPDX-License-Identifier: ISC */
/*
 * The p2pvbd command line's private header, its declarations grouped by the
 * file that defines them. main.c dispatches to the command table; each
 * command is one file (cmd_*.c) that parses its options into a struct, then
 * acts on the struct. cli.h holds what p2pvbd-tracker shares.
 */
#ifndef P2PVBD_CLI_INTERNAL_H
#define P2PVBD_CLI_INTERNAL_H

#include <event2/event.h>

#include "cli.h"
#include "nbd_tls.h"
#include "util.h"

struct ctl;
struct metrics;
struct migrate;
struct swarm;
struct uri_peer;

/* main.c */

/*
 * One command of p2pvbd: `p2pvbd NAME ...` runs exec with argv[0] = NAME
 * (argc counts from there) and exits with its result. `p2pvbd --help` lists
 * every entry as "NAME ARGS" and its summary.
 */
struct cmd_entry {
	const char *name;
	const char *args;    /* the synopsis after the name: "[OPTIONS] IMAGE" */
	const char *summary; /* one line for p2pvbd --help */
	const char *usage;   /* the whole `p2pvbd NAME --help` */
	int (*exec)(int argc, char **argv);
};

/*
 * What a command's parse function returns when the command should go on;
 * any other value is its exit code (0 after --help, CLI_EXIT_USAGE...).
 */
#define CMD_PROCEED (-1)

/* cmd_keygen.c */
extern const struct cmd_entry cmd_keygen_entry;

/* cmd_seed.c */
extern const struct cmd_entry cmd_seed_entry;

/* cmd_fetch.c */
extern const struct cmd_entry cmd_fetch_entry;

/* cmd_ctl.c: the status and ctl commands, and the server side of the control socket. */
extern const struct cmd_entry cmd_status_entry;
extern const struct cmd_entry cmd_ctl_entry;
/*
 * While a seed or fetch runs: the control socket, the --metrics endpoint and
 * the signals that stop it.
 */
struct cmd_ctl_server {
	struct ctl *ctl;
	struct metrics *mx;
	struct event *sigs[CLI_NSIGNALS];
	struct swarm *sw;
	/* seed --qmp: `ctl migrate` runs the switchover (set before start; not owned). */
	struct migrate *mig;
};
/*
 * Start them for sw: the control socket at ctl_path, or at the default of
 * role ("seed", "fetch"; logged, best effort), metrics at metrics_at if not
 * NULL, the signals. 0, or -1 (logged). cmd_ctl_server_stop(cs) in any case,
 * before the swarm is freed.
 */
int cmd_ctl_server_start(struct cmd_ctl_server *cs, struct event_base *base, struct swarm *sw,
                         const char *role, const char *ctl_path, const struct uri_peer *metrics_at);
void cmd_ctl_server_stop(struct cmd_ctl_server *cs);
/* --freeze-on-disconnect: an nbd_server_set_idle_cb callback; arg is the swarm. */
void cmd_ctl_freeze_on_idle(void *arg);

/* export_tls.c: the NBD export's TLS options, shared by seed and fetch. */
enum {
	EXPORT_O_TLS = 512, /* getopt values, above every command's own */
	EXPORT_O_TLS_PSK,
	EXPORT_O_TLS_CREDS,
	EXPORT_O_TLS_VERIFY_PEER
};
/* The entries of a command's struct option table. */
#define EXPORT_TLS_LONG_OPTIONS                                                                    \
	{"tls", required_argument, NULL, EXPORT_O_TLS},                                            \
	    {"tls-psk", required_argument, NULL, EXPORT_O_TLS_PSK},                                \
	    {"tls-creds", required_argument, NULL, EXPORT_O_TLS_CREDS},                            \
	{                                                                                          \
		"tls-verify-peer", no_argument, NULL, EXPORT_O_TLS_VERIFY_PEER                     \
	}
/* One EXPORT_O_* option c with value arg into t: CMD_PROCEED or the exit code (who: usage). */
int export_tls_option(struct nbd_tls_opts *t, int c, const char *arg, const char *who);
/*
 * Once every option is parsed: the TLS options against -e (export_spec, or
 * NULL): with credentials TLS is required; a TCP export needs TLS or
 * --tls=off. Sets t->mode. CMD_PROCEED or the exit code.
 */
int export_tls_check(struct nbd_tls_opts *t, const char *export_spec, const char *who);
/* The credentials t names (*cr = NULL without TLS); 0 or -1 (logged). */
int export_tls_load(const struct nbd_tls_opts *t, struct nbd_tls_creds **cr);

/* fetch_pivot.c: fetch --qmp --drive, moving the destination VM onto OUT at the end. */
struct fetch_pivot;
struct nbd_server;
/*
 * Watch sw: once OUT is complete at the final generation, the export *srv is
 * up and QEMU at qmp_path is not migrating in, move its drive onto out on a
 * thread of its own; then call moved(arg) on the loop (fetch closes the
 * export and ends). A failed move is logged and leaves the VM on the export.
 * NULL on failure (logged). All strings are borrowed.
 */
struct fetch_pivot *fetch_pivot_new(struct event_base *base, struct swarm *sw,
                                    struct nbd_server *const *srv, const char *qmp_path,
                                    const char *drive, const char *out,
                                    void (*moved)(void *arg), void *arg);
/* A move is under way: the loop must keep serving the export until it ends. */
int fetch_pivot_busy(const struct fetch_pivot *fp);
/* Stop watching, wait for a QMP job still running, free fp (NULL is fine). */
void fetch_pivot_free(struct fetch_pivot *fp);

/* progress.c: a fetch's progress, for people (stdout) and for plots (--progress-log). */
struct progress;
/*
 * Draw sw's progress on stdout from now on: a bar on a terminal, else a line
 * every 5 s. The caller frees it with progress_free, before the swarm.
 */
struct progress *progress_new(struct event_base *base, struct swarm *sw);
/* The last line, at exit: the average rate over the whole run. pr may be NULL. */
void progress_final(struct progress *pr);
/* Stop drawing and free pr (NULL is fine). */
void progress_free(struct progress *pr);

struct progress_log;
/*
 * Append "UNIX-TIME DONE TOTAL" to path every 0.2 s; NULL if path cannot be
 * opened (logged). The caller frees it with progress_log_free, before the swarm.
 */
struct progress_log *progress_log_new(struct event_base *base, struct swarm *sw, const char *path);
/* One last line, at exit. pl may be NULL. */
void progress_log_final(struct progress_log *pl);
/* Stop, close the file and free pl (NULL is fine). */
void progress_log_free(struct progress_log *pl);

#endif
