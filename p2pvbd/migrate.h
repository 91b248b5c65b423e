/* SPDX-License-Identifier: ISC */
/*
 * migrate: the switchover of a QEMU live migration, run by the seed whose
 * NBD export (seed -e) is the source VM's disk (`p2pvbd ctl SEED migrate
 * URI`, PROTOCOL.md §9.3). In order:
 *
 *   sync        wait until the destinations are nearly in sync: the
 *               switchover cost (dirty + lag over the serving rate) is at
 *               most --downtime-target (skipped with postcopy);
 *   ram         QEMU migrates the RAM to URI, with the capabilities
 *               pause-before-switchover and return-path;
 *   freeze      at QEMU's pre-switchover (guest stopped, disk flushed) the
 *               seed freezes: the final generation is published;
 *   switchover  migrate-continue; QEMU sends the device state and says
 *               completed once the destination has loaded it;
 *   completed / failed.
 *
 * If the migration fails after the freeze, the seed thaws and the source VM
 * runs again (`cont` if QEMU left it paused); nothing the VM wrote is lost.
 *
 * Threads: every QMP call runs on a worker thread of its own (qmp.h: QEMU
 * drains the guest's I/O inside some commands, and the drain waits for this
 * process's NBD server, which runs on the loop). Everything else, the
 * freeze and thaw included, runs on the loop thread.
 */
#ifndef P2PVBD_MIGRATE_H
#define P2PVBD_MIGRATE_H

#include <stddef.h>
#include <stdint.h>

#include <event2/buffer.h>
#include <event2/event.h>

struct swarm;
struct migrate;

/* A URI is at most this long (it travels in one control-socket line). */
#define MIGRATE_URI_MAX 200
/* The time limit of a whole migration when none is given: generous, since
 * the sync phase lasts as long as the first copy of the disk. */
#define MIGRATE_TIMEOUT_DEFAULT_S 3600
#define MIGRATE_TIMEOUT_MAX_S     86400

/* One `migrate` request, parsed (migrate_parse). */
struct migrate_req {
	char uri[MIGRATE_URI_MAX + 1];
	int postcopy;       /* switch over as soon as the RAM has moved */
	uint64_t timeout_s; /* the whole migration's time limit */
};

/*
 * Parses the arguments of the control socket's `migrate` command (the line
 * after "migrate "): [--postcopy] [--timeout SECS] URI, where URI is a
 * QEMU migration URI: tcp:HOST:PORT, unix:PATH, vsock:CID:PORT or
 * rdma:HOST:PORT (printable, no blanks or quotes). 0, or -1 with the reason
 * in err.
 */
int migrate_parse(const char *args, struct migrate_req *req, char *err, size_t errlen);

struct vmattach;

/*
 * The orchestrator of the seed sw (borrowed) on base, for the QEMU whose
 * QMP socket is qmp_path (copied; connected only when a migration starts).
 * With va (seed --qmp --drive: it holds QEMU's one QMP connection), every
 * QMP step runs on va's thread and connection instead (vmattach_call), and
 * a migration starts only once va is READY. NULL on failure (logged).
 */
struct migrate *migrate_new(struct event_base *base, struct swarm *sw, const char *qmp_path,
                            struct vmattach *va);
/*
 * Stops: a migration under way is cancelled on the QEMU side (best effort)
 * and its caller told (done with a failure); our own worker thread ends.
 * With va, jobs still queued there give up their waits and must have run
 * (vmattach_free) before migrate_free. Idempotent.
 */
void migrate_stop(struct migrate *m);
/* migrate_stop, then free. */
void migrate_free(struct migrate *m);

/*
 * Starts the migration req. done(arg, ok, summary) is called once, on the
 * loop thread, when it has ended: ok 1 completed, 0 failed; summary is one
 * line for people (borrowed for the call). 0, or -1 with the reason in err
 * (one is under way already).
 */
int migrate_start(struct migrate *m, const struct migrate_req *req,
                  void (*done)(void *arg, int ok, const char *summary), void *arg, char *err,
                  size_t errlen);

/* The current or last migration for `status --json`: ,"migration":{...} (nothing if none). */
void migrate_status_json(const struct migrate *m, struct evbuffer *out);
/* The same for people: one line (nothing if none). */
void migrate_status_text(const struct migrate *m, struct evbuffer *out);

#endif
