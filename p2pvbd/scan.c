/* SPDX-License-Identifier: ISC */
/*
 * scan: hash an image into manifest entries with worker threads.
 *
 * The image is an imgsrc (a file, or an NBD server read with libnbd). Chunks
 * the source says read as zeros (an NBD server's block status) are zero
 * chunks without being read; the bytes actually read are counted. An NBD
 * source is one connection on which a synchronous read holds the handle for
 * a round trip: there the calling thread reads, with SCAN_WINDOW requests in
 * flight, and the workers only hash what arrived (read_pipelined).
 *
 * Hashing a large image is CPU-bound (BLAKE2b runs slower than a disk reads),
 * so each worker takes the next chunk index from a shared atomic counter and
 * reads and hashes whole chunks on its own; entries[i] is written only by
 * the worker that took chunk i. The calling thread only waits and reports
 * progress.
 */
#include "scan.h"
#include "imgsrc.h"
#include "util.h"
#include "vcrypto.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Beyond this many threads a scan is limited by the disk, not by hashing. */
#define SCAN_MAX_THREADS 16
/* How often the progress callback runs, in nanoseconds. */
#define SCAN_PROGRESS_NS (200 * 1000 * 1000L)
#define SCAN_PROGRESS_MS 200
/* After a failure, how many seconds reads still in flight may take to end. */
#define SCAN_DRAIN_S 10
/*
 * A pipelined source (NBD: one connection): reads kept in flight by the
 * calling thread. 8 chunks (2 MiB at 256 KiB) cover the round trip of a
 * local qemu-nbd; more only queue up behind the hashing.
 */
#define SCAN_WINDOW 8

/* A chunk read from a pipelined source, on its way to a worker. */
struct scan_buf {
	struct scan_buf *next;
	struct scan_job *job;
	uint64_t chunk;
	uint32_t len;
	uint8_t data[]; /* chunk_size bytes */
};

struct scan_job {
	struct imgsrc *src; /* borrowed */
	uint8_t *zero_map;  /* chunks the source says read as zeros (not read), or NULL */
	uint64_t image_size;
	uint32_t chunk_size;
	uint32_t chunk_count;
	uint64_t gen;
	struct manifest_entry *entries; /* borrowed from the caller */
	/* Hashes of all-zero chunks: full length and the last chunk's length. */
	uint8_t zero_hash_full[VCRYPTO_HASH_LEN];
	uint8_t zero_hash_last[VCRYPTO_HASH_LEN];

	atomic_uint_fast64_t next;       /* next chunk index to take (may overshoot the count) */
	atomic_uint_fast64_t done_bytes; /* bytes hashed so far (zero chunks known unread too) */
	atomic_uint_fast64_t read_bytes; /* bytes read from the source */
	atomic_int failed;               /* set by the first worker that fails */

	pthread_mutex_t lock;
	pthread_cond_t cond; /* signalled as each worker exits (and, pipelined, frees a buffer) */
	int running;         /* workers not yet exited; under lock */

	/*
	 * A pipelined source: the calling thread reads, the workers hash what
	 * arrived. Under lock: ready (FIFO), spare buffers, eof (no more will
	 * be ready). inflight: the calling thread's alone.
	 */
	int pipelined;
	struct scan_buf *ready, **ready_tail, *spare;
	int eof;
	pthread_cond_t ready_cond; /* signalled when ready grows or eof is set */
	int inflight;
	struct scan_buf **bufs; /* every buffer, to free at the end */
	int nbufs;
};

int scan_is_zero(const void *p, size_t len)
{
	const unsigned char *b = p;
	uint64_t w[4];
	size_t i = 0;

	/* 32 bytes per step: OR four words so the loop has one branch. */
	for (; i + sizeof(w) <= len; i += sizeof(w)) {
		memcpy(w, b + i, sizeof(w));
		if ((w[0] | w[1] | w[2] | w[3]) != 0)
			return 0;
	}
	for (; i + 8 <= len; i += 8) {
		memcpy(w, b + i, 8);
		if (w[0] != 0)
			return 0;
	}
	for (; i < len; i++) {
		if (b[i] != 0)
			return 0;
	}
	return 1;
}

static uint32_t job_chunk_len(const struct scan_job *job, uint64_t chunk)
{
	if (chunk + 1 < job->chunk_count)
		return job->chunk_size;
	return (uint32_t)(job->image_size - chunk * job->chunk_size);
}

/* Record the first failure (later ones are consequences) and stop the other workers. */
static void job_fail(struct scan_job *job, uint64_t chunk, uint64_t offset, int err)
{
	if (atomic_exchange(&job->failed, 1) != 0)
		return;
	if (err != 0)
		log_error("scan: reading chunk %llu at offset %llu: %s", (unsigned long long)chunk,
		          (unsigned long long)offset, strerror(err));
	else
		log_error("scan: image ends at offset %llu (chunk %llu), before its size %llu",
		          (unsigned long long)offset, (unsigned long long)chunk,
		          (unsigned long long)job->image_size);
}

/* Read one whole chunk into buf; 0, or -1 after job_fail. */
static int read_chunk(struct scan_job *job, uint64_t chunk, uint8_t *buf, size_t len)
{
	uint64_t off = chunk * job->chunk_size;
	ssize_t n = imgsrc_pread(job->src, buf, len, off);

	if (n != (ssize_t)len) {
		/* n < 0: an error (errno); else the image ended at off + n. */
		job_fail(job, chunk, off + (n < 0 ? 0 : (uint64_t)n), n < 0 ? errno : 0);
		return -1;
	}
	return 0;
}

/* Chunk `chunk` reads as zeros: its entry, without hashing. */
static void set_zero(struct scan_job *job, uint64_t chunk)
{
	struct manifest_entry *e = &job->entries[chunk];

	e->gen = job->gen;
	e->flags = MANIFEST_F_ZERO;
	memcpy(e->hash, chunk + 1 < job->chunk_count ? job->zero_hash_full : job->zero_hash_last,
	       VCRYPTO_HASH_LEN);
	atomic_fetch_add_explicit(&job->done_bytes, job_chunk_len(job, chunk),
	                          memory_order_relaxed);
}

/* The entry of chunk `chunk`, whose len bytes were read into buf. */
static void set_hashed(struct scan_job *job, uint64_t chunk, const uint8_t *buf, uint32_t len)
{
	struct manifest_entry *e = &job->entries[chunk];

	atomic_fetch_add_explicit(&job->read_bytes, len, memory_order_relaxed);
	if (scan_is_zero(buf, len)) {
		set_zero(job, chunk);
		return;
	}
	e->gen = job->gen;
	e->flags = 0;
	vcrypto_hash(e->hash, buf, len);
	atomic_fetch_add_explicit(&job->done_bytes, len, memory_order_relaxed);
}

static int is_known_zero(const struct scan_job *job, uint64_t chunk)
{
	return job->zero_map != NULL && bit_get(job->zero_map, (uint32_t)chunk);
}

/* A worker of a pipelined source: hash what the calling thread read, until eof. */
static void worker_pipelined(struct scan_job *job)
{
	for (;;) {
		struct scan_buf *b;

		pthread_mutex_lock(&job->lock);
		while (job->ready == NULL && !job->eof)
			pthread_cond_wait(&job->ready_cond, &job->lock);
		b = job->ready;
		if (b != NULL && (job->ready = b->next) == NULL)
			job->ready_tail = &job->ready;
		pthread_mutex_unlock(&job->lock);
		if (b == NULL)
			return;
		if (!atomic_load_explicit(&job->failed, memory_order_relaxed))
			set_hashed(job, b->chunk, b->data, b->len);
		pthread_mutex_lock(&job->lock);
		b->next = job->spare;
		job->spare = b;
		pthread_cond_signal(&job->cond);
		pthread_mutex_unlock(&job->lock);
	}
}

/* A worker that reads its own chunks (a file: the kernel reads ahead). */
static void worker_reading(struct scan_job *job)
{
	uint8_t *buf = xmalloc(job->chunk_size); /* this worker's own chunk buffer */

	while (!atomic_load_explicit(&job->failed, memory_order_relaxed)) {
		uint64_t chunk = atomic_fetch_add_explicit(&job->next, 1, memory_order_relaxed);
		uint32_t len;

		if (chunk >= job->chunk_count)
			break;
		len = job_chunk_len(job, chunk);
		if (is_known_zero(job, chunk)) {
			set_zero(job, chunk);
			continue;
		}
		if (read_chunk(job, chunk, buf, len) < 0)
			break;
		set_hashed(job, chunk, buf, len);
	}
	free(buf);
}

static void *scan_worker(void *arg)
{
	struct scan_job *job = arg;

	if (job->pipelined)
		worker_pipelined(job);
	else
		worker_reading(job);

	pthread_mutex_lock(&job->lock);
	job->running--;
	pthread_cond_signal(&job->cond);
	pthread_mutex_unlock(&job->lock);
	return NULL;
}

static int scan_thread_count(int nthreads, uint32_t chunk_count)
{
	long n = nthreads;

	if (n <= 0) {
		n = sysconf(_SC_NPROCESSORS_ONLN);
		if (n <= 0)
			n = 1;
	}
	if (n > SCAN_MAX_THREADS)
		n = SCAN_MAX_THREADS;
	if ((uint64_t)n > chunk_count)
		n = (long)chunk_count;
	return (int)n;
}

/* The hashes of zero chunks, computed once: a sparse image is mostly zero chunks. */
static void scan_zero_hashes(struct scan_job *job)
{
	uint32_t last = job_chunk_len(job, job->chunk_count - 1);
	uint8_t *zero = xcalloc(1, job->chunk_size);

	vcrypto_hash(job->zero_hash_last, zero, last);
	if (last == job->chunk_size)
		memcpy(job->zero_hash_full, job->zero_hash_last, VCRYPTO_HASH_LEN);
	else
		vcrypto_hash(job->zero_hash_full, zero, job->chunk_size);
	free(zero);
}

static void deadline_after(struct timespec *ts, long ns)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_nsec += ns;
	while (ts->tv_nsec >= NS_PER_S) {
		ts->tv_nsec -= NS_PER_S;
		ts->tv_sec++;
	}
}

/* A pipelined read arrived (err 0) or failed: to the workers, or back to the spares. */
static void pipelined_done(void *arg, int err)
{
	struct scan_buf *b = arg;
	struct scan_job *job = b->job;

	job->inflight--;
	if (err != 0)
		job_fail(job, b->chunk, b->chunk * job->chunk_size, err);
	pthread_mutex_lock(&job->lock);
	if (err != 0) {
		b->next = job->spare;
		job->spare = b;
	} else {
		b->next = NULL;
		*job->ready_tail = b;
		job->ready_tail = &b->next;
		pthread_cond_signal(&job->ready_cond);
	}
	pthread_mutex_unlock(&job->lock);
}

/* A spare buffer, or NULL if every one is being read or hashed. */
static struct scan_buf *take_spare(struct scan_job *job)
{
	struct scan_buf *b;

	pthread_mutex_lock(&job->lock);
	b = job->spare;
	if (b != NULL)
		job->spare = b->next;
	pthread_mutex_unlock(&job->lock);
	return b;
}

/* Start reading chunks from *next on while the window and the spare buffers allow. */
static void start_reads(struct scan_job *job, uint64_t *next)
{
	while (*next < job->chunk_count && job->inflight < SCAN_WINDOW &&
	       !atomic_load_explicit(&job->failed, memory_order_relaxed)) {
		uint64_t c = *next;
		struct scan_buf *b;

		if (is_known_zero(job, c)) {
			set_zero(job, c);
			(*next)++;
			continue;
		}
		if ((b = take_spare(job)) == NULL)
			return;
		b->chunk = c;
		b->len = job_chunk_len(job, c);
		job->inflight++;
		if (imgsrc_aio_read(job->src, b->data, b->len, c * job->chunk_size, pipelined_done,
		                    b) != 0) {
			pipelined_done(b, EIO);
			return;
		}
		(*next)++;
	}
}

/*
 * The calling thread's part with a pipelined source: keep SCAN_WINDOW reads
 * in flight in rising chunk order and hand each chunk that arrived to the
 * workers (chunks known to read as zeros are not read); report progress.
 * Returns once every read ended or the scan failed, with eof set.
 */
static void read_pipelined(struct scan_job *job, int nbufs, scan_progress_fn progress, void *arg)
{
	uint64_t next = 0, report = now_ns() + SCAN_PROGRESS_NS;
	struct timespec deadline;

	job->bufs = xcalloc((size_t)nbufs, sizeof(*job->bufs));
	job->nbufs = nbufs;
	for (int i = 0; i < nbufs; i++) {
		struct scan_buf *b = xmalloc(sizeof(*b) + job->chunk_size);

		b->job = job;
		b->next = job->spare;
		job->spare = job->bufs[i] = b;
	}
	for (;;) {
		start_reads(job, &next);
		if (atomic_load(&job->failed) || (next == job->chunk_count && job->inflight == 0))
			break;
		if (job->inflight > 0) {
			/* Completions run here, on this thread (pipelined_done). */
			if (imgsrc_aio_wait(job->src, SCAN_PROGRESS_MS) != 0) {
				job_fail(job, next, next * job->chunk_size, EIO);
				break;
			}
		} else {
			/* Every buffer is with the workers: wait for one back. */
			pthread_mutex_lock(&job->lock);
			deadline_after(&deadline, SCAN_PROGRESS_NS);
			while (job->spare == NULL && pthread_cond_timedwait(&job->cond, &job->lock,
			                                                    &deadline) != ETIMEDOUT)
				;
			pthread_mutex_unlock(&job->lock);
		}
		if (progress && now_ns() >= report) {
			progress(atomic_load(&job->done_bytes), job->image_size, arg);
			report = now_ns() + SCAN_PROGRESS_NS;
		}
	}
	/* No read may end later in a buffer that is freed: let those in flight end. */
	for (int i = 0; job->inflight > 0 && i < SCAN_DRAIN_S; i++)
		if (imgsrc_aio_wait(job->src, 1000) != 0)
			break;
	pthread_mutex_lock(&job->lock);
	job->eof = 1;
	pthread_cond_broadcast(&job->ready_cond);
	pthread_mutex_unlock(&job->lock);
}

/* The buffers of a pipelined scan, once the workers are gone (kept if a read never ended). */
static void free_bufs(struct scan_job *job)
{
	if (job->inflight > 0) {
		log_warn("scan: %d reads never ended; their buffers are not freed", job->inflight);
	} else {
		for (int i = 0; i < job->nbufs; i++)
			free(job->bufs[i]);
	}
	free(job->bufs);
}

/* Start up to n workers with all signals blocked, so that signals reach the caller's thread. */
static int scan_start(struct scan_job *job, pthread_t *tids, int n)
{
	sigset_t all, old;
	int started = 0, err;

	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	for (int i = 0; i < n; i++) {
		pthread_mutex_lock(&job->lock);
		job->running++;
		pthread_mutex_unlock(&job->lock);
		err = pthread_create(&tids[i], NULL, scan_worker, job);
		if (err != 0) {
			pthread_mutex_lock(&job->lock);
			job->running--;
			pthread_mutex_unlock(&job->lock);
			log_warn("scan: starting worker %d of %d: %s", i + 1, n, strerror(err));
			break;
		}
		started++;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (started == 0)
		log_error("scan: could not start any worker thread");
	return started;
}

int scan_source(struct imgsrc *src, uint32_t chunk_size, uint64_t gen, int nthreads,
                struct manifest_entry *entries, scan_progress_fn progress, void *arg,
                uint64_t *bytes_read)
{
	uint64_t image_size = imgsrc_size(src);
	struct scan_job job;
	pthread_condattr_t ca;
	pthread_t tids[SCAN_MAX_THREADS];
	struct timespec deadline;
	uint64_t count;
	int n, started, ret = -1;

	*bytes_read = 0;
	if (chunk_size == 0) {
		log_error("scan: chunk size must not be zero");
		return -1;
	}
	count = image_size / chunk_size + (image_size % chunk_size != 0);
	if (count > UINT32_MAX || image_size > INT64_MAX) {
		log_error("scan: image size %llu is too large for chunk size %u",
		          (unsigned long long)image_size, chunk_size);
		return -1;
	}
	if (count == 0) {
		if (progress)
			progress(0, 0, arg);
		return 0;
	}

	memset(&job, 0, sizeof(job));
	job.src = src;
	job.image_size = image_size;
	job.chunk_size = chunk_size;
	job.chunk_count = (uint32_t)count;
	job.gen = gen;
	job.entries = entries;
	atomic_init(&job.next, 0);
	atomic_init(&job.done_bytes, 0);
	atomic_init(&job.read_bytes, 0);
	atomic_init(&job.failed, 0);
	scan_zero_hashes(&job);
	/* What the source knows of its zeros (an NBD server's block status) is never read. */
	job.zero_map = imgsrc_zero_map(src, chunk_size);
	/* Workers claim chunks in rising order, so the kernel's readahead helps. */
	imgsrc_advise_sequential(src);
	/* One NBD connection: read here, requests in flight; hash on the workers. */
	job.pipelined = imgsrc_pipelined(src, chunk_size);
	job.ready_tail = &job.ready;
	pthread_cond_init(&job.ready_cond, NULL);

	pthread_mutex_init(&job.lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&job.cond, &ca);
	pthread_condattr_destroy(&ca);

	n = scan_thread_count(nthreads, job.chunk_count);
	started = scan_start(&job, tids, n);
	if (started == 0)
		goto out;
	if (job.pipelined)
		read_pipelined(&job, SCAN_WINDOW + 2 * started, progress, arg);

	pthread_mutex_lock(&job.lock);
	deadline_after(&deadline, SCAN_PROGRESS_NS);
	while (job.running > 0) {
		if (pthread_cond_timedwait(&job.cond, &job.lock, &deadline) != ETIMEDOUT)
			continue;
		/* The callback may be slow (a terminal): do not hold up the workers' exit. */
		pthread_mutex_unlock(&job.lock);
		if (progress)
			progress(atomic_load(&job.done_bytes), image_size, arg);
		pthread_mutex_lock(&job.lock);
		deadline_after(&deadline, SCAN_PROGRESS_NS);
	}
	pthread_mutex_unlock(&job.lock);
	for (int i = 0; i < started; i++)
		pthread_join(tids[i], NULL);

	if (atomic_load(&job.failed))
		goto out;
	if (progress)
		progress(atomic_load(&job.done_bytes), image_size, arg);
	ret = 0;
out:
	*bytes_read = atomic_load(&job.read_bytes);
	free(job.zero_map);
	free_bufs(&job);
	pthread_cond_destroy(&job.ready_cond);
	pthread_cond_destroy(&job.cond);
	pthread_mutex_destroy(&job.lock);
	return ret;
}

int scan_image(int fd, uint64_t image_size, uint32_t chunk_size, uint64_t gen, int nthreads,
               struct manifest_entry *entries, scan_progress_fn progress, void *arg)
{
	struct imgsrc *src = imgsrc_file(fd, image_size);
	uint64_t bytes_read;
	int rc = scan_source(src, chunk_size, gen, nthreads, entries, progress, arg, &bytes_read);

	imgsrc_free(src);
	return rc;
}
