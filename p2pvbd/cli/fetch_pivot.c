/* SPDX-License-Identifier: ISC */
/*
 * fetch_pivot: `fetch --qmp SOCKET --drive ID`. Once OUT is complete at the
 * final generation and the destination QEMU has finished its incoming
 * migration, the drive is moved from fetch's NBD export onto OUT itself
 * (pivot.h), and fetch ends. The QMP work runs on a thread of its own (a
 * one-thread workq): the reopen drains the guest's I/O through our export,
 * which this loop keeps serving meanwhile. A move that fails leaves the VM
 * on the export, and fetch goes on serving it.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "nbd.h"
#include "pivot.h"
#include "swarm.h"
#include "workq.h"

/* How often the loop looks whether OUT is complete and final (ms). */
#define FETCH_PIVOT_TICK_MS 200
/* Seconds between attempts to reach a QMP socket that does not answer (yet). */
#define FETCH_PIVOT_RETRY_S 1

enum fetch_pivot_state {
	FP_WAIT,    /* OUT not complete and final yet, or QEMU still migrating in */
	FP_PREPARE, /* the job looks at QEMU's node graph */
	FP_SWITCH,  /* the job moves the drive */
	FP_DONE,    /* the drive runs on OUT */
	FP_FAILED,  /* the move failed for good: the VM stays on the export */
};

/* What a prepare job found. */
enum {
	FP_R_OK = 0,
	FP_R_FAIL = -1,   /* for good (err) */
	FP_R_NOT_YET = 1, /* QEMU still migrating in (status) */
	FP_R_NO_QMP = 2,  /* QMP not reachable, or the connection broke (err): later again */
};

struct fetch_pivot {
	struct event_base *base;
	struct swarm *sw;
	struct nbd_server *const *srv; /* the export, once started (borrowed from fetch) */
	void (*moved)(void *arg);      /* the drive runs on OUT: fetch ends */
	void *moved_arg;
	struct workq *wq; /* one thread: the QMP work */
	struct event *tick;
	enum fetch_pivot_state state;
	uint64_t retry_ns;             /* FP_WAIT: not before this */
	int said_waiting, said_no_qmp; /* logged once */
	atomic_int stopping;           /* fetch is ending: jobs do nothing more */
	/* The job's, while one runs (the loop reads them in its done callback). */
	const char *qmp_path, *drive, *out;
	char hint[128]; /* what our export's address looks like in QEMU's nbd filename */
	struct qmp *q;
	struct pivot_plan plan;
	int rc;
	char status[32];
	char err[1024];
};

/* The part of our export's address that QEMU's nbd node names: the socket file or ":PORT". */
static void export_hint(const char *address, char *buf, size_t len)
{
	const char *slash, *colon;

	if (strncmp(address, "unix:", 5) == 0) {
		slash = strrchr(address, '/');
		snprintf(buf, len, "%s", slash != NULL ? slash + 1 : address + 5);
		return;
	}
	colon = strrchr(address, ':');
	snprintf(buf, len, "%s", colon != NULL ? colon : address);
}

/* ---- on the job's thread ---------------------------------------------- */

static void prepare_run(void *arg)
{
	struct fetch_pivot *fp = arg;

	if (atomic_load(&fp->stopping))
		return;
	if (fp->q == NULL) {
		fp->q = qmp_open(fp->qmp_path, PIVOT_QUERY_MS, fp->err, sizeof(fp->err));
		if (fp->q == NULL) {
			fp->rc = FP_R_NO_QMP;
			return;
		}
	}
	if (pivot_run_state(fp->q, fp->status, sizeof(fp->status), fp->err, sizeof(fp->err)) != 0) {
		qmp_close(fp->q);
		fp->q = NULL;
		fp->rc = FP_R_NO_QMP;
		return;
	}
	/* An incoming QEMU's nodes are not active yet, and the migration may still fail. */
	if (strcmp(fp->status, "inmigrate") == 0) {
		fp->rc = FP_R_NOT_YET;
		return;
	}
	fp->rc = pivot_prepare(fp->q, fp->drive, fp->hint, &fp->plan, fp->err, sizeof(fp->err)) == 0
	             ? FP_R_OK
	             : FP_R_FAIL;
}

static void switch_run(void *arg)
{
	struct fetch_pivot *fp = arg;

	/* Not skipped when stopping: fetch waits for a switch it started (fetch_pivot_busy). */
	fp->rc = pivot_switch(fp->q, &fp->plan, fp->out, fp->err, sizeof(fp->err));
}

/* ---- on the loop ------------------------------------------------------- */

static void switch_done(void *arg)
{
	struct fetch_pivot *fp = arg;

	if (fp->rc < 0) {
		fp->state = FP_FAILED;
		log_error("could not move QEMU's drive %s onto %s: %s; the VM stays on the NBD "
		          "export, which fetch keeps serving",
		          fp->drive, fp->out, fp->err);
		if (swarm_output_relock(fp->sw) != 0)
			log_warn("%s is not locked against other users any more", fp->out);
		return;
	}
	if (fp->rc > 0)
		log_warn("%s", fp->err);
	fp->state = FP_DONE;
	log_info("QEMU's drive %s now runs on %s (node %s): the NBD export is closed, and fetch "
	         "ends",
	         fp->drive, fp->out, fp->plan.local);
	fp->moved(fp->moved_arg);
}

static void prepare_done(void *arg)
{
	struct fetch_pivot *fp = arg;

	if (atomic_load(&fp->stopping))
		return;
	fp->state = FP_WAIT;
	switch (fp->rc) {
	case FP_R_NO_QMP:
		fp->retry_ns = now_ns() + (uint64_t)FETCH_PIVOT_RETRY_S * NS_PER_S;
		if (!fp->said_no_qmp)
			log_warn(
			    "OUT is complete, but QEMU's QMP socket does not answer: %s; trying "
			    "again every %d s",
			    fp->err, FETCH_PIVOT_RETRY_S);
		else
			log_debug("QMP: %s", fp->err);
		fp->said_no_qmp = 1;
		return;
	case FP_R_NOT_YET:
		if (!fp->said_waiting)
			log_info("OUT is complete; drive %s moves onto it once QEMU's incoming "
			         "migration is done (QEMU is %s)",
			         fp->drive, fp->status);
		fp->said_waiting = 1;
		return;
	case FP_R_FAIL:
		fp->state = FP_FAILED;
		log_error(
		    "cannot move QEMU's drive %s onto %s: %s; the VM stays on the NBD export, "
		    "which fetch keeps serving",
		    fp->drive, fp->out, fp->err);
		return;
	}
	/* The source may have thawed meanwhile: only a complete, final OUT is moved to. */
	if (!swarm_complete(fp->sw) || !swarm_final(fp->sw))
		return;
	log_info("moving QEMU's drive %s (raw node %s, on %s) onto %s: the %s way", fp->drive,
	         fp->plan.fmt, fp->plan.nbd_file, fp->out, fp->plan.mirror ? "mirror" : "reopen");
	/* QEMU takes its own lock on OUT; fetch still writes OUT for the VM until the switch. */
	swarm_output_unlock(fp->sw);
	fp->state = FP_SWITCH;
	workq_push(fp->wq, switch_run, switch_done, fp);
}

static void fetch_pivot_tick(evutil_socket_t fd, short what, void *arg)
{
	struct fetch_pivot *fp = arg;

	(void)fd;
	(void)what;
	if (fp->state != FP_WAIT || now_ns() < fp->retry_ns || *fp->srv == NULL ||
	    !swarm_complete(fp->sw) || !swarm_final(fp->sw))
		return;
	export_hint(nbd_server_address(*fp->srv), fp->hint, sizeof(fp->hint));
	fp->state = FP_PREPARE;
	workq_push(fp->wq, prepare_run, prepare_done, fp);
}

struct fetch_pivot *fetch_pivot_new(struct event_base *base, struct swarm *sw,
                                    struct nbd_server *const *srv, const char *qmp_path,
                                    const char *drive, const char *out, void (*moved)(void *arg),
                                    void *arg)
{
	struct fetch_pivot *fp = xcalloc(1, sizeof(*fp));
	struct timeval tv = {0, FETCH_PIVOT_TICK_MS * 1000};

	fp->base = base;
	fp->sw = sw;
	fp->srv = srv;
	fp->qmp_path = qmp_path;
	fp->drive = drive;
	fp->out = out;
	fp->moved = moved;
	fp->moved_arg = arg;
	atomic_init(&fp->stopping, 0);
	fp->wq = workq_new(base, 1, "pivot");
	if (fp->wq == NULL) {
		free(fp);
		return NULL;
	}
	fp->tick = event_new(base, -1, EV_PERSIST, fetch_pivot_tick, fp);
	event_add(fp->tick, &tv);
	return fp;
}

int fetch_pivot_busy(const struct fetch_pivot *fp)
{
	return fp != NULL && fp->state == FP_SWITCH;
}

void fetch_pivot_free(struct fetch_pivot *fp)
{
	if (fp == NULL)
		return;
	atomic_store(&fp->stopping, 1);
	event_free(fp->tick);
	workq_free(fp->wq); /* waits for a job still running */
	qmp_close(fp->q);
	free(fp);
}
