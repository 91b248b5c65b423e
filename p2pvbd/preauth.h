/* SPDX-License-Identifier: ISC */
/*
 * preauth: the table of accepted connections that have not authenticated
 * yet (half-open handshakes), and the decision about a new one. Pure: no
 * I/O, no clock, no allocation; the caller owns the connections and passes
 * the time in.
 *
 * DESIGN.md rule 9: nothing before authentication can exhaust anything. A
 * connection that has not proved the join secret is counted here, apart
 * from authenticated peers, and never takes an authenticated peer's place:
 *
 * - at most PREAUTH_PER_ADDR of them from one source address (an IPv6
 *   address counts by its /64, what one host or site usually holds): a
 *   further one from that address is refused at once. Refused, not let in
 *   in place of an older one of the same address: one host then cannot make
 *   the table churn, and the connections already there (perhaps a real peer
 *   behind the same NAT, halfway through its handshake) keep their chance.
 * - at most PREAUTH_MAX in all: a new one then takes the place of the
 *   oldest, preferring one that has not even sent a valid HELLO (so it does
 *   not know the volume id and source key). Dropping the oldest rather than
 *   refusing the newest keeps the door open: many addresses that hold
 *   connections open and idle would otherwise lock every real peer out
 *   until their deadline, and could simply reconnect then; a real peer's
 *   handshake takes a round trip or two, and once its HELLO passed it can be
 *   displaced only by connections that got as far.
 *
 * The handshake's deadline (peer.c) bounds how long any entry stays.
 */
#ifndef P2PVBD_PREAUTH_H
#define P2PVBD_PREAUTH_H

#include <stdint.h>

#include <sys/socket.h>

/*
 * Half-open handshakes at once. A real handshake lasts a round trip or two,
 * so even a swarm of many destinations starting together has few in flight;
 * 32 is half of SWARM_PEERS_MAX, and bounds what strangers hold: a peer
 * struct and at most one read of input each (peer.c), for the handshake's
 * deadline at most.
 */
#define PREAUTH_MAX 32
/*
 * Half-open handshakes from one address (an IPv6 /64). A destination opens
 * one connection to each peer; a few hosts behind one NAT may start at the
 * same moment. 4 lets one address hold an eighth of the table at most.
 */
#define PREAUTH_PER_ADDR 4

/* A source address as counted: IPv4 as ::ffff:a.b.c.d, IPv6 by its first 64 bits. */
struct preauth_addr {
	uint8_t b[16];
};

struct preauth_slot {
	void *conn; /* the caller's connection; NULL: the slot is free */
	struct preauth_addr addr;
	uint64_t since_ns; /* accepted at */
	int hello_ok;      /* its HELLO named our volume and source key */
};

struct preauth {
	struct preauth_slot slot[PREAUTH_MAX];
	int n; /* slots in use */
};

enum preauth_verdict {
	PREAUTH_ADMIT, /* there is room: preauth_add it */
	PREAUTH_EVICT, /* the table is full: close *victim (and preauth_remove it), then add */
	PREAUTH_REFUSE /* its address already has PREAUTH_PER_ADDR: close it at once */
};

/* The address of sa as counted; 0, or -1 for a family other than IPv4 and IPv6. */
int preauth_addr_of(const struct sockaddr *sa, struct preauth_addr *out);
/* Connections in the table from address a. */
int preauth_count_addr(const struct preauth *t, const struct preauth_addr *a);
/*
 * What to do with a new connection from a (the table is not changed). On
 * PREAUTH_EVICT, *victim is the connection to close to make room.
 */
enum preauth_verdict preauth_check(const struct preauth *t, const struct preauth_addr *a,
                                   void **victim);
/* Record conn (not owned) from a, accepted at now_ns. -1 if the table is full. */
int preauth_add(struct preauth *t, const struct preauth_addr *a, uint64_t now_ns, void *conn);
/* conn's HELLO passed: it is evicted only after those that got less far. */
void preauth_hello_ok(struct preauth *t, const void *conn);
/* conn authenticated or closed: forget it. 1 if it was in the table, else 0. */
int preauth_remove(struct preauth *t, const void *conn);

#endif
