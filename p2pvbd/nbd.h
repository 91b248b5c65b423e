/* SPDX-License-Identifier: ISC */
/*
 * nbd: the NBD server that exports the volume to the local VM while it
 * arrives (fetch -e). Fixed newstyle handshake, structured replies,
 * base:allocation, several connections; all in the swarm's event loop.
 *
 * A read is answered once every chunk it covers is readable; until then it
 * is parked and its chunks are fetched before anything else (swarm_fault).
 * Other requests, on this and other connections, are served meanwhile.
 * Writes make chunks local (never overwritten by fetched data); a write that
 * covers part of a missing chunk waits for the chunk first. FLUSH and FUA
 * reply once everything written before is durable. TLS, when configured, is
 * required before anything else (nbd_tls.h). See proto/NBD.md.
 */
#ifndef P2PVBD_NBD_H
#define P2PVBD_NBD_H

#include <event2/event.h>

#include "swarm_export.h"

struct nbd_server;

struct nbd_tls_creds;

/*
 * Serve the volume of sw on spec: "unix:PATH" or "HOST:PORT" (numeric host;
 * port 0 picks one). Listening starts at once; the volume must be known
 * (swarm_volume_size > 0). With tls (nbd_tls.h; borrowed, it must outlive
 * the server) every client must start TLS first (NBD_OPT_STARTTLS); without
 * it, a TCP address other than loopback gets a warning. Returns NULL on
 * error (logged).
 */
struct nbd_server *nbd_server_new(struct event_base *base, struct swarm *sw, const char *spec,
                                  const struct nbd_tls_creds *tls);

/* The address clients connect to ("unix:PATH" or "HOST:PORT", the real port). */
const char *nbd_server_address(const struct nbd_server *s);

/* Call fn(arg) when the last client leaves (after at least one reached transmission). */
void nbd_server_set_idle_cb(struct nbd_server *s, void (*fn)(void *arg), void *arg);

/* Close every connection (parked requests fail) and the listener; unlink a Unix socket. */
void nbd_server_free(struct nbd_server *s);

#endif
