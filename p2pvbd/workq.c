/* SPDX-License-Identifier: ISC */
/*
 * workq: worker threads with a job FIFO; completions go back to the event
 * loop through an eventfd. See workq.h.
 */
#include "workq.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "util.h"

/* More workers than this never help: we have few cores and one disk. */
#define WORKQ_MAX_THREADS 16

struct job {
	void (*run)(void *);
	void (*done)(void *);
	void *arg;
	struct job *next;
};

/* A FIFO of jobs. */
struct jobq {
	struct job *head, *tail;
};

struct workq {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct jobq todo;     /* waiting for a worker */
	struct jobq finished; /* run, waiting for done() on the loop */
	int stopping;
	int busy; /* pushed and done() not yet called; loop thread only */
	int nthreads;
	pthread_t threads[WORKQ_MAX_THREADS];
	int efd;
	struct event *ev;
	char name[32];
};

static void jobq_put(struct jobq *q, struct job *j)
{
	j->next = NULL;
	if (q->tail)
		q->tail->next = j;
	else
		q->head = j;
	q->tail = j;
}

static struct job *jobq_take_all(struct jobq *q)
{
	struct job *j = q->head;

	q->head = q->tail = NULL;
	return j;
}

static void *workq_thread(void *arg)
{
	struct workq *q = arg;
	uint64_t one = 1;

	pthread_mutex_lock(&q->lock);
	for (;;) {
		struct job *j;

		while (q->todo.head == NULL && !q->stopping)
			pthread_cond_wait(&q->cond, &q->lock);
		if (q->todo.head == NULL)
			break; /* stopping, and nothing left to do */
		j = q->todo.head;
		q->todo.head = j->next;
		if (q->todo.head == NULL)
			q->todo.tail = NULL;
		pthread_mutex_unlock(&q->lock);

		j->run(j->arg);

		pthread_mutex_lock(&q->lock);
		jobq_put(&q->finished, j);
		/* Wakes the loop; the counter only needs to be non-zero. */
		if (write(q->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
			fatal("workq %s: eventfd write: %s", q->name, strerror(errno));
	}
	pthread_mutex_unlock(&q->lock);
	return NULL;
}

/* Run done() for every finished job; on the loop thread. */
static void workq_reap(struct workq *q)
{
	struct job *j;

	pthread_mutex_lock(&q->lock);
	j = jobq_take_all(&q->finished);
	pthread_mutex_unlock(&q->lock);
	while (j != NULL) {
		struct job *next = j->next;

		q->busy--;
		if (j->done)
			j->done(j->arg);
		free(j);
		j = next;
	}
}

static void workq_wake_cb(evutil_socket_t fd, short what, void *arg)
{
	uint64_t n;

	(void)what;
	if (read(fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
		log_warn("workq: eventfd read: %s", strerror(errno));
	workq_reap(arg);
}

struct workq *workq_new(struct event_base *base, int nthreads, const char *name)
{
	struct workq *q = xcalloc(1, sizeof(*q));

	if (nthreads <= 0)
		nthreads = (int)sysconf(_SC_NPROCESSORS_ONLN);
	if (nthreads <= 0)
		nthreads = 1;
	if (nthreads > WORKQ_MAX_THREADS)
		nthreads = WORKQ_MAX_THREADS;
	snprintf(q->name, sizeof(q->name), "%s", name);
	pthread_mutex_init(&q->lock, NULL);
	pthread_cond_init(&q->cond, NULL);
	q->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (q->efd < 0) {
		log_error("workq %s: eventfd: %s", name, strerror(errno));
		free(q);
		return NULL;
	}
	q->ev = event_new(base, q->efd, EV_READ | EV_PERSIST, workq_wake_cb, q);
	event_add(q->ev, NULL);
	for (int i = 0; i < nthreads; i++) {
		int err = pthread_create(&q->threads[i], NULL, workq_thread, q);

		if (err != 0)
			fatal("workq %s: pthread_create: %s", name, strerror(err));
		q->nthreads++;
	}
	return q;
}

void workq_push(struct workq *q, void (*run)(void *), void (*done)(void *), void *arg)
{
	struct job *j = xmalloc(sizeof(*j));

	j->run = run;
	j->done = done;
	j->arg = arg;
	q->busy++;
	pthread_mutex_lock(&q->lock);
	jobq_put(&q->todo, j);
	pthread_cond_signal(&q->cond);
	pthread_mutex_unlock(&q->lock);
}

int workq_busy(const struct workq *q)
{
	return q->busy;
}

void workq_free(struct workq *q)
{
	if (q == NULL)
		return;
	pthread_mutex_lock(&q->lock);
	q->stopping = 1;
	pthread_cond_broadcast(&q->cond);
	pthread_mutex_unlock(&q->lock);
	for (int i = 0; i < q->nthreads; i++)
		pthread_join(q->threads[i], NULL);
	workq_reap(q);
	event_free(q->ev);
	close(q->efd);
	pthread_mutex_destroy(&q->lock);
	pthread_cond_destroy(&q->cond);
	free(q);
}
