/* SPDX-License-Identifier: ISC */
/*
 * nbd_int.h: what the files of the NBD server share (nbd.c: connections,
 * transmission and the listener; nbd_opts.c: option haggling). Private to
 * them; nbd.h is the interface.
 */
#ifndef P2PVBD_NBD_INT_H
#define P2PVBD_NBD_INT_H

#include <stddef.h>
#include <stdint.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/listener.h>

#include "nbd.h"
#include "nbd_wire.h"
#include "nbd_tls.h"
#include "netio.h"
#include "sockpath.h"

enum conn_state {
	NC_CFLAGS,  /* greeting sent, waiting for the client flags */
	NC_OPTIONS, /* option haggling */
	NC_SKIP,    /* discarding the data of an oversized option */
	NC_TLS,     /* NBD_OPT_STARTTLS acknowledged: TLS handshake */
	NC_TRANS,   /* transmission */
	NC_CLOSING, /* flushing the last bytes, then close */
	NC_DEAD,
};

struct nbd_conn;

/* One transmission request, from decoding to its reply. */
struct nbd_req {
	struct nbd_conn *c;
	struct nbdw_request r;
	uint8_t *data;       /* WRITE payload (owned) */
	uint32_t next_check; /* first chunk not yet known to be ready */
	int parked;
	int held;                    /* waits for a final generation (not yet started) */
	uint64_t seen;               /* on_chunk epoch it was last tried in */
	struct nbd_req *next, *prev; /* in the server's parked list */
};

struct nbd_conn {
	struct nbd_server *srv;
	struct bufferevent *bev; /* output (with TLS: the plaintext filter, nbd_tls.h) */
	struct netio_reader rd;  /* input (with TLS: ciphertext) */
	struct nbd_tls *tls;     /* after NBD_OPT_STARTTLS; freed with bev */
	int tls_eof;             /* the client's TLS close_notify came */
	enum conn_state state;
	char name[64];
	uint32_t cflags;
	int structured;
	uint32_t meta_id; /* base:allocation selected for BLOCK_STATUS, or 0 */
	uint32_t skip_left;
	uint32_t skip_option;
	struct nbdw_limits lim;
	int nreqs; /* requests not yet replied to */
	int disc;  /* client sent DISC: close when nreqs reaches 0 */
	int read_paused;
	uint64_t last_read_end; /* for readahead */
	int nflushing;          /* requests waiting in swarm_flush (they point to c) */
	int free_on_flush;      /* closed while nflushing > 0: the last flush_done frees c */
	struct nbd_conn *next;
};

struct nbd_server {
	struct event_base *base;
	struct swarm *sw;
	struct evconnlistener *listener;
	char address[300];
	char *unix_path;                 /* unix:PATH's path, or NULL */
	struct sockpath sock;            /* the socket made there, removed at exit if still ours */
	const struct nbd_tls_creds *tls; /* TLS required (FORCEDTLS), or NULL: none */
	struct nbd_conn *conns;
	struct nbd_req *parked;
	uint64_t epoch;
	uint64_t size;
	uint32_t chunk_size;
	int nconns_seen;            /* clients that reached transmission, ever */
	void (*idle_cb)(void *arg); /* the last client left */
	void *idle_arg;
};

/* nbd.c */

/* Log and make the state change. */
void nbd_conn_set_state(struct nbd_conn *c, enum conn_state st);
/* Close now: parked requests of the connection are dropped (never answered). */
void nbd_conn_close(struct nbd_conn *c, const char *why);
/* Close once the output is flushed (after ABORT, DISC, a fatal reply). */
void nbd_conn_close_after_flush(struct nbd_conn *c);
/* Queue bytes for the client. */
void nbd_conn_write(struct nbd_conn *c, const void *data, size_t len);
/* NBD_OPT_STARTTLS was acknowledged: everything after is TLS (state NC_TLS). */
void nbd_conn_start_tls(struct nbd_conn *c);

/* nbd_opts.c */

/* Handshake input; returns 1 if it consumed something, 0 if it needs more bytes. */
int nbd_opts_read(struct nbd_conn *c, struct evbuffer *in);

#endif
