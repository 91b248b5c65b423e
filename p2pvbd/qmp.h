/* SPDX-License-Identifier: ISC */
/*
 * qmp: a small blocking client of QEMU's machine protocol (QMP: JSON lines
 * over a unix socket), on jansson. One connection per struct qmp; calls on
 * one connection must come from one thread at a time.
 *
 * Never call it from the thread of an event loop that serves the same QEMU
 * over NBD: many QMP commands (stop, blockdev-mirror, block-job-cancel,
 * blockdev-del, blockdev-reopen, ...) drain the guest's I/O before they
 * answer, and the drain waits for that loop. Run QMP work on a thread of
 * its own.
 */
#ifndef P2PVBD_QMP_H
#define P2PVBD_QMP_H

#include <stddef.h>

#include <jansson.h>

/* Bounds: a line from QEMU (a reply or an event), events kept until read. */
#define QMP_LINE_MAX   (4u << 20)
#define QMP_EVENTS_MAX 256

struct qmp;

/*
 * Connects to the QMP socket at path, reads the greeting and negotiates
 * capabilities, within timeout_ms. NULL on failure, with a message in
 * err (what failed and what to check).
 */
struct qmp *qmp_open(const char *path, int timeout_ms, char *err, size_t errlen);
void qmp_close(struct qmp *q);

/*
 * Runs command cmd with args (a JSON object, or NULL; the reference is
 * stolen) and waits up to timeout_ms for its answer; events that arrive
 * meanwhile are queued (QMP_EVENTS_MAX; the oldest are dropped beyond).
 * 0 on success, with the "return" value in *ret (a new reference; pass
 * NULL to drop it). -1 on a QMP error (err has its class and description:
 * "GenericError: ..."), a timeout, or a broken connection.
 */
int qmp_exec(struct qmp *q, const char *cmd, json_t *args, json_t **ret, int timeout_ms, char *err,
             size_t errlen);

/*
 * Like qmp_exec, with the arguments built by jansson's json_pack from fmt
 * (e.g. "{s:s, s:b}", "device", name, "force", 1); fmt NULL for none.
 */
int qmp_execf(struct qmp *q, json_t **ret, int timeout_ms, char *err, size_t errlen,
              const char *cmd, const char *fmt, ...);

/*
 * Waits up to timeout_ms for an event named name (any event if NULL),
 * queued ones first. 0 with the event object in *ev (a new reference, or
 * dropped if ev is NULL), 1 on timeout, -1 if the connection broke.
 */
int qmp_wait_event(struct qmp *q, const char *name, int timeout_ms, json_t **ev, char *err,
                   size_t errlen);

/*
 * 1 once the connection closed or failed (QEMU exited, or dropped us): every
 * later call fails at once. A timeout alone does not break it.
 */
int qmp_broken(const struct qmp *q);

/*
 * One line from QEMU, parsed and classified: 0 a reply (*obj), 1 an event,
 * -1 not a QMP message (err says why). Exposed for the unit tests and the
 * fuzzer; the connection uses it for every line it reads.
 */
int qmp_parse_line(const char *line, size_t len, json_t **obj, char *err, size_t errlen);

#endif
