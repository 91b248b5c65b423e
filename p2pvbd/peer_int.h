/* SPDX-License-Identifier: ISC */
/*
 * peer_int: the inside of a peer connection, for peer.c and for the tests
 * and test tools that need it (tests/unit/test_peer.c, tests/tools/badpeer.c).
 * Everyone else reads a peer through peer.h's accessors.
 */
#ifndef P2PVBD_PEER_INT_H
#define P2PVBD_PEER_INT_H

#include "peer.h"

struct peer {
	struct peer_ctx *ctx;
	struct bufferevent *bev; /* output (and connecting) */
	struct netio_reader rd;  /* input */
	enum peer_state state;
	int initiator;
	char name[80]; /* "host:port", for logs */

	struct vcrypto_kx kx;
	uint8_t hello_mine[WIRE_HELLO_LEN];
	uint8_t transcript[VCRYPTO_HASH_LEN];
	uint8_t rx_key[VCRYPTO_KEY_LEN], tx_key[VCRYPTO_KEY_LEN];
	uint64_t rx_ctr, tx_ctr;

	uint8_t identity[WIRE_KEY_LEN]; /* the peer's, once authenticated */
	int is_source;                  /* the peer proved it holds the source key */

	uint8_t *rx_plain; /* WIRE_MAX_MSG + WIRE_TAG_LEN scratch (from AUTH on) */
	uint8_t *tx_plain; /* WIRE_MAX_MSG scratch (from AUTH on) */
	struct event *keepalive;
	struct event *handshake_ev; /* the handshake's deadline (PEER_HANDSHAKE_MAX_S) */
	struct event *frame_ev;     /* the deadline of the frame arriving (PEER_FRAME_MIN_RATE) */
	uint64_t frame_start_ns;    /* when that frame began to arrive (0: none partial) */
	uint64_t last_recv_ns;      /* when bytes last arrived */
	uint64_t last_send_ns;
	int close_notified;
	int read_paused;

	uint64_t bytes_in, bytes_out; /* payload bytes of PIECE messages */
	void *owner;                  /* for the owner's use */
};

#endif
