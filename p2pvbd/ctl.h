/* SPDX-License-Identifier: ISC */
/*
 * ctl: the control socket of a running seed or fetch (a Unix socket, mode
 * 0600). A client sends one command line; the reply follows and the
 * connection closes:
 *
 *   status         what the process is doing, for people
 *   status json    the same as one JSON object
 *   freeze, thaw   (seed) live migration's switchover, see swarm_freeze
 *   migrate [--postcopy] [--timeout SECS] URI
 *                  (seed --qmp) run a QEMU migration's switchover, see migrate.h
 *
 * The commands are answered, and `p2pvbd status PATH [--json]` and
 * `p2pvbd ctl PATH COMMAND` are its clients, in cli/cmd_ctl.c.
 * A handler may answer later (ctl_reply_later): the client waits.
 */
#ifndef P2PVBD_CTL_H
#define P2PVBD_CTL_H

#include <event2/buffer.h>
#include <event2/event.h>

/* A command line is at most this long; a client that sends more is dropped. */
#define CTL_MAX_LINE 256
/* A client that has not sent its line within this many seconds is dropped. */
#define CTL_TIMEOUT_S 5

/* One client waiting for its answer. */
struct ctl_reply;

/*
 * Answer cmd (NUL-terminated, without the newline) into ctl_reply_out(r).
 * The reply ends when the handler returns, unless it called
 * ctl_reply_later(r): then it ends at ctl_reply_end(r), which the handler's
 * owner must call once (the connection stays open until then). That call may
 * come from inside the handler itself (the answer was ready at once).
 */
typedef void (*ctl_handler)(void *arg, const char *cmd, struct ctl_reply *r);
struct evbuffer *ctl_reply_out(struct ctl_reply *r);
void ctl_reply_later(struct ctl_reply *r);
void ctl_reply_end(struct ctl_reply *r);

struct ctl;

/*
 * Listen on path. A stale socket there is replaced; anything else there (a
 * file, a socket in use) is refused: NULL (logged).
 */
struct ctl *ctl_new(struct event_base *base, const char *path, ctl_handler fn, void *arg);
/* Stop listening and remove the socket (if it is still ours). */
void ctl_free(struct ctl *c);

/*
 * Client: send cmd to the socket at path and copy the reply to stdout. 0,
 * or -1 (logged; also when the reply starts with "error:"). Waits at most
 * timeout_s seconds for the reply.
 */
int ctl_request(const char *path, const char *cmd, int timeout_s);

#endif
