/* SPDX-License-Identifier: ISC */
/*
 * vmattach: a seed attached to a running QEMU's disk through QMP (seed
 * --qmp SOCKET --drive NODE|DEVICE), the push design of PROTOCOL.md §9.5:
 * QEMU mirrors the drive (blockdev-mirror, sync=full, copy-mode=
 * write-blocking) into an nbd node (blockdev-add) that is a client of the
 * seed's own NBD export, so that after the bulk copy every guest write is
 * acknowledged to the guest only once the seed has it. Detaching cancels
 * the job and deletes the node: the VM runs on exactly as it was.
 *
 * Threads. QMP runs on a thread of its own (a one-thread workq), never on
 * the event loop's: blockdev-add connects to our NBD export, and
 * blockdev-mirror, block-job-cancel and blockdev-del drain the guest's I/O,
 * which waits for our NBD server, i.e. for the loop. Results come back to
 * the loop (the workq's done callbacks). Only vmattach_open, vmattach_clear
 * and vmattach_drive block the caller: call them before the loop serves
 * anything to this QEMU.
 */
#ifndef P2PVBD_VMATTACH_H
#define P2PVBD_VMATTACH_H

#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>
#include <jansson.h>

struct qmp;

/* Our names in QEMU: the nbd node and the job are "p2pvbd-" + a tag of 8 hex digits. */
#define VMATTACH_TAG_LEN  8
#define VMATTACH_NAME_MAX 128 /* a node name or device, with its NUL */

/* How often the job is looked at: while the bulk copy runs, and once it is READY. */
#define VMATTACH_POLL_COPY_MS  200
#define VMATTACH_POLL_READY_MS 500
/* Bounds on QEMU's answers: a command, and the job going away after block-job-cancel. */
#define VMATTACH_QMP_TIMEOUT_MS 30000
/* Connecting: QEMU greets at once, unless another client holds the socket. */
#define VMATTACH_OPEN_TIMEOUT_MS   10000
#define VMATTACH_CANCEL_TIMEOUT_MS 30000

/* The drive as QEMU describes it (query-block). */
struct vmattach_drive {
	char node[VMATTACH_NAME_MAX];   /* its top node: what the guest sees, the mirror's source */
	char device[VMATTACH_NAME_MAX]; /* its BlockBackend name ("" for a -blockdev drive) */
	char qdev[VMATTACH_NAME_MAX];   /* the device id or QOM path */
	char format[32];                /* of the top node: qcow2, raw... */
	uint64_t size;                  /* virtual size, bytes */
	int ro;                         /* the guest cannot write it */
};

/* What the loop hears (vmattach_start's callback). */
enum vmattach_event {
	VMATTACH_READY,    /* the bulk copy is done: from now on every guest write reaches us */
	VMATTACH_FAILED,   /* attaching failed, or the job ended without us: msg says why */
	VMATTACH_GONE,     /* QEMU exited (the QMP connection closed) */
	VMATTACH_DETACHED, /* vmattach_detach is done (msg NULL on success) */
};

typedef void (*vmattach_cb)(void *arg, enum vmattach_event ev, const char *msg);

struct vmattach;

/*
 * The tag naming what this seed makes for drive of the QEMU at qmp_path
 * (its node, its job, its scratch file and socket): a hash of the QMP
 * socket's real path and the drive, so that a restarted seed finds what
 * an earlier one left. out holds VMATTACH_TAG_LEN hex digits and a NUL.
 */
void vmattach_tag(const char *qmp_path, const char *drive, char out[VMATTACH_TAG_LEN + 1]);

/*
 * Connect to QEMU's QMP socket (blocking, bounded). Our node and job are
 * named "p2pvbd-TAG". NULL on failure (logged, saying what to check).
 */
struct vmattach *vmattach_open(const char *qmp_path, const char *tag);

/*
 * Remove what an earlier seed of this tag left in QEMU (it was killed
 * before it could detach): its job and its nbd node. Blocking; only while
 * the caller holds the scratch file's lock (so no live seed owns them). 0,
 * or -1 (logged).
 */
int vmattach_clear(struct vmattach *va);

/* Resolve drive (blocking) into *d; 0, or -1 (logged, listing the drives there are). */
int vmattach_drive(struct vmattach *va, const char *drive, struct vmattach_drive *d);

/*
 * Attach, on the QMP thread: an nbd node on the unix socket nbd_sock (our
 * export, served by base's loop), then the mirror of d->node into it. cb
 * runs on the loop: READY once the job is, then FAILED or GONE if that
 * happens (each at most once; after them nothing more is watched). 0, or -1.
 */
int vmattach_start(struct vmattach *va, struct event_base *base, const char *nbd_sock,
                   const struct vmattach_drive *d, vmattach_cb cb, void *arg);

/* Attached and READY now. */
int vmattach_ready(const struct vmattach *va);

/*
 * Detach with the loop still running (the drain needs our NBD server):
 * cancel the job, wait until QEMU dropped it, delete the node; then cb
 * runs with VMATTACH_DETACHED (QEMU gone: at once). Only after
 * vmattach_start; once.
 */
void vmattach_detach(struct vmattach *va);

/*
 * Other QMP work for this QEMU on the same connection (QEMU takes one
 * client per QMP socket), e.g. a migration: run(q, arg) on the QMP thread,
 * then done(arg) on the loop. Jobs run one at a time, in order; a long one
 * delays the watch of the mirror job (by its length). Only after
 * vmattach_start. run must not wait for the loop (the loop serves QEMU).
 */
void vmattach_call(struct vmattach *va, void (*run)(struct qmp *q, void *arg),
                   void (*done)(void *arg), void *arg);

/* Stop the QMP thread (waiting for its job) and close the connection. NULL is fine. */
void vmattach_free(struct vmattach *va);

/* Pure parts, for the unit tests. */

/*
 * Find drive in query-block's return value: by BlockBackend name, device
 * id (qdev) or top node name. 0 with *d filled; -1 with err saying why (no
 * such drive: the drives there are; no medium; no size).
 */
int vmattach_find_drive(json_t *blocks, const char *drive, struct vmattach_drive *d, char *err,
                        size_t errlen);

/* The state of job id in query-block-jobs' return value. */
struct vmattach_jobinfo {
	int found;
	int ready;
	uint64_t offset, len;
	char status[24]; /* "running", "ready", "concluded"... */
	char error[256]; /* the job's error, if QEMU gives one */
};
/* 0, or -1 if jobs is not a list of jobs (err says why). */
int vmattach_find_job(json_t *jobs, const char *id, struct vmattach_jobinfo *ji, char *err,
                      size_t errlen);

#endif
