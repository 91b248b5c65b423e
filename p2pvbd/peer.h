/* SPDX-License-Identifier: ISC */
/*
 * peer: one encrypted, authenticated connection to another p2pvbd process.
 *
 * A peer is a state machine on a libevent bufferevent:
 *
 *   CONNECTING -> HELLO -> AUTH -> READY -> (CLOSING) -> DEAD
 *
 * HELLO exchanges the plaintext hellos and derives the session keys; AUTH
 * exchanges and verifies the AUTH messages; READY passes every decoded
 * message to the owner's on_msg callback. The owner is told exactly once,
 * through on_close, that the peer is gone; the struct itself is freed later
 * by the event loop, never inside one of its own callbacks, so an owner may
 * call peer_close() from on_msg and the peer stays valid until it returns.
 *
 * Wire formats: proto/PROTOCOL.md, "Handshake" and "Frames".
 */
#ifndef P2PVBD_PEER_H
#define P2PVBD_PEER_H

#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>
#include <event2/bufferevent.h>

#include "netio.h"
#include "vcrypto.h"
#include "wire.h"

/*
 * Output above this many bytes counts as full: the owner stops queueing
 * pieces until on_drain. Small, because an urgent piece queued later waits
 * behind everything already sealed into this buffer (frames cannot be
 * reordered once their nonces are assigned): 64 KiB is 5 ms at 100 Mbit/s.
 */
#define PEER_OUT_HIGH (64u * 1024u)
/* on_drain fires when the output falls to this. */
#define PEER_OUT_LOW (32u * 1024u)
/*
 * Unsent bytes the kernel may hold for a peer (TCP_NOTSENT_LOWAT): data
 * handed to the kernel delays urgent pieces just as much as our own buffer.
 */
#define PEER_KERNEL_UNSENT (32u * 1024u)
/* Default silence after which a peer is dropped, seconds. */
#define PEER_TIMEOUT_DEFAULT 30
/*
 * The whole handshake (connecting, both HELLOs, both AUTHs) must be done
 * within this many seconds, or within the session timeout if that is
 * shorter: one deadline from the start, not a timeout that each byte
 * restarts (a HELLO sent a byte at a time would otherwise hold a connection
 * for 96 timeouts). A real handshake takes two or three round trips; 10 s
 * leaves room for a loaded host across a slow WAN link.
 */
#define PEER_HANDSHAKE_MAX_S 10
/*
 * After authentication, a frame that has begun to arrive must be complete
 * within the session timeout plus its length at this rate (a 64 KiB piece:
 * 4 s more; the largest, 1 MiB: 64 s more). A peer that trickles a frame
 * in a byte at a time, each byte just before the silence timeout, is
 * dropped; a real peer on a slow link sends far faster than this.
 */
#define PEER_FRAME_MIN_RATE (16u * 1024u)

enum peer_state {
	PEER_CONNECTING,
	PEER_HELLO,
	PEER_AUTH,
	PEER_READY,
	PEER_CLOSING, /* flushing a final ERROR before closing */
	PEER_DEAD,
};

struct peer;

/* What a peer reports to its owner. */
struct peer_ops {
	void (*on_ready)(struct peer *p);
	void (*on_msg)(struct peer *p, const struct wire_msg *m);
	void (*on_drain)(struct peer *p); /* output fell below PEER_OUT_LOW */
	/* The peer is gone. fatal != 0 if retrying this address cannot help
	 * (wrong key, wrong secret, refused volume). reason is for logs. */
	void (*on_close)(struct peer *p, int fatal, const char *reason);
	/* Optional: the peer sent ERROR m (on_close follows at once; must not close p). */
	void (*on_error)(struct peer *p, const struct wire_msg *m);
};

/* Shared by every peer of one volume; owned by the caller, outlives the peers. */
struct peer_ctx {
	struct event_base *base;
	struct evdns_base *dns;
	const struct peer_ops *ops;
	uint8_t volume_id[WIRE_ID_LEN];
	uint8_t source_key[WIRE_KEY_LEN];
	uint8_t join_secret[VCRYPTO_SECRET_LEN];
	const struct vcrypto_identity *identity; /* our own */
	int is_source;                           /* we are the volume's source */
	int timeout_s;
	struct bufferevent_rate_limit_group *upload_limit; /* optional */
	/* Counted by the peers, read by the owner (status). */
	uint64_t handshakes_late; /* handshakes not done by their deadline */
	uint64_t frames_late;     /* peers dropped for a frame that arrived too slowly */
};

/* The handshake's deadline for ctx, seconds: PEER_HANDSHAKE_MAX_S or the timeout if shorter. */
int peer_handshake_s(const struct peer_ctx *ctx);

/* A connection; its insides are peer.c's (peer_int.h), read through the accessors below. */
struct peer;

/* Start a connection to host:port. Returns the peer (state CONNECTING) or NULL. */
struct peer *peer_connect(struct peer_ctx *ctx, const char *host, uint16_t port, void *owner);
/* Take an accepted socket. Returns the peer (state HELLO) or NULL (fd closed). */
struct peer *peer_accept(struct peer_ctx *ctx, int fd, const struct sockaddr *sa, int salen,
                         void *owner);

/*
 * Run the protocol on a connected socket fd (taken over: closed with the
 * peer). initiator: this side opened the connection and speaks first. For
 * tests over a socketpair and for accepted connections. NULL on failure.
 */
struct peer *peer_start(struct peer_ctx *ctx, int fd, int initiator, const char *name, void *owner);

/* What other modules may read of a peer. */
const char *peer_name(const struct peer *p); /* "host:port", for logs */
int peer_is_ready(const struct peer *p);     /* authenticated, messages flow */
int peer_hello_done(const struct peer *p);   /* its HELLO named our volume and key (or READY) */
int peer_is_dead(const struct peer *p);      /* closed; freed from the loop */
int peer_is_source(const struct peer *p);    /* it proved it holds the source key */
int peer_initiator(const struct peer *p);    /* we opened the connection */
/* Its identity (WIRE_KEY_LEN bytes), once authenticated; owned by p. */
const uint8_t *peer_identity(const struct peer *p);
uint64_t peer_bytes_in(const struct peer *p);  /* payload bytes of PIECE messages received */
uint64_t peer_bytes_out(const struct peer *p); /* and sent */
void *peer_owner(const struct peer *p);        /* the owner's pointer (peer_connect/accept) */
void peer_set_owner(struct peer *p, void *owner);

/* Send one message; 0 or -1 (peer not READY or message invalid). */
int peer_send(struct peer *p, const struct wire_msg *m);
/*
 * Send a PIECE whose data is produced by fill(arg, dst, len) straight into
 * the output buffer (no intermediate copy). fill returns 0 or -1.
 */
int peer_send_piece(struct peer *p, uint32_t chunk, uint64_t gen, uint32_t offset, uint32_t len,
                    int (*fill)(void *arg, uint8_t *dst, size_t len, uint64_t off), void *arg,
                    uint64_t fill_off);
/* Bytes waiting in the output buffer. */
size_t peer_out_len(const struct peer *p);
int peer_out_full(const struct peer *p);

/* Stop / resume reading from the peer (input back-pressure). */
void peer_pause_read(struct peer *p);
void peer_resume_read(struct peer *p);

/* Close at once (reason for logs). on_close follows synchronously. */
void peer_close(struct peer *p, const char *reason);
/* Send ERROR code/text, flush it, then close. on_close follows at once. */
void peer_close_error(struct peer *p, uint16_t code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The same for E_BAD_DATA about a piece: the ERROR names the chunk and generation (§6.2). */
void peer_close_bad_chunk(struct peer *p, uint32_t chunk, uint64_t gen, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
