/* SPDX-License-Identifier: ISC */
/*
 * workq: a small thread pool for work that would stall the event loop: a
 * core's worth of hashing, or a blocking disk call (fdatasync).
 *
 * run(arg) executes on a worker thread and must touch only what the job
 * owns (and thread-safe calls such as pread/pwrite/fdatasync). done(arg)
 * then executes on the event loop thread, in completion order, where the job
 * may touch everything else. The loop is woken through an eventfd.
 */
#ifndef P2PVBD_WORKQ_H
#define P2PVBD_WORKQ_H

#include <event2/event.h>

struct workq;

/* nthreads <= 0: one per online CPU. Returns NULL on failure (logged). */
struct workq *workq_new(struct event_base *base, int nthreads, const char *name);

/* Queue a job; arg is owned by the job until done(arg) has run. */
void workq_push(struct workq *q, void (*run)(void *arg), void (*done)(void *arg), void *arg);

/* Jobs queued or running whose done() has not run yet. */
int workq_busy(const struct workq *q);

/*
 * Wait for every queued job, run the remaining done() callbacks, stop the
 * threads and free the queue.
 */
void workq_free(struct workq *q);

#endif
