/* SPDX-License-Identifier: ISC */
/*
 * vmattach: attach a seed to a running QEMU's drive (vmattach.h). The QMP
 * connection is used by the QMP thread only (a one-thread workq), after the
 * blocking set-up calls of the main thread; the loop sees results in the
 * workq's done callbacks and keeps the state.
 */
#include "vmattach.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "qmp.h"
#include "util.h"
#include "vcrypto.h"
#include "workq.h"

/* Progress of the bulk copy is logged at most this often. */
#define VMATTACH_LOG_EVERY_S 5
/* While waiting for a cancelled job to go away, look this often. */
#define VMATTACH_CANCEL_POLL_US 100000

enum va_state {
	VA_IDLE,      /* opened; nothing attached */
	VA_COPYING,   /* node added and job started (or on its way): the bulk copy */
	VA_READY,     /* the job is READY: every guest write reaches us */
	VA_ENDED,     /* the job failed or QEMU exited: nothing more is watched */
	VA_DETACHING, /* the detach job is queued */
	VA_DETACHED,
};

static const char *const state_names[] = {"idle",  "copying",   "ready",
                                          "ended", "detaching", "detached"};

struct vmattach {
	struct qmp *q;      /* main thread until vmattach_start, then the QMP thread only */
	struct workq *wq;   /* the QMP thread */
	struct event *tick; /* the next look at the job */
	char ours[VMATTACH_NAME_MAX]; /* our node name and job id */
	char sock[PATH_MAX];          /* our NBD export, the node's server */
	struct vmattach_drive d;      /* fixed once started */
	enum va_state state;
	vmattach_cb cb;
	void *arg;
	int polling;     /* a poll job is queued */
	uint64_t log_ns; /* when the copy's progress was last logged */
};

/* One piece of QMP work: run on the QMP thread, done on the loop. */
struct va_job {
	struct vmattach *va;
	enum { J_ATTACH, J_POLL, J_DETACH, J_CALL } kind;
	int rc;   /* 0, or -1 with err */
	int gone; /* the QMP connection closed: QEMU exited */
	struct vmattach_jobinfo ji;
	char err[512];
	void (*run)(struct qmp *q, void *arg); /* J_CALL */
	void (*done)(void *arg);
	void *arg;
};

static void va_set_state(struct vmattach *va, enum va_state st)
{
	if (va->state == st)
		return;
	log_debug("vmattach %s: %s -> %s", va->ours, state_names[va->state], state_names[st]);
	va->state = st;
}

void vmattach_tag(const char *qmp_path, const char *drive, char out[VMATTACH_TAG_LEN + 1])
{
	char real[PATH_MAX];
	uint8_t h[VCRYPTO_HASH_LEN];
	char hex[2 * VCRYPTO_HASH_LEN + 1];
	struct vcrypto_hash_state st;

	if (realpath(qmp_path, real) == NULL)
		snprintf(real, sizeof(real), "%s", qmp_path);
	vcrypto_hash_init(&st);
	vcrypto_hash_update(&st, real, strlen(real) + 1);
	vcrypto_hash_update(&st, drive, strlen(drive));
	vcrypto_hash_final(&st, h);
	hex_encode(h, VMATTACH_TAG_LEN / 2, hex);
	memcpy(out, hex, VMATTACH_TAG_LEN);
	out[VMATTACH_TAG_LEN] = '\0';
}

/* ---- the pure parts ---------------------------------------------------- */

static void copy_str(char *dst, size_t n, json_t *v)
{
	const char *s = json_string_value(v);

	snprintf(dst, n, "%s", s != NULL ? s : "");
}

/* qdev names the device by id ("vd0") or by QOM path ("/machine/peripheral/vd0/virtio-backend"). */
static int qdev_matches(const char *qdev, const char *drive)
{
	static const char per[] = "/machine/peripheral/";
	size_t n = strlen(drive);

	if (strcmp(qdev, drive) == 0)
		return 1;
	if (strncmp(qdev, per, sizeof(per) - 1) != 0)
		return 0;
	qdev += sizeof(per) - 1;
	return n > 0 && strncmp(qdev, drive, n) == 0 && (qdev[n] == '\0' || qdev[n] == '/');
}

int vmattach_find_drive(json_t *blocks, const char *drive, struct vmattach_drive *d, char *err,
                        size_t errlen)
{
	size_t i, o = 0;
	json_t *b;

	memset(d, 0, sizeof(*d));
	if (!json_is_array(blocks)) {
		snprintf(err, errlen, "query-block: not a list");
		return -1;
	}
	json_array_foreach(blocks, i, b)
	{
		const char *dev = json_string_value(json_object_get(b, "device"));
		const char *qdev = json_string_value(json_object_get(b, "qdev"));
		json_t *ins = json_object_get(b, "inserted");
		const char *node = json_string_value(json_object_get(ins, "node-name"));
		json_t *size = json_object_get(json_object_get(ins, "image"), "virtual-size");

		if (!((dev != NULL && *dev != '\0' && strcmp(dev, drive) == 0) ||
		      (qdev != NULL && qdev_matches(qdev, drive)) ||
		      (node != NULL && strcmp(node, drive) == 0)))
			continue;
		if (!json_is_object(ins) || node == NULL) {
			snprintf(err, errlen, "drive %s has no medium (nothing inserted)", drive);
			return -1;
		}
		if (!json_is_integer(size) || json_integer_value(size) <= 0) {
			snprintf(err, errlen, "drive %s: QEMU gives no virtual size", drive);
			return -1;
		}
		copy_str(d->node, sizeof(d->node), json_object_get(ins, "node-name"));
		copy_str(d->device, sizeof(d->device), json_object_get(b, "device"));
		copy_str(d->qdev, sizeof(d->qdev), json_object_get(b, "qdev"));
		copy_str(d->format, sizeof(d->format), json_object_get(ins, "drv"));
		d->size = (uint64_t)json_integer_value(size);
		d->ro = json_is_true(json_object_get(ins, "ro"));
		return 0;
	}
	o += (size_t)snprintf(err, errlen,
	                      "QEMU has no drive %s (a drive id, device id or node "
	                      "name); it has:",
	                      drive);
	json_array_foreach(blocks, i, b)
	{
		const char *dev = json_string_value(json_object_get(b, "device"));
		const char *qdev = json_string_value(json_object_get(b, "qdev"));
		const char *node =
		    json_string_value(json_object_get(json_object_get(b, "inserted"), "node-name"));

		if (o >= errlen)
			break;
		o +=
		    (size_t)snprintf(err + o, errlen - o, " [drive %s, device %s, node %s]",
		                     dev && *dev ? dev : "-", qdev ? qdev : "-", node ? node : "-");
	}
	if (json_array_size(blocks) == 0 && o < errlen)
		snprintf(err + o, errlen - o, " no drives at all");
	return -1;
}

int vmattach_find_job(json_t *jobs, const char *id, struct vmattach_jobinfo *ji, char *err,
                      size_t errlen)
{
	size_t i;
	json_t *j;

	memset(ji, 0, sizeof(*ji));
	if (!json_is_array(jobs)) {
		snprintf(err, errlen, "query-block-jobs: not a list");
		return -1;
	}
	json_array_foreach(jobs, i, j)
	{
		const char *dev = json_string_value(json_object_get(j, "device"));
		json_t *off = json_object_get(j, "offset"), *len = json_object_get(j, "len");

		if (dev == NULL || strcmp(dev, id) != 0)
			continue;
		ji->found = 1;
		ji->ready = json_is_true(json_object_get(j, "ready"));
		if (json_is_integer(off) && json_integer_value(off) >= 0)
			ji->offset = (uint64_t)json_integer_value(off);
		if (json_is_integer(len) && json_integer_value(len) >= 0)
			ji->len = (uint64_t)json_integer_value(len);
		copy_str(ji->status, sizeof(ji->status), json_object_get(j, "status"));
		copy_str(ji->error, sizeof(ji->error), json_object_get(j, "error"));
		return 0;
	}
	return 0;
}

/* ---- QMP work (on the QMP thread, or the main thread before it) -------- */

/* Does node name exist in QEMU? 1, 0, or -1 (err). */
static int node_exists(struct qmp *q, const char *name, char *err, size_t errlen)
{
	json_t *nodes, *n;
	size_t i;
	int found = 0;

	if (qmp_execf(q, &nodes, VMATTACH_QMP_TIMEOUT_MS, err, errlen, "query-named-block-nodes",
	              "{s:b}", "flat", 1) != 0)
		return -1;
	json_array_foreach(nodes, i, n)
	{
		const char *nn = json_string_value(json_object_get(n, "node-name"));

		found |= nn != NULL && strcmp(nn, name) == 0;
	}
	json_decref(nodes);
	return found;
}

/* Our job's state now; 0, or -1 (err). */
static int job_info(struct qmp *q, const char *id, struct vmattach_jobinfo *ji, char *err,
                    size_t errlen)
{
	json_t *jobs;
	int rc;

	if (qmp_execf(q, &jobs, VMATTACH_QMP_TIMEOUT_MS, err, errlen, "query-block-jobs", NULL) !=
	    0)
		return -1;
	rc = vmattach_find_job(jobs, id, ji, err, errlen);
	json_decref(jobs);
	return rc;
}

/*
 * Why job id ended, from the events QEMU sent meanwhile (queued by the QMP
 * client): BLOCK_JOB_COMPLETED carries an error, BLOCK_JOB_ERROR says which
 * operation failed, BLOCK_JOB_CANCELLED a cancel (QEMU also cancels a job
 * that failed after READY). The most telling one wins.
 */
static void job_end_reason(struct qmp *q, const char *id, char *why, size_t n)
{
	static const char *const names[] = {"BLOCK_JOB_COMPLETED", "BLOCK_JOB_ERROR",
	                                    "BLOCK_JOB_CANCELLED"};
	int best = 0; /* 4 an error, 3 an I/O error, 2 cancelled, 1 completed */
	json_t *ev;
	char err[256];

	snprintf(why, n, "the mirror job is gone (cancelled from outside?)");
	for (int k = 0; k < 3; k++) {
		while (qmp_wait_event(q, names[k], 0, &ev, err, sizeof(err)) == 0) {
			json_t *data = json_object_get(ev, "data");
			const char *dev = json_string_value(json_object_get(data, "device"));
			const char *e = json_string_value(json_object_get(data, "error"));
			const char *op = json_string_value(json_object_get(data, "operation"));

			if (dev == NULL || strcmp(dev, id) != 0) {
				/* another job's */
			} else if (k == 0 && e != NULL && best < 4) {
				snprintf(why, n, "the mirror job failed: %s", e);
				best = 4;
			} else if (k == 1 && best < 3) {
				snprintf(
				    why, n,
				    "the mirror job failed: a %s into the seed failed (the seed "
				    "refused it, or its export went away)",
				    op != NULL ? op : "request");
				best = 3;
			} else if (k == 2 && best < 2) {
				snprintf(why, n, "the mirror job was cancelled (not by us)");
				best = 2;
			} else if (k == 0 && best < 1) {
				snprintf(why, n, "the mirror job completed (not by us)");
				best = 1;
			}
			json_decref(ev);
		}
	}
}

/*
 * Cancel our job (if any) and wait until QEMU dropped it, then delete our
 * node (if any). What was done goes to the log. 0, or -1 (err).
 */
static int remove_ours(struct qmp *q, const char *ours, int *did, char *err, size_t errlen)
{
	struct vmattach_jobinfo ji;
	int waited = 0, ex;

	*did = 0;
	if (job_info(q, ours, &ji, err, errlen) != 0)
		return -1;
	if (ji.found) {
		/* force: a READY mirror is abandoned at once, without its final sync (we go). */
		if (qmp_execf(q, NULL, VMATTACH_QMP_TIMEOUT_MS, err, errlen, "block-job-cancel",
		              "{s:s, s:b}", "device", ours, "force", 1) != 0)
			return -1;
		*did |= 1;
		for (;;) {
			if (job_info(q, ours, &ji, err, errlen) != 0)
				return -1;
			if (!ji.found)
				break;
			if (waited >= VMATTACH_CANCEL_TIMEOUT_MS) {
				snprintf(err, errlen,
				         "job %s still there %d s after block-job-cancel", ours,
				         VMATTACH_CANCEL_TIMEOUT_MS / 1000);
				return -1;
			}
			usleep(VMATTACH_CANCEL_POLL_US);
			waited += VMATTACH_CANCEL_POLL_US / 1000;
		}
	}
	if ((ex = node_exists(q, ours, err, errlen)) < 0)
		return -1;
	if (ex) {
		if (qmp_execf(q, NULL, VMATTACH_QMP_TIMEOUT_MS, err, errlen, "blockdev-del",
		              "{s:s}", "node-name", ours) != 0)
			return -1;
		*did |= 2;
	}
	return 0;
}

/* J_ATTACH: the nbd node on our export, then the mirror into it. */
static int attach_run(struct vmattach *va, char *err, size_t errlen)
{
	const struct vmattach_drive *d = &va->d;
	char e2[256];

	if (qmp_execf(va->q, NULL, VMATTACH_QMP_TIMEOUT_MS, err, errlen, "blockdev-add",
	              "{s:s, s:s, s:{s:s, s:s}}", "driver", "nbd", "node-name", va->ours, "server",
	              "type", "unix", "path", va->sock) != 0)
		return -1;
	/*
	 * write-blocking: once the bulk copy is done (READY), a guest write
	 * completes only when it is written to the target too, i.e. when our
	 * export acknowledged it (then --max-dirty-rate and freeze hold the
	 * guest as with seed -e). on-target-error=report: should our export
	 * fail, the job ends and the guest never sees it.
	 */
	if (qmp_execf(va->q, NULL, VMATTACH_QMP_TIMEOUT_MS, err, errlen, "blockdev-mirror",
	              "{s:s, s:s, s:s, s:s, s:s, s:s}", "job-id", va->ours, "device",
	              d->device[0] != '\0' ? d->device : d->node, "target", va->ours, "sync",
	              "full", "copy-mode", "write-blocking", "on-target-error", "report") != 0) {
		if (qmp_execf(va->q, NULL, VMATTACH_QMP_TIMEOUT_MS, e2, sizeof(e2), "blockdev-del",
		              "{s:s}", "node-name", va->ours) != 0)
			log_error("%s; and removing node %s again failed: %s", err, va->ours, e2);
		return -1;
	}
	return 0;
}

static void job_run(void *arg)
{
	struct va_job *j = arg;
	struct vmattach *va = j->va;
	char e2[256];
	int did;

	j->rc = 0;
	switch (j->kind) {
	case J_ATTACH:
		j->rc = attach_run(va, j->err, sizeof(j->err));
		break;
	case J_POLL:
		j->rc = job_info(va->q, va->ours, &j->ji, j->err, sizeof(j->err));
		if (j->rc == 0 && !j->ji.found) {
			job_end_reason(va->q, va->ours, j->err, sizeof(j->err));
			/* QEMU quitting cancels every job first: that is QEMU going, not a failure.
			 */
			if (qmp_wait_event(va->q, "SHUTDOWN", 0, NULL, e2, sizeof(e2)) == 0)
				j->gone = 1;
		}
		break;
	case J_DETACH:
		if (qmp_broken(va->q)) {
			j->gone = 1;
			return;
		}
		j->rc = remove_ours(va->q, va->ours, &did, j->err, sizeof(j->err));
		j->ji.found = did; /* what was removed, for the log */
		break;
	case J_CALL:
		j->run(va->q, j->arg);
		break;
	}
	j->gone |= qmp_broken(va->q);
}

static void va_push(struct vmattach *va, struct va_job *j);

static void va_schedule(struct vmattach *va)
{
	struct timeval tv = {0, 0};
	int ms = va->state == VA_READY ? VMATTACH_POLL_READY_MS : VMATTACH_POLL_COPY_MS;

	if (va->state != VA_COPYING && va->state != VA_READY)
		return;
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	evtimer_add(va->tick, &tv);
}

/* The end of watching: tell the caller once. */
static void watch_end(struct vmattach *va, enum vmattach_event ev, const char *msg)
{
	if (va->state == VA_ENDED || va->state == VA_DETACHING || va->state == VA_DETACHED)
		return;
	va_set_state(va, VA_ENDED);
	evtimer_del(va->tick);
	va->cb(va->arg, ev, msg);
}

static void poll_done(struct vmattach *va, struct va_job *j)
{
	char b1[16], b2[16];

	va->polling = 0;
	if (va->state != VA_COPYING && va->state != VA_READY)
		return;
	if (j->gone) {
		watch_end(va, VMATTACH_GONE, "the QMP connection closed: QEMU exited");
		return;
	}
	if (j->rc != 0) {
		/* QEMU busy or a transient error: look again. */
		log_warn("QMP: %s", j->err);
		va_schedule(va);
		return;
	}
	if (!j->ji.found) {
		watch_end(va, VMATTACH_FAILED, j->err);
		return;
	}
	if (j->ji.ready && va->state == VA_COPYING) {
		va_set_state(va, VA_READY);
		va->cb(va->arg, VMATTACH_READY, NULL);
	} else if (va->state == VA_COPYING &&
	           now_ns() - va->log_ns >= (uint64_t)VMATTACH_LOG_EVERY_S * NS_PER_S) {
		va->log_ns = now_ns();
		log_info("copying drive %s into the seed: %s of %s", va->d.node,
		         fmt_bytes(j->ji.offset, b1, sizeof(b1)),
		         fmt_bytes(j->ji.len, b2, sizeof(b2)));
	}
	va_schedule(va);
}

static void job_done(void *arg)
{
	struct va_job *j = arg;
	struct vmattach *va = j->va;

	switch (j->kind) {
	case J_ATTACH:
		if (va->state != VA_COPYING)
			break;
		if (j->rc != 0)
			watch_end(va, j->gone ? VMATTACH_GONE : VMATTACH_FAILED, j->err);
		else {
			log_info("attached to drive %s: mirroring it into the seed (job %s)",
			         va->d.node, va->ours);
			va->log_ns = now_ns();
			va_schedule(va);
		}
		break;
	case J_POLL:
		poll_done(va, j);
		break;
	case J_DETACH:
		va_set_state(va, VA_DETACHED);
		if (j->gone) {
			log_warn("QEMU is gone: nothing to detach");
			va->cb(va->arg, VMATTACH_DETACHED, NULL);
		} else if (j->rc != 0) {
			log_error("detaching from QEMU: %s", j->err);
			va->cb(va->arg, VMATTACH_DETACHED, j->err);
		} else {
			log_info("detached: %s%s%s; the VM runs on as it was",
			         (j->ji.found & 1) ? "mirror job cancelled" : "no mirror job", ", ",
			         (j->ji.found & 2) ? "nbd node deleted" : "no nbd node");
			va->cb(va->arg, VMATTACH_DETACHED, NULL);
		}
		break;
	case J_CALL:
		j->done(j->arg);
		break;
	}
	free(j);
}

static void va_push(struct vmattach *va, struct va_job *j)
{
	j->va = va;
	workq_push(va->wq, job_run, job_done, j);
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct vmattach *va = arg;
	struct va_job *j;

	(void)fd;
	(void)what;
	if (va->polling || (va->state != VA_COPYING && va->state != VA_READY))
		return;
	va->polling = 1;
	j = xcalloc(1, sizeof(*j));
	j->kind = J_POLL;
	va_push(va, j);
}

/* ---- the API ----------------------------------------------------------- */

struct vmattach *vmattach_open(const char *qmp_path, const char *tag)
{
	char err[512];
	struct vmattach *va;
	struct qmp *q = qmp_open(qmp_path, VMATTACH_OPEN_TIMEOUT_MS, err, sizeof(err));

	if (q == NULL) {
		/* A client already on the socket: QEMU accepts us only once it leaves. */
		log_error("--qmp %s: %s%s", qmp_path, err,
		          strstr(err, "in time") != NULL
		              ? " (another client on this QMP socket? QEMU serves one client per "
		                "socket: give the seed a -qmp socket of its own)"
		              : "");
		return NULL;
	}
	va = xcalloc(1, sizeof(*va));
	va->q = q;
	snprintf(va->ours, sizeof(va->ours), "p2pvbd-%s", tag);
	return va;
}

int vmattach_clear(struct vmattach *va)
{
	char err[512];
	int did;

	if (remove_ours(va->q, va->ours, &did, err, sizeof(err)) != 0) {
		log_error("removing what an earlier seed left in QEMU (%s): %s", va->ours, err);
		return -1;
	}
	if (did)
		log_warn(
		    "an earlier seed of this drive did not detach (killed?): removed its %s%s%s "
		    "%s from QEMU",
		    (did & 1) ? "mirror job" : "", did == 3 ? " and its " : "",
		    (did & 2) ? "nbd node" : "", va->ours);
	return 0;
}

int vmattach_drive(struct vmattach *va, const char *drive, struct vmattach_drive *d)
{
	char err[1024];
	json_t *blocks;
	int rc;

	if (qmp_execf(va->q, &blocks, VMATTACH_QMP_TIMEOUT_MS, err, sizeof(err), "query-block",
	              NULL) != 0) {
		log_error("%s", err);
		return -1;
	}
	rc = vmattach_find_drive(blocks, drive, d, err, sizeof(err));
	json_decref(blocks);
	if (rc != 0)
		log_error("--drive %s: %s", drive, err);
	return rc;
}

int vmattach_start(struct vmattach *va, struct event_base *base, const char *nbd_sock,
                   const struct vmattach_drive *d, vmattach_cb cb, void *arg)
{
	struct va_job *j;

	if (va->state != VA_IDLE || strlen(nbd_sock) >= sizeof(va->sock))
		return -1;
	va->wq = workq_new(base, 1, "qmp");
	if (va->wq == NULL)
		return -1;
	va->tick = evtimer_new(base, tick_cb, va);
	snprintf(va->sock, sizeof(va->sock), "%s", nbd_sock);
	va->d = *d;
	va->cb = cb;
	va->arg = arg;
	va_set_state(va, VA_COPYING);
	j = xcalloc(1, sizeof(*j));
	j->kind = J_ATTACH;
	va_push(va, j);
	return 0;
}

int vmattach_ready(const struct vmattach *va)
{
	return va != NULL && va->state == VA_READY;
}

void vmattach_detach(struct vmattach *va)
{
	struct va_job *j;

	if (va->state == VA_DETACHING || va->state == VA_DETACHED || va->wq == NULL)
		return;
	if (va->tick != NULL)
		evtimer_del(va->tick);
	va_set_state(va, VA_DETACHING);
	log_info("detaching from QEMU (job and node %s)", va->ours);
	j = xcalloc(1, sizeof(*j));
	j->kind = J_DETACH;
	va_push(va, j);
}

void vmattach_call(struct vmattach *va, void (*run)(struct qmp *q, void *arg),
                   void (*done)(void *arg), void *arg)
{
	struct va_job *j = xcalloc(1, sizeof(*j));

	j->kind = J_CALL;
	j->run = run;
	j->done = done;
	j->arg = arg;
	va_push(va, j);
}

void vmattach_free(struct vmattach *va)
{
	if (va == NULL)
		return;
	if (va->wq != NULL) {
		/* Its remaining done() callbacks see a state they ignore. */
		va->state = VA_DETACHED;
		workq_free(va->wq);
	}
	if (va->tick != NULL)
		event_free(va->tick);
	qmp_close(va->q);
	free(va);
}
