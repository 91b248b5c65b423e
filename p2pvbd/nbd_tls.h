/* SPDX-License-Identifier: ISC */
/*
 * nbd_tls: TLS on the NBD export (NBD_OPT_STARTTLS), with GnuTLS, the
 * library QEMU, nbdkit and libnbd use: pre-shared keys (--tls-psk FILE) or
 * X.509 certificates (--tls-creds DIR, laid out as QEMU's tls-creds-x509
 * with endpoint=server). The server runs in the NBD spec's FORCEDTLS mode
 * when credentials are given (nbd_opts.c); this file holds the credentials
 * and each connection's session.
 *
 * A session lives inside the event loop and never blocks: GnuTLS reads
 * ciphertext from the connection's input buffer and writes it to the
 * socket's bufferevent through custom pull/push functions, and plaintext
 * output goes through a libevent filter bufferevent stacked on the socket's
 * (see nbd_tls.c for why).
 */
#ifndef P2PVBD_NBD_TLS_H
#define P2PVBD_NBD_TLS_H

#include <stddef.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

/* --tls: not given, off (plaintext, explicitly), require (FORCEDTLS). */
enum nbd_tls_mode { NBD_TLS_UNSET = 0, NBD_TLS_OFF, NBD_TLS_REQUIRE };

/* The export's TLS options, as the command line gave them (strings borrowed). */
struct nbd_tls_opts {
	enum nbd_tls_mode mode;
	const char *psk_file;  /* --tls-psk: USERNAME:HEXKEY lines (pskfile.h) */
	const char *creds_dir; /* --tls-creds: server-cert.pem, server-key.pem, ca-cert.pem */
	int verify_peer;       /* --tls-verify-peer: clients need a certificate of ca-cert.pem */
};

/* Credentials for every connection of a server; loaded once, at start. */
struct nbd_tls_creds;

/*
 * Load the credentials o names (o->psk_file or o->creds_dir); NULL on error
 * (logged, saying which file and what to do). The caller frees them with
 * nbd_tls_creds_free, after the server that uses them.
 */
struct nbd_tls_creds *nbd_tls_creds_load(const struct nbd_tls_opts *o);
void nbd_tls_creds_free(struct nbd_tls_creds *cr);
/* "PSK" or "X.509" (for the log). */
const char *nbd_tls_creds_kind(const struct nbd_tls_creds *cr);

/* One connection's TLS session. */
struct nbd_tls;

/*
 * Start TLS on a connection (after NBD_REP_ACK to NBD_OPT_STARTTLS was
 * queued on raw): raw is the socket's bufferevent, whose ownership passes to
 * the returned session; raw_in the buffer that receives the socket's bytes
 * (the connection's netio reader's; borrowed, it must outlive every
 * nbd_tls_read call). name is for the log. The connection from now on writes
 * plaintext to nbd_tls_bev() and frees that bufferevent (which frees raw
 * and the session) instead of raw.
 */
struct nbd_tls *nbd_tls_start(const struct nbd_tls_creds *cr, struct bufferevent *raw,
                              struct evbuffer *raw_in, const char *name);
/* The plaintext bufferevent (output only; its callbacks are the connection's). */
struct bufferevent *nbd_tls_bev(struct nbd_tls *t);

/* What nbd_tls_read found. */
enum { NBD_TLS_ERROR = -1, NBD_TLS_AGAIN = 0, NBD_TLS_EOF = 1 };

/*
 * New bytes in raw_in: go on with the handshake, or decrypt records into
 * nbd_tls_input() while it holds fewer than high bytes. NBD_TLS_AGAIN (wait
 * for more), NBD_TLS_EOF (the client closed TLS), NBD_TLS_ERROR (the reason
 * is nbd_tls_error(); the connection must close).
 */
int nbd_tls_read(struct nbd_tls *t, size_t high);
/* The handshake completed (options go on inside TLS). */
int nbd_tls_established(const struct nbd_tls *t);
/* Decrypted input not yet consumed (owned by t). */
struct evbuffer *nbd_tls_input(struct nbd_tls *t);
/* Why the session failed ("" if it did not). */
const char *nbd_tls_error(const struct nbd_tls *t);

/*
 * Closing cleanly: encrypt every queued byte and the TLS close_notify. Returns
 * 1 if all of it is already sent, else 0 and calls drained(arg) once the
 * socket took the last byte (unless nbd_tls_stop came first).
 */
int nbd_tls_finish(struct nbd_tls *t, void (*drained)(void *arg), void *arg);
/* The connection is closing now: no drained call any more. */
void nbd_tls_stop(struct nbd_tls *t);

#endif
