/* SPDX-License-Identifier: ISC */
/*
 * imgsrc: a seed's image, read from a file descriptor or from an NBD server
 * through libnbd (the one file that calls libnbd for reading sources).
 */
#include "imgsrc.h"
#include "extmap.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <libnbd.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/*
 * How long the NBD handshake may take. A server that accepts the connection
 * but never answers (qemu-nbd already serving its one client: --shared) must
 * not hang the seed.
 */
#define IMGSRC_CONNECT_TIMEOUT_S 30
/*
 * The largest read sent in one NBD request when the server names no maximum:
 * 32 MiB is what the NBD spec lets a client assume. Chunks are at most 4 MiB.
 */
#define IMGSRC_NBD_MAX_REQUEST (32u << 20)
/* Bytes asked per block status request: a u32 on the wire; 1 GiB needs few round trips. */
#define IMGSRC_BS_REQUEST (1u << 30)
/*
 * Block status round trips allowed beyond one per chunk: a server answering
 * with tiny extents costs at most about as many round trips as reading
 * every chunk would, then its block status is given up.
 */
#define IMGSRC_BS_SLACK 64

struct imgsrc {
	uint64_t size;
	int fd;               /* a file source: borrowed; -1 for NBD */
	struct nbd_handle *h; /* an NBD source: owned */
	char *uri;            /* an NBD source: for messages */
	int block_status;     /* the server offers base:allocation */
	uint32_t max_request; /* an NBD source: the largest read in one request */
};

int imgsrc_is_nbd_uri(const char *name)
{
	static const char *const schemes[] = {"nbd://",       "nbds://",      "nbd+unix://",
	                                      "nbds+unix://", "nbd+vsock://", "nbds+vsock://"};

	for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++)
		if (strncmp(name, schemes[i], strlen(schemes[i])) == 0)
			return 1;
	return 0;
}

struct imgsrc *imgsrc_file(int fd, uint64_t size)
{
	struct imgsrc *s = xcalloc(1, sizeof(*s));

	s->fd = fd;
	s->size = size;
	return s;
}

/* Connect h to uri, bounded by IMGSRC_CONNECT_TIMEOUT_S; 0 or -1 (logged). */
static int imgsrc_connect(struct nbd_handle *h, const char *uri)
{
	uint64_t deadline = now_ns() + (uint64_t)IMGSRC_CONNECT_TIMEOUT_S * NS_PER_S;
	int rc;

	if (nbd_aio_connect_uri(h, uri) == -1)
		goto fail;
	while ((rc = nbd_aio_is_connecting(h)) == 1) {
		if (now_ns() > deadline) {
			log_error("NBD source %s: no handshake within %d s (does the server "
			          "serve another client already? qemu-nbd serves one unless "
			          "--shared=N)",
			          uri, IMGSRC_CONNECT_TIMEOUT_S);
			return -1;
		}
		if (nbd_poll(h, 1000) == -1)
			goto fail;
	}
	if (rc == -1 || nbd_aio_is_ready(h) != 1)
		goto fail;
	return 0;
fail:
	log_error("cannot connect to the NBD source %s: %s", uri,
	          nbd_get_error() ? nbd_get_error() : "the server closed the connection");
	return -1;
}

int imgsrc_nbd_open(const char *uri, struct imgsrc **out)
{
	struct nbd_handle *h = nbd_create();
	struct imgsrc *s;
	int64_t size, max;

	*out = NULL;
	if (h == NULL) {
		log_error("libnbd: %s", nbd_get_error());
		return -1;
	}
	/* The URI comes from our own command line: let it name TLS files (tls-psk-file=). */
	if (nbd_add_meta_context(h, LIBNBD_CONTEXT_BASE_ALLOCATION) == -1 ||
	    nbd_set_uri_allow_local_file(h, true) == -1) {
		log_error("libnbd: %s", nbd_get_error());
		nbd_close(h);
		return -1;
	}
	if (imgsrc_connect(h, uri) != 0) {
		nbd_close(h);
		return -1;
	}
	size = nbd_get_size(h);
	if (size <= 0) {
		log_error("NBD source %s: %s", uri,
		          size == 0 ? "the export is empty" : nbd_get_error());
		nbd_shutdown(h, 0);
		nbd_close(h);
		return -1;
	}
	s = xcalloc(1, sizeof(*s));
	s->fd = -1;
	s->h = h;
	s->size = (uint64_t)size;
	s->uri = xstrdup(uri);
	s->block_status = nbd_can_meta_context(h, LIBNBD_CONTEXT_BASE_ALLOCATION) == 1;
	max = nbd_get_block_size(h, LIBNBD_SIZE_MAXIMUM);
	s->max_request =
	    max > 0 && max < IMGSRC_NBD_MAX_REQUEST ? (uint32_t)max : IMGSRC_NBD_MAX_REQUEST;
	if (!s->block_status)
		log_info("NBD source %s offers no block status: every chunk is read", uri);
	if (nbd_is_read_only(h) == 0)
		log_warn("NBD source %s is writable: if anything writes it while it is seeded, "
		         "destinations refuse the chunks that changed (serve it read-only: "
		         "qemu-nbd -r, nbdkit -r)",
		         uri);
	*out = s;
	return 0;
}

uint64_t imgsrc_size(const struct imgsrc *s)
{
	return s->size;
}

int imgsrc_is_nbd(const struct imgsrc *s)
{
	return s->h != NULL;
}

ssize_t imgsrc_pread(struct imgsrc *s, void *buf, size_t len, uint64_t off)
{
	size_t done = 0;

	if (s->h == NULL)
		return read_at(s->fd, buf, len, off);
	if (off > s->size || len > s->size - off) {
		/* Past the end: as a file would, return what there is. */
		len = off > s->size ? 0 : (size_t)(s->size - off);
	}
	while (done < len) {
		size_t n = len - done < s->max_request ? len - done : s->max_request;

		if (nbd_pread(s->h, (uint8_t *)buf + done, n, off + done, 0) == -1) {
			int err = nbd_get_errno();

			log_error("NBD source %s: reading %zu bytes at offset %llu: %s", s->uri, n,
			          (unsigned long long)(off + done), nbd_get_error());
			errno = err != 0 ? err : EIO;
			return -1;
		}
		done += n;
	}
	return (ssize_t)len;
}

int imgsrc_pipelined(const struct imgsrc *s, size_t len)
{
	return s->h != NULL && len <= s->max_request;
}

/* A pipelined read in flight: whom to tell. */
struct imgsrc_aio {
	void (*done)(void *arg, int err);
	void *arg;
};

/* libnbd's completion callback: tell the reader; 1 retires the command. */
static int imgsrc_aio_complete(void *user_data, int *error)
{
	struct imgsrc_aio *a = user_data;

	a->done(a->arg, *error);
	return 1;
}

int imgsrc_aio_read(struct imgsrc *s, void *buf, size_t len, uint64_t off,
                    void (*done)(void *arg, int err), void *arg)
{
	struct imgsrc_aio *a = xmalloc(sizeof(*a));
	nbd_completion_callback cb = {
	    .callback = imgsrc_aio_complete, .user_data = a, .free = free};

	a->done = done;
	a->arg = arg;
	/* On failure libnbd never calls back, but frees a (.free). */
	if (nbd_aio_pread(s->h, buf, len, off, cb, 0) == -1) {
		log_error("NBD source %s: reading %zu bytes at offset %llu: %s", s->uri, len,
		          (unsigned long long)off, nbd_get_error());
		return -1;
	}
	return 0;
}

int imgsrc_aio_wait(struct imgsrc *s, int timeout_ms)
{
	if (nbd_poll(s->h, timeout_ms) == -1) {
		log_error("NBD source %s: %s", s->uri, nbd_get_error());
		return -1;
	}
	return 0;
}

/* libnbd's extent callback: a reply for base:allocation goes to the map (others are ignored). */
static int zero_map_extents(void *arg, const char *context, uint64_t off, uint32_t *entries,
                            size_t nr_entries, int *error)
{
	(void)error;
	if (strcmp(context, LIBNBD_CONTEXT_BASE_ALLOCATION) == 0)
		extmap_add(arg, off, entries, nr_entries); /* a refusal is in its why */
	return 0;
}

uint8_t *imgsrc_zero_map(struct imgsrc *s, uint32_t chunk_size)
{
	struct extmap m;
	uint64_t asked = 0, limit;
	char b[16];

	if (s->h == NULL || !s->block_status || extmap_init(&m, s->size, chunk_size) != 0)
		return NULL;
	limit = (uint64_t)m.chunk_count + IMGSRC_BS_SLACK;
	while (m.next < s->size && m.why == NULL) {
		uint64_t before = m.next, left = s->size - m.next;
		nbd_extent_callback cb = {.callback = zero_map_extents, .user_data = &m};

		if (asked++ == limit) {
			log_warn("NBD source %s: more block status round trips than chunks; "
			         "reading the rest of the image",
			         s->uri);
			break;
		}
		if (nbd_block_status(s->h, left < IMGSRC_BS_REQUEST ? left : IMGSRC_BS_REQUEST,
		                     m.next, cb, 0) == -1) {
			log_warn("NBD source %s: block status at offset %llu: %s; reading the rest "
			         "of the image",
			         s->uri, (unsigned long long)m.next, nbd_get_error());
			break;
		}
		if (m.why == NULL && m.next == before) {
			log_warn("NBD source %s: block status at offset %llu said nothing; reading "
			         "the rest of the image",
			         s->uri, (unsigned long long)before);
			break;
		}
	}
	if (m.why != NULL)
		log_warn("NBD source %s: malformed block status at offset %llu (%s); reading the "
		         "rest of the image",
		         s->uri, (unsigned long long)m.next, m.why);
	log_debug("NBD source %s: %u of %u chunks read as zeros (%s described, %llu requests)",
	          s->uri, m.nzero, m.chunk_count, fmt_bytes(m.next, b, sizeof(b)),
	          (unsigned long long)asked);
	return extmap_take(&m);
}

void imgsrc_advise_sequential(struct imgsrc *s)
{
	int err;

	if (s->h != NULL)
		return;
	err = posix_fadvise(s->fd, 0, (off_t)s->size, POSIX_FADV_SEQUENTIAL);
	if (err != 0)
		log_debug("posix_fadvise: %s", strerror(err));
}

void imgsrc_free(struct imgsrc *s)
{
	if (s == NULL)
		return;
	if (s->h != NULL) {
		nbd_shutdown(s->h, 0); /* NBD_CMD_DISC: a clean goodbye */
		nbd_close(s->h);
	}
	free(s->uri);
	free(s);
}
