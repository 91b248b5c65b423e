/* SPDX-License-Identifier: ISC */
/*
 * metrics: what a running seed or fetch tells monitors.
 *
 *  - `--metrics HOST:PORT`: an HTTP server (libevent's evhttp) answering
 *    GET /metrics in Prometheus' text exposition format 0.0.4: counters of
 *    bytes and chunks, per-peer rates, generation, dirty bytes, the VM's
 *    faults and their latency histogram, receipts (README, "Monitoring");
 *  - the monitoring part of `p2pvbd status`: volume id, output, ETA, the
 *    peer list, receipts (JSON, and a short table for people).
 *
 * The renderers are pure: a snapshot (swarm_status, swarm_stats and the
 * peer list) in, text appended to an evbuffer out. Nothing here changes the
 * swarm.
 */
#ifndef P2PVBD_METRICS_H
#define P2PVBD_METRICS_H

#include <stdint.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "swarm.h"

/* The Content-Type of the exposition format this module writes. */
#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

struct metrics;

/*
 * Serve GET /metrics for sw on host:port (numeric host; port 0: any free
 * one) and log "metrics on http://HOST:PORT/metrics" with the bound port.
 * sw is borrowed: free the metrics server before the swarm. NULL (logged)
 * if the address cannot be bound.
 */
struct metrics *metrics_new(struct event_base *base, struct swarm *sw, const char *host,
                            uint16_t port);
/* Stop serving; requests in progress are dropped. NULL is fine. */
void metrics_free(struct metrics *m);
/* The port bound by metrics_new. */
uint16_t metrics_port(const struct metrics *m);

/*
 * The peers of sw now, in a new array (*out; the caller frees it, also
 * when 0 peers are returned). Returns how many.
 */
int metrics_peers(const struct swarm *sw, struct swarm_peer_info **out);

/* The whole /metrics page for this snapshot, appended to out. */
void metrics_render(struct evbuffer *out, const struct swarm_status *st,
                    const struct swarm_stats *stats, const struct swarm_peer_info *peers,
                    int npeers);

/* Seconds until a fetch is complete at its current rate; -1 when unknown (and at a seed). */
double metrics_eta(const struct swarm_status *st);

/*
 * For `status json`: the monitoring members, each preceded by a comma, to
 * go inside the status object: "volume_id", "output", "eta_s", "bytes_left",
 * "faults_waiting", "peers" (a list) and, at a seed, "receipts".
 */
void metrics_status_json(struct evbuffer *out, const struct swarm_status *st,
                         const struct swarm_peer_info *peers, int npeers);
/* For `status`: volume id, output, ETA, receipts and a peer table, as lines of text. */
void metrics_status_text(struct evbuffer *out, const struct swarm_status *st,
                         const struct swarm_peer_info *peers, int npeers);

/* Append s as a Prometheus label value (without the quotes): \ " and newline escaped. */
void metrics_label_value(struct evbuffer *out, const char *s);

#endif
