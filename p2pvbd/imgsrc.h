/* SPDX-License-Identifier: ISC */
/*
 * imgsrc: where a seed reads its image from. Either a file or block device
 * (a descriptor, read with pread) or an NBD server named by a URI such as
 * nbd+unix:///?socket=PATH or nbd://HOST:PORT/EXPORT, read with libnbd: a
 * qcow2, vmdk or any other image that qemu-nbd, nbdkit or QEMU serves,
 * without converting it. The three readers of a seed's image (the hash at
 * start, serving chunks to peers, hashing a chunk again) go through it.
 *
 * Every call is thread-safe. An NBD source is one connection (qemu-nbd
 * serves one client unless told otherwise, and exits when its last client
 * leaves): libnbd locks the handle for each request, so concurrent readers
 * take turns on the wire while their hashing still runs in parallel.
 */
#ifndef P2PVBD_IMGSRC_H
#define P2PVBD_IMGSRC_H

#include <stdint.h>
#include <sys/types.h>

struct imgsrc;

/* 1 if name is an NBD URI (nbd://, nbds://, nbd+unix://, nbds+unix://, nbd+vsock://...). */
int imgsrc_is_nbd_uri(const char *name);

/* A source reading fd (borrowed: the caller closes it after imgsrc_free), size bytes. */
struct imgsrc *imgsrc_file(int fd, uint64_t size);

/*
 * Connect to the NBD server of uri (libnbd's nbd_connect_uri syntax) and
 * learn the export's size; ask for block status (base:allocation) where the
 * server offers it. 0 with *out, or -1 (logged).
 */
int imgsrc_nbd_open(const char *uri, struct imgsrc **out);

uint64_t imgsrc_size(const struct imgsrc *s);

/* 1 for an NBD source. */
int imgsrc_is_nbd(const struct imgsrc *s);

/*
 * Read len bytes at off into buf. The byte count (len; less only if a file
 * ends early), or -1 with errno set (an NBD error is logged).
 */
ssize_t imgsrc_pread(struct imgsrc *s, void *buf, size_t len, uint64_t off);

/*
 * Pipelined reads. An NBD source reads fastest with several requests in
 * flight on its one connection (a synchronous read waits a round trip with
 * the handle locked): imgsrc_pipelined says whether s is such a source and a
 * read of len bytes fits one request. imgsrc_aio_read starts one; done(arg,
 * err) runs once it has arrived (err 0) or failed (an errno), from
 * imgsrc_aio_wait, or from another thread's imgsrc_pread on s (keep done
 * thread-safe). 0, or -1 (logged; done never runs).
 */
int imgsrc_pipelined(const struct imgsrc *s, size_t len);
int imgsrc_aio_read(struct imgsrc *s, void *buf, size_t len, uint64_t off,
                    void (*done)(void *arg, int err), void *arg);
/*
 * Run the completions of the reads started, waiting up to timeout_ms for one
 * to arrive. 0, or -1 if the connection failed (logged).
 */
int imgsrc_aio_wait(struct imgsrc *s, int timeout_ms);

/*
 * The chunks (of chunk_size bytes) that the source says read as zeros, as a
 * bitmap with a bit per chunk (the caller frees it), or NULL if it cannot
 * tell: a file (always read whole), or an NBD server without block status.
 * A server whose replies are malformed is logged and trusted no further: the
 * chunks its earlier well-formed replies covered stay marked.
 */
uint8_t *imgsrc_zero_map(struct imgsrc *s, uint32_t chunk_size);

/* The whole image is about to be read in rising order (a file: readahead); a hint only. */
void imgsrc_advise_sequential(struct imgsrc *s);

void imgsrc_free(struct imgsrc *s);

#endif
