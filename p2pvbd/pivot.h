/* SPDX-License-Identifier: ISC */
/*
 * pivot: moves a destination QEMU's drive from fetch's NBD export onto the
 * fetched image itself, through QMP, while the guest runs (fetch --qmp
 * --drive). Two ways, by how the drive's raw format node was made:
 *
 *  - reopen (a node named by the user: -blockdev, libvirt): the raw node is
 *    reopened with its file child replaced, the nbd node on our export
 *    giving way to a new file node on the image (blockdev-add, then
 *    blockdev-reopen, QEMU >= 6.1). The reopen drains the guest's I/O first.
 *  - mirror (a node QEMU named, "#block123", as -drive makes them: QEMU
 *    refuses to reopen those, "Cannot change the option 'node-name'"): a new
 *    raw node on the image is the target of blockdev-mirror sync=none
 *    copy-mode=write-blocking from the drive, and job-complete puts it in
 *    the raw node's place. Source and target are the same bytes (the export
 *    reads and writes the image), so nothing is copied but the guest's
 *    writes, each to both at once; write-blocking serializes them against
 *    any background copy of the same region, which background mode does not
 *    (a copy could then write old bytes over a newer guest write, and the
 *    next copy would read them back through the export).
 *
 * Either way, every write that reached the export is in the image before the
 * switch, and none reaches the export after.
 *
 * Everything here blocks on QMP: call it from a thread of its own, never
 * from the loop that serves the export (qmp.h), or QEMU and fetch deadlock.
 */
#ifndef P2PVBD_PIVOT_H
#define P2PVBD_PIVOT_H

#include <stddef.h>

#include <jansson.h>

#include "qmp.h"

/* QEMU keeps node names in 32 bytes (block_int.h: node_name[32]). */
#define PIVOT_NAME_LEN 32
/* The node made for the image: this prefix and the drive's name, cut to fit. */
#define PIVOT_NODE_PREFIX "p2pvbd-local-"
/* The mirror job's id, likewise. */
#define PIVOT_JOB_PREFIX "p2pvbd-pivot-"
/* Filter nodes walked through from the drive's root down to its format node. */
#define PIVOT_DEPTH_MAX 8
/* Milliseconds for QMP queries, and for the commands that drain the guest's I/O. */
#define PIVOT_QUERY_MS 10000
#define PIVOT_DRAIN_MS 60000

/* What the switch needs, found in the drive's node graph (pivot_plan_make). */
struct pivot_plan {
	char fmt[PIVOT_NAME_LEN];   /* the raw node that is reopened */
	char nbd[PIVOT_NAME_LEN];   /* its file child now: the nbd node on our export */
	char local[PIVOT_NAME_LEN]; /* the file node on the image, made by the switch */
	char nbd_file[256];         /* the nbd node's filename, for messages */
	int read_only;              /* carried over to both nodes */
	int cache_direct, cache_no_flush;
	char detect_zeroes[16];   /* the raw node's: "off", "on" or "unmap" */
	int mirror;               /* fmt was named by QEMU: the mirror way */
	char job[PIVOT_NAME_LEN]; /* the mirror way: its job's id */
	char drive[256];          /* as fetch was given it: checked after the switch */
};

/*
 * The plan for drive (a -drive id, a -device id or QOM path, or a node
 * name), from the answers of query-block (block), query-named-block-nodes
 * (nodes) and x-debug-query-block-graph (graph): from the drive's root node
 * down through filters ("file" children) to a raw node whose file child is
 * an nbd node. export_hint, if not NULL, must occur in that nbd node's
 * filename (our export's socket file or port: a drive on another NBD server
 * is not ours to move). 0, or -1 with the reason in err. Pure: no I/O.
 */
int pivot_plan_make(const char *drive, const json_t *block, const json_t *nodes,
                    const json_t *graph, const char *export_hint, struct pivot_plan *p, char *err,
                    size_t errlen);

/* The VM's run state (query-status's "status": "running", "inmigrate", ...) into buf. */
int pivot_run_state(struct qmp *q, char *buf, size_t len, char *err, size_t errlen);

/* Ask QEMU for the three answers and make the plan (pivot_plan_make). 0 or -1 (err). */
int pivot_prepare(struct qmp *q, const char *drive, const char *export_hint, struct pivot_plan *p,
                  char *err, size_t errlen);

/*
 * The switch (the reopen way or the mirror way, as p says), then
 * blockdev-del of the nbd node if QEMU did not drop it by itself (one made
 * by blockdev-add stays). 0: the drive runs on image. -1: it still runs on
 * the export (the new node is deleted again; err says what failed). 1: it
 * runs on image, but the nbd node could not be deleted (err says why; a
 * warning).
 */
int pivot_switch(struct qmp *q, const struct pivot_plan *p, const char *image, char *err,
                 size_t errlen);

#endif
