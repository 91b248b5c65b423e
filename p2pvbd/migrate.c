/* SPDX-License-Identifier: ISC */
/*
 * migrate: the switchover of a QEMU live migration, run by the seed. See
 * migrate.h and PROTOCOL.md §9.3.
 *
 * The loop thread keeps the state (enum migrate_phase) and does the
 * freeze and thaw; each step that talks to QEMU is a job on a one-thread
 * work queue (workq.h): its run() makes the QMP calls and writes only into
 * the job, its done() runs on the loop and moves the state on.
 */
#include "migrate.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "qmp.h"
#include "swarm.h"
#include "util.h"
#include "vmattach.h"
#include "workq.h"

/* How often the sync phase looks at the switchover cost, and QEMU's migration status is read. */
#define MIGRATE_TICK_MS 100
#define MIGRATE_POLL_MS 20
/* Waits for QEMU: to connect, for one command's answer, for a cancel to settle. */
#define MIGRATE_CONNECT_MS 5000
#define MIGRATE_QMP_MS     10000
#define MIGRATE_SETTLE_MS  10000
/*
 * Nearly in sync also when at most this much is left to carry, whatever the
 * serving rate says: with the copy caught up, little is served and the
 * smoothed rate falls towards zero, so (dirty + lag) / rate overstates the
 * cost; 1 MiB is 84 ms on a 100 Mbit/s link.
 */
#define MIGRATE_SYNC_SMALL (1024u * 1024u)
/*
 * For the tests only: thaw this many ms late after a failure past the
 * freeze, so that the guest's writes meet the frozen seed (refused: ENOSPC)
 * and QEMU pauses the VM, which the recovery must then resume. Bounded.
 */
#define MIGRATE_TEST_DELAY_ENV "P2PVBD_TEST_ROLLBACK_DELAY_MS"
#define MIGRATE_TEST_DELAY_MAX 10000

enum migrate_phase {
	PH_IDLE,
	PH_SYNC,
	PH_RAM,
	PH_FREEZE,
	PH_SWITCHOVER,
	PH_RECOVER,
	PH_COMPLETED,
	PH_FAILED,
};

static const char *const phase_names[] = {
    [PH_IDLE] = "idle",
    [PH_SYNC] = "sync",
    [PH_RAM] = "ram",
    [PH_FREEZE] = "freeze",
    [PH_SWITCHOVER] = "switchover",
    [PH_RECOVER] = "recover",
    [PH_COMPLETED] = "completed",
    [PH_FAILED] = "failed",
};

/* What a job does on the QMP thread. */
enum job_kind {
	J_CONNECT,  /* (re)connect, check the VM and that no migration runs */
	J_MIGRATE,  /* capabilities, migrate, wait for pre-switchover */
	J_CONTINUE, /* migrate-continue, wait for the end */
	J_CANCEL,   /* migrate_cancel, wait for the end */
	J_RECOVER,  /* after a failure past the freeze: the VM runs again */
};

/* One job: inputs set on the loop, outputs written by run() only. */
struct migrate_job {
	struct migrate *m;
	enum job_kind kind;
	char uri[MIGRATE_URI_MAX + 1];
	uint64_t deadline_ns;
	int was_running;     /* J_RECOVER: resume the VM if it stopped */
	int expect_pause;    /* J_RECOVER: writes were refused; QEMU pauses the VM */
	int rc;              /* 0 or -1 (QMP failed: err) */
	char status[32];     /* QEMU's migration status at the end */
	char vm_status[32];  /* J_CONNECT, J_RECOVER: query-status */
	int vm_running;      /* likewise */
	int timed_out;       /* the deadline passed: the migration was cancelled */
	int resumed;         /* J_RECOVER: `cont` was needed */
	int64_t downtime_ms; /* query-migrate's, -1 if not given */
	int64_t total_ms;
	char err[256];  /* why rc is -1 */
	char desc[256]; /* QEMU's error-desc, if any */
};

/* What on_frozen gets: m, or NULL once m is gone. */
struct freeze_tok {
	struct migrate *m;
};

struct migrate {
	struct event_base *base;
	struct swarm *sw;
	char *qmp_path;
	/*
	 * Where the jobs run: our own thread and connection (wq, q), or, for a
	 * seed attached with --qmp --drive, vmattach's (QEMU takes one client per
	 * QMP socket): then q is borrowed for the length of each job.
	 */
	struct workq *wq;
	struct vmattach *va;
	struct qmp *q; /* the QMP thread's only */
	struct event *tick;
	struct event *late_thaw; /* MIGRATE_TEST_DELAY_ENV */
	atomic_int abort;        /* stopping: jobs give up their waits */
	int freeing;
	int busy; /* a job is queued or running */
	/*
	 * The freeze's callback argument while one is pending; it outlives m,
	 * since swarm_free may call it after migrate_free.
	 */
	struct freeze_tok *tok;

	/* The current or last migration (loop thread). */
	enum migrate_phase phase;
	struct migrate_req req;
	int connected, was_running, froze;
	uint64_t refused_at_freeze; /* swarm_stats' writes_refused when it froze */
	uint64_t t_start, t_ram, t_pre, t_frozen, t_end, deadline_ns; /* ns */
	double peak_serve, cost_s;
	int64_t downtime_ms, total_ms;
	char error[512];
	void (*done)(void *arg, int ok, const char *summary);
	void *done_arg;
};

/* ---- the request ------------------------------------------------------- */

/* A URI QEMU may be given: a known transport, printable, no blanks or quotes. */
static int uri_ok(const char *u, char *err, size_t errlen)
{
	static const char *const schemes[] = {"tcp:", "unix:", "vsock:", "rdma:"};
	size_t n = strlen(u);
	int known = 0;

	if (n == 0 || n > MIGRATE_URI_MAX) {
		snprintf(err, errlen, "the migration URI must be 1 to %d bytes", MIGRATE_URI_MAX);
		return -1;
	}
	for (size_t i = 0; i < n; i++)
		if (u[i] <= ' ' || u[i] > '~' || u[i] == '"' || u[i] == '\\') {
			snprintf(err, errlen,
			         "the migration URI has a blank, quote or control byte");
			return -1;
		}
	for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++)
		known |= strncmp(u, schemes[i], strlen(schemes[i])) == 0 && n > strlen(schemes[i]);
	if (!known) {
		snprintf(err, errlen,
		         "'%.40s' is not a migration URI p2pvbd passes on (tcp:HOST:PORT, "
		         "unix:PATH, vsock:CID:PORT, rdma:HOST:PORT)",
		         u);
		return -1;
	}
	return 0;
}

int migrate_parse(const char *args, struct migrate_req *req, char *err, size_t errlen)
{
	char buf[MIGRATE_URI_MAX + 64], *save = NULL, *tok;
	int have_uri = 0;

	memset(req, 0, sizeof(*req));
	req->timeout_s = MIGRATE_TIMEOUT_DEFAULT_S;
	if (strlen(args) >= sizeof(buf)) {
		snprintf(err, errlen, "the migrate command is too long");
		return -1;
	}
	memcpy(buf, args, strlen(args) + 1);
	for (tok = strtok_r(buf, " ", &save); tok != NULL; tok = strtok_r(NULL, " ", &save)) {
		if (strcmp(tok, "--postcopy") == 0) {
			req->postcopy = 1;
		} else if (strcmp(tok, "--timeout") == 0) {
			char *v = strtok_r(NULL, " ", &save), *end = NULL;
			unsigned long long t;

			if (v == NULL || v[0] < '0' || v[0] > '9' ||
			    (t = strtoull(v, &end, 10), *end != '\0') || t < 1 ||
			    t > MIGRATE_TIMEOUT_MAX_S) {
				snprintf(err, errlen, "--timeout needs seconds, 1..%d",
				         MIGRATE_TIMEOUT_MAX_S);
				return -1;
			}
			req->timeout_s = t;
		} else if (tok[0] == '-') {
			snprintf(err, errlen,
			         "unknown migrate option '%.40s' (--postcopy, --timeout)", tok);
			return -1;
		} else if (have_uri) {
			snprintf(err, errlen, "migrate takes one URI");
			return -1;
		} else {
			if (uri_ok(tok, err, errlen) != 0)
				return -1;
			memcpy(req->uri, tok, strlen(tok) + 1);
			have_uri = 1;
		}
	}
	if (!have_uri) {
		snprintf(err, errlen, "migrate needs the QEMU migration URI (e.g. tcp:HOST:PORT)");
		return -1;
	}
	return 0;
}

/* ---- the QMP thread ---------------------------------------------------- */

static int status_in(const char *s, const char *const *set)
{
	for (; *set != NULL; set++)
		if (strcmp(s, *set) == 0)
			return 1;
	return 0;
}

static const char *const terminal[] = {"completed", "failed", "cancelled", NULL};

static uint64_t deadline_in(uint64_t ms)
{
	return now_ns() + ms * NS_PER_MS;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

static int64_t int_or(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);

	return json_is_integer(v) ? (int64_t)json_integer_value(v) : -1;
}

/* query-migrate into j (status, downtime, total time, error-desc); 0 or -1. */
static int q_migration(struct migrate *m, struct migrate_job *j)
{
	json_t *ret = NULL, *v;

	if (qmp_execf(m->q, &ret, MIGRATE_QMP_MS, j->err, sizeof(j->err), "query-migrate", NULL) !=
	    0)
		return -1;
	v = json_object_get(ret, "status");
	snprintf(j->status, sizeof(j->status), "%s",
	         json_is_string(v) ? json_string_value(v) : "none");
	j->downtime_ms = int_or(ret, "downtime");
	j->total_ms = int_or(ret, "total-time");
	v = json_object_get(ret, "error-desc");
	if (json_is_string(v))
		snprintf(j->desc, sizeof(j->desc), "%s", json_string_value(v));
	json_decref(ret);
	return 0;
}

/* query-status into j; 0 or -1. */
static int q_vm(struct migrate *m, struct migrate_job *j)
{
	json_t *ret = NULL, *v;

	if (qmp_execf(m->q, &ret, MIGRATE_QMP_MS, j->err, sizeof(j->err), "query-status", NULL) !=
	    0)
		return -1;
	v = json_object_get(ret, "status");
	snprintf(j->vm_status, sizeof(j->vm_status), "%s",
	         json_is_string(v) ? json_string_value(v) : "unknown");
	j->vm_running = json_is_true(json_object_get(ret, "running"));
	json_decref(ret);
	return 0;
}

/* The capabilities this flow needs, on or off (off again after a failure: a later plain migrate
 * must not stop at pre-switchover). */
static int q_caps(struct migrate *m, int on, char *err, size_t errlen)
{
	return qmp_execf(m->q, NULL, MIGRATE_QMP_MS, err, errlen, "migrate-set-capabilities",
	                 "{s:[{s:s,s:b},{s:s,s:b}]}", "capabilities", "capability",
	                 "pause-before-switchover", "state", on, "capability", "return-path",
	                 "state", on);
}

/* migrate_cancel, then wait (bounded) until QEMU says how it ended. */
static void q_cancel(struct migrate *m, struct migrate_job *j)
{
	uint64_t until = deadline_in(MIGRATE_SETTLE_MS);
	char keep[sizeof(j->err)];

	memcpy(keep, j->err, sizeof(keep));
	if (qmp_execf(m->q, NULL, MIGRATE_QMP_MS, j->err, sizeof(j->err), "migrate_cancel", NULL) !=
	    0) {
		j->rc = -1;
		return;
	}
	while (q_migration(m, j) == 0 && !status_in(j->status, terminal) && now_ns() < until)
		sleep_ms(MIGRATE_POLL_MS);
	memcpy(j->err, keep, sizeof(keep));
}

/* Poll query-migrate until it ends (or pauses at pre-switchover, if stop_at_pre). */
static void q_poll(struct migrate *m, struct migrate_job *j, int stop_at_pre)
{
	for (;;) {
		if (q_migration(m, j) != 0) {
			j->rc = -1;
			return;
		}
		if (status_in(j->status, terminal) ||
		    (stop_at_pre && strcmp(j->status, "pre-switchover") == 0))
			return;
		if (atomic_load(&m->abort) || now_ns() > j->deadline_ns) {
			j->timed_out = !atomic_load(&m->abort);
			q_cancel(m, j);
			return;
		}
		sleep_ms(MIGRATE_POLL_MS);
	}
}

static void job_connect(struct migrate *m, struct migrate_job *j)
{
	static const char *const idle[] = {"none", "completed", "failed", "cancelled", NULL};

	if (m->va == NULL) {
		if (m->q != NULL)
			qmp_close(m->q); /* QEMU may have restarted since */
		m->q = qmp_open(m->qmp_path, MIGRATE_CONNECT_MS, j->err, sizeof(j->err));
	}
	if (m->q == NULL || q_vm(m, j) != 0 || q_migration(m, j) != 0) {
		j->rc = -1;
		return;
	}
	if (!status_in(j->status, idle)) {
		snprintf(j->err, sizeof(j->err),
		         "QEMU has a migration under way already (status %s)", j->status);
		j->rc = -1;
	}
}

static void job_recover(struct migrate *m, struct migrate_job *j)
{
	uint64_t until = deadline_in(MIGRATE_SETTLE_MS);
	static const char *const stopped[] = {"paused", "io-error", NULL};
	/* QEMU is still winding the migration down: wait. */
	static const char *const passing[] = {"finish-migrate", NULL};

	char scratch[256];

	q_caps(m, 0, scratch, sizeof(scratch)); /* best effort */
	for (;;) {
		if (q_vm(m, j) != 0) {
			j->rc = -1;
			return;
		}
		if (j->vm_running && !j->expect_pause)
			return;
		if (!j->vm_running && j->was_running && status_in(j->vm_status, stopped)) {
			if (qmp_execf(m->q, NULL, MIGRATE_QMP_MS, j->err, sizeof(j->err), "cont",
			              NULL) != 0) {
				j->rc = -1;
				return;
			}
			j->resumed = 1;
			j->expect_pause = 0; /* thawed: the writes it retries are taken */
			continue;
		}
		if (!j->vm_running && !j->was_running)
			return; /* it was not running before the migration either */
		if (!j->vm_running && !status_in(j->vm_status, passing)) {
			snprintf(j->err, sizeof(j->err), "the source VM is %s", j->vm_status);
			j->rc = -1;
			return;
		}
		if (now_ns() > until) {
			if (j->vm_running) /* expect_pause: see migrate_recovered */
				return;
			snprintf(j->err, sizeof(j->err), "the source VM stayed %s", j->vm_status);
			j->rc = -1;
			return;
		}
		sleep_ms(MIGRATE_POLL_MS * 5);
	}
}

/* run() of every job: on the QMP thread; writes only into j (and m->q). */
static void job_run(void *arg)
{
	struct migrate_job *j = arg;
	struct migrate *m = j->m;

	if (atomic_load(&m->abort) && j->kind != J_CANCEL) {
		snprintf(j->err, sizeof(j->err), "the seed is stopping");
		j->rc = -1;
		return;
	}
	if (j->kind != J_CONNECT && m->q == NULL) {
		snprintf(j->err, sizeof(j->err), "not connected to QEMU");
		j->rc = -1;
		return;
	}
	switch (j->kind) {
	case J_CONNECT:
		job_connect(m, j);
		break;
	case J_MIGRATE:
		if (q_caps(m, 1, j->err, sizeof(j->err)) != 0 ||
		    qmp_execf(m->q, NULL, MIGRATE_QMP_MS, j->err, sizeof(j->err), "migrate",
		              "{s:s}", "uri", j->uri) != 0)
			j->rc = -1;
		else
			q_poll(m, j, 1);
		if (strcmp(j->status, "pre-switchover") != 0 &&
		    strcmp(j->status, "completed") != 0) {
			char scratch[256];

			/* It ended before the freeze: off again (best effort, as in job_recover).
			 */
			q_caps(m, 0, scratch, sizeof(scratch));
		}
		break;
	case J_CONTINUE:
		if (qmp_execf(m->q, NULL, MIGRATE_QMP_MS, j->err, sizeof(j->err),
		              "migrate-continue", "{s:s}", "state", "pre-switchover") != 0) {
			j->rc = -1;
			break;
		}
		q_poll(m, j, 0);
		break;
	case J_CANCEL:
		q_cancel(m, j);
		break;
	case J_RECOVER:
		job_recover(m, j);
		break;
	}
}

/* run() on vmattach's QMP thread: the same, on its connection. */
static void job_run_va(struct qmp *q, void *arg)
{
	struct migrate_job *j = arg;

	j->m->q = q;
	job_run(arg);
	j->m->q = NULL;
}

/* ---- the loop thread --------------------------------------------------- */

static void job_done(void *arg);

static void push(struct migrate *m, enum job_kind kind)
{
	struct migrate_job *j = xcalloc(1, sizeof(*j));

	j->m = m;
	j->kind = kind;
	j->deadline_ns = m->deadline_ns;
	/* Past the freeze, QEMU gets its time to finish whatever the limit said. */
	if (kind == J_CONTINUE && j->deadline_ns < deadline_in(MIGRATE_SETTLE_MS))
		j->deadline_ns = deadline_in(MIGRATE_SETTLE_MS);
	j->downtime_ms = j->total_ms = -1;
	j->was_running = m->was_running;
	if (kind == J_RECOVER) {
		const struct swarm_stats *st = swarm_stats(m->sw);

		j->expect_pause = st->writes_refused > m->refused_at_freeze;
	}
	memcpy(j->uri, m->req.uri, sizeof(j->uri));
	m->busy = 1;
	if (m->va != NULL)
		vmattach_call(m->va, job_run_va, job_done, j);
	else
		workq_push(m->wq, job_run, job_done, j);
}

static double secs(uint64_t from, uint64_t to)
{
	return from && to >= from ? (double)(to - from) / NS_PER_S : -1;
}

static void set_phase(struct migrate *m, enum migrate_phase p)
{
	m->phase = p;
	log_info("migration to %s: %s", m->req.uri, phase_names[p]);
}

/* The end: completed (ok) or failed (m->error says why); the caller is told. */
static void finish(struct migrate *m, int ok)
{
	void (*done)(void *, int, const char *) = m->done;
	char line[768];

	m->t_end = now_ns();
	m->phase = ok ? PH_COMPLETED : PH_FAILED;
	evtimer_del(m->tick);
	if (ok)
		snprintf(
		    line, sizeof(line),
		    "migrated to %s: sync %.2f s, RAM %.2f s, freeze %.1f ms, downtime %lld ms "
		    "(QEMU's figure), total %.2f s",
		    m->req.uri, secs(m->t_start, m->t_ram), secs(m->t_ram, m->t_pre),
		    secs(m->t_pre, m->t_frozen) * MS_PER_S, (long long)m->downtime_ms,
		    secs(m->t_start, m->t_end));
	else
		snprintf(line, sizeof(line), "migration to %s failed: %s", m->req.uri, m->error);
	if (ok)
		log_info("%s", line);
	else
		log_error("%s", line);
	m->done = NULL;
	if (done != NULL)
		done(m->done_arg, ok, line);
}

static void fail(struct migrate *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(struct migrate *m, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(m->error, sizeof(m->error), fmt, ap);
	va_end(ap);
	finish(m, 0);
}

/* Why a job's migration did not complete, for the report. */
static const char *why(const struct migrate_job *j, char *buf, size_t len)
{
	if (j->rc != 0)
		snprintf(buf, len, "%s", j->err);
	else if (j->timed_out)
		snprintf(buf, len, "not done within the time limit: cancelled");
	else
		snprintf(buf, len, "QEMU says %s%s%s", j->status, j->desc[0] ? ": " : "",
		         j->desc[0] ? j->desc
		                    : " (no reason given: see the destination QEMU's log)");
	return buf;
}

/* swarm_freeze's callback; arg is a freeze_tok (freed here). */
static void on_frozen(void *arg, int result)
{
	struct freeze_tok *tok = arg;
	struct migrate *m = tok->m;

	free(tok);
	if (m == NULL)
		return;
	m->tok = NULL;
	if (m->freeing || m->phase != PH_FREEZE)
		return;
	m->t_frozen = now_ns();
	if (result != 0) {
		snprintf(m->error, sizeof(m->error),
		         "the freeze did not complete (thawed meanwhile?)");
		set_phase(m, PH_RECOVER);
		push(m, J_CANCEL);
		return;
	}
	log_info("migration to %s: frozen in %.1f ms; QEMU continues", m->req.uri,
	         secs(m->t_pre, m->t_frozen) * MS_PER_S);
	set_phase(m, PH_SWITCHOVER);
	push(m, J_CONTINUE);
}

static void thaw_and_recover(struct migrate *m)
{
	swarm_thaw(m->sw);
	set_phase(m, PH_RECOVER);
	push(m, J_RECOVER);
}

static void on_late_thaw(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	thaw_and_recover(arg);
}

/* After the freeze the migration did not complete: thaw at once, then make the VM run. */
static void roll_back(struct migrate *m, const struct migrate_job *j)
{
	const char *delay = getenv(MIGRATE_TEST_DELAY_ENV);
	long ms = delay != NULL ? strtol(delay, NULL, 10) : 0;

	if (m->error[0] == '\0')
		why(j, m->error, sizeof(m->error));
	if (ms > 0 && ms <= MIGRATE_TEST_DELAY_MAX) {
		struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

		log_warn("migration to %s: thawing %ld ms late (%s, for the tests)", m->req.uri, ms,
		         MIGRATE_TEST_DELAY_ENV);
		evtimer_add(m->late_thaw, &tv);
		return;
	}
	thaw_and_recover(m);
}

/* Nearly in sync: see migrate.h (sync) and MIGRATE_SYNC_SMALL. */
static int in_sync(struct migrate *m)
{
	struct swarm_status st;
	uint64_t left;
	double rate;

	swarm_status(m->sw, &st);
	if (st.serve_rate > m->peak_serve)
		m->peak_serve = st.serve_rate;
	left = st.dirty_bytes + st.lag_bytes;
	rate = m->peak_serve > 1 ? m->peak_serve : 1;
	m->cost_s = (double)left / rate;
	if (m->req.postcopy)
		return 1;
	return st.peers > 0 && (left <= MIGRATE_SYNC_SMALL ||
	                        m->cost_s * MS_PER_S <= (double)st.downtime_target_ms);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	struct migrate *m = arg;

	(void)fd;
	(void)what;
	if (m->phase != PH_SYNC)
		return;
	if (!in_sync(m)) {
		if (now_ns() > m->deadline_ns)
			fail(m,
			     "the destinations did not get nearly in sync within %llu s (the "
			     "switchover would cost %.2f s); nothing was changed",
			     (unsigned long long)m->req.timeout_s, m->cost_s);
		return;
	}
	if (!m->connected || m->busy)
		return;
	m->t_ram = now_ns();
	if (m->req.postcopy)
		log_info("migration to %s: postcopy: the RAM goes now, the disk follows after the "
		         "switchover",
		         m->req.uri);
	else
		log_info("migration to %s: the destinations are nearly in sync after %.2f s "
		         "(switchover cost %.3f s)",
		         m->req.uri, secs(m->t_start, m->t_ram), m->cost_s);
	set_phase(m, PH_RAM);
	push(m, J_MIGRATE);
}

/* done() of every job: on the loop. Moves the state on. */
static void job_done(void *arg)
{
	struct migrate_job *j = arg;
	struct migrate *m = j->m;
	char b[sizeof(j->err) + sizeof(j->status) + sizeof(j->desc) + 16];

	m->busy = 0;
	if (m->freeing) {
		free(j);
		return;
	}
	if (j->downtime_ms >= 0)
		m->downtime_ms = j->downtime_ms;
	if (j->total_ms >= 0)
		m->total_ms = j->total_ms;
	switch (j->kind) {
	case J_CONNECT:
		if (j->rc != 0) {
			fail(m, "QEMU's QMP socket: %s; nothing was changed", j->err);
		} else if (!j->vm_running && strcmp(j->vm_status, "paused") != 0) {
			fail(m, "the source VM is %s, not running; nothing was changed",
			     j->vm_status);
		} else {
			m->connected = 1;
			m->was_running = j->vm_running;
			on_tick(-1, 0, m);
		}
		break;
	case J_MIGRATE:
		if (j->rc == 0 && strcmp(j->status, "pre-switchover") == 0) {
			m->t_pre = now_ns();
			m->froze = 1;
			m->refused_at_freeze = swarm_stats(m->sw)->writes_refused;
			log_info("migration to %s: RAM moved in %.2f s; QEMU stopped the VM at "
			         "pre-switchover: freezing",
			         m->req.uri, secs(m->t_ram, m->t_pre));
			set_phase(m, PH_FREEZE);
			m->tok = xcalloc(1, sizeof(*m->tok));
			m->tok->m = m;
			swarm_freeze(m->sw, on_frozen, m->tok);
		} else if (j->rc == 0 && strcmp(j->status, "completed") == 0) {
			/* Not without pause-before-switchover; never finish unfrozen. */
			fail(m, "QEMU completed without pausing before the switchover");
		} else {
			fail(m,
			     "in the RAM phase: %s; the source VM runs on (it was never stopped)",
			     why(j, b, sizeof(b)));
		}
		break;
	case J_CONTINUE:
		if (j->rc == 0 && strcmp(j->status, "completed") == 0)
			finish(m, 1);
		else
			roll_back(m, j);
		break;
	case J_CANCEL:
		if (j->rc == 0 && strcmp(j->status, "completed") == 0)
			finish(m, 1);
		else
			roll_back(m, j);
		break;
	case J_RECOVER:
		/* fail() writes m->error: what went wrong goes through a copy. */
		snprintf(b, sizeof(b), "%s", m->error);
		if (j->rc != 0)
			fail(m,
			     "after the freeze: %s; the seed thawed, but %s: resume it by hand "
			     "(no write was lost: those refused during the freeze were not "
			     "acknowledged)",
			     b, j->err);
		else if (j->expect_pause && j->vm_running)
			fail(m,
			     "after the freeze: %s; the seed thawed and the source VM runs again, "
			     "but it wrote during the freeze and QEMU did not pause it (the "
			     "drive's werror policy?): the guest saw those writes fail",
			     b);
		else
			fail(m,
			     "after the freeze: %s; the seed thawed and the source VM runs "
			     "again%s (no write lost)",
			     b, j->resumed ? " (resumed with cont)" : "");
		break;
	}
	free(j);
}

struct migrate *migrate_new(struct event_base *base, struct swarm *sw, const char *qmp_path,
                            struct vmattach *va)
{
	struct migrate *m = xcalloc(1, sizeof(*m));

	m->base = base;
	m->sw = sw;
	m->qmp_path = xstrdup(qmp_path);
	m->va = va;
	atomic_init(&m->abort, 0);
	if (va == NULL)
		m->wq = workq_new(base, 1, "qmp");
	m->tick = event_new(base, -1, EV_PERSIST, on_tick, m);
	m->late_thaw = evtimer_new(base, on_late_thaw, m);
	if ((va == NULL && m->wq == NULL) || m->tick == NULL || m->late_thaw == NULL) {
		log_error("cannot set up the migration's QMP thread");
		migrate_free(m);
		return NULL;
	}
	return m;
}

void migrate_stop(struct migrate *m)
{
	if (m == NULL || m->freeing)
		return;
	if (m->phase > PH_IDLE && m->phase < PH_COMPLETED)
		fail(m, "the seed is stopping%s",
		     m->froze ? " after the freeze: the source VM may be left paused" : "");
	m->freeing = 1;
	if (m->tok != NULL)
		m->tok->m = NULL; /* the swarm calls it later */
	atomic_store(&m->abort, 1);
	if (m->wq != NULL)
		workq_free(m->wq); /* waits for the job under way: it gives up its waits */
	m->wq = NULL;
}

void migrate_free(struct migrate *m)
{
	if (m == NULL)
		return;
	migrate_stop(m);
	if (m->tick != NULL)
		event_free(m->tick);
	if (m->late_thaw != NULL)
		event_free(m->late_thaw);
	if (m->q != NULL && m->va == NULL)
		qmp_close(m->q);
	free(m->qmp_path);
	free(m);
}

int migrate_start(struct migrate *m, const struct migrate_req *req,
                  void (*done)(void *arg, int ok, const char *summary), void *arg, char *err,
                  size_t errlen)
{
	struct timeval tv = {0, MIGRATE_TICK_MS * 1000};

	if (m->phase > PH_IDLE && m->phase < PH_COMPLETED) {
		snprintf(err, errlen, "a migration to %s is under way (%s)", m->req.uri,
		         phase_names[m->phase]);
		return -1;
	}
	if (m->busy) {
		snprintf(err, errlen, "the last migration's QMP work is still winding down");
		return -1;
	}
	if (m->va != NULL && !vmattach_ready(m->va)) {
		snprintf(err, errlen,
		         "QEMU is still copying the VM's disk to this seed (seed "
		         "--qmp serves once the copy is done): try again then");
		return -1;
	}
	m->req = *req;
	m->connected = m->was_running = m->froze = 0;
	m->t_ram = m->t_pre = m->t_frozen = m->t_end = 0;
	m->t_start = now_ns();
	m->deadline_ns = m->t_start + req->timeout_s * NS_PER_S;
	m->peak_serve = m->cost_s = 0;
	m->downtime_ms = m->total_ms = -1;
	m->error[0] = '\0';
	m->done = done;
	m->done_arg = arg;
	log_info("migration to %s%s: starting (time limit %llu s)", req->uri,
	         req->postcopy ? " (postcopy)" : "", (unsigned long long)req->timeout_s);
	set_phase(m, PH_SYNC);
	evtimer_add(m->tick, &tv);
	push(m, J_CONNECT);
	return 0;
}

/* ---- status ------------------------------------------------------------ */

static json_t *num(double v)
{
	return v >= 0 ? json_real(v) : json_null();
}

static uint64_t now_or(const struct migrate *m, uint64_t t)
{
	return t ? t : (m->phase < PH_COMPLETED ? now_ns() : 0);
}

void migrate_status_json(const struct migrate *m, struct evbuffer *out)
{
	json_t *o;
	char *s;

	if (m == NULL)
		return;
	o = json_pack(
	    "{s:s, s:s, s:b, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:s*}", "phase",
	    phase_names[m->phase], "uri", m->req.uri, "postcopy", m->req.postcopy, "sync_s",
	    num(m->phase > PH_IDLE ? secs(m->t_start, now_or(m, m->t_ram)) : -1), "ram_s",
	    num(m->t_ram ? secs(m->t_ram, now_or(m, m->t_pre)) : -1), "freeze_ms",
	    num(m->t_pre ? secs(m->t_pre, now_or(m, m->t_frozen)) * MS_PER_S : -1), "downtime_ms",
	    num((double)m->downtime_ms), "qemu_total_ms", num((double)m->total_ms), "total_s",
	    num(m->phase > PH_IDLE ? secs(m->t_start, now_or(m, m->t_end)) : -1),
	    "switchover_cost_s", num(m->phase > PH_IDLE ? m->cost_s : -1), "error",
	    m->error[0] ? m->error : NULL);
	s = o != NULL ? json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(6)) : NULL;
	if (s != NULL)
		evbuffer_add_printf(out, ",\"migration\":%s", s);
	free(s);
	json_decref(o);
}

void migrate_status_text(const struct migrate *m, struct evbuffer *out)
{
	if (m == NULL || m->phase == PH_IDLE)
		return;
	evbuffer_add_printf(out, "migration to %s%s: %s", m->req.uri,
	                    m->req.postcopy ? " (postcopy)" : "", phase_names[m->phase]);
	if (m->phase == PH_SYNC)
		evbuffer_add_printf(out, " (switchover cost %.2f s)", m->cost_s);
	if (m->phase >= PH_COMPLETED)
		evbuffer_add_printf(out, " after %.2f s%s%s", secs(m->t_start, m->t_end),
		                    m->error[0] ? ": " : "", m->error);
	evbuffer_add_printf(out, "\n");
}
