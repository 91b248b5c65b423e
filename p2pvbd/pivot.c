/* SPDX-License-Identifier: ISC */
/*
 * pivot: a destination QEMU's drive, moved from fetch's NBD export onto the
 * fetched image (pivot.h). The plan is read from QEMU's answers (a pure
 * function, unit-tested on canned answers); the switch is three QMP
 * commands, each checked, and undone where it failed half-way.
 */
#include "pivot.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

/* Drivers that only pass I/O on to their "file" child: walked through to the format node. */
static const char *const pivot_filters[] = {"throttle", "copy-on-read", "preallocate", "compress"};

static const char *jstr(const json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

/* The query-named-block-nodes entry of node name, or NULL. */
static const json_t *node_info(const json_t *nodes, const char *name)
{
	size_t i;
	const json_t *n;

	json_array_foreach(nodes, i, n)
	{
		const char *nn = jstr(n, "node-name");

		if (nn != NULL && strcmp(nn, name) == 0)
			return n;
	}
	return NULL;
}

/* The graph's id of the block-driver node called name; 0 or -1. */
static int graph_id(const json_t *graph, const char *name, json_int_t *id)
{
	size_t i;
	const json_t *n;

	json_array_foreach(json_object_get(graph, "nodes"), i, n)
	{
		const char *type = jstr(n, "type"), *nn = jstr(n, "name");

		if (type != NULL && strcmp(type, "block-driver") == 0 && nn != NULL &&
		    strcmp(nn, name) == 0 && json_is_integer(json_object_get(n, "id"))) {
			*id = json_integer_value(json_object_get(n, "id"));
			return 0;
		}
	}
	return -1;
}

/* The name of the graph node with id, or NULL. */
static const char *graph_name(const json_t *graph, json_int_t id)
{
	size_t i;
	const json_t *n;

	json_array_foreach(json_object_get(graph, "nodes"), i,
	                   n) if (json_integer_value(json_object_get(n, "id")) == id &&
	                          json_is_integer(json_object_get(n, "id"))) return jstr(n, "name");
	return NULL;
}

/* The node name of the child of node name by edge (e.g. "file"), or NULL. */
static const char *graph_child(const json_t *graph, const char *name, const char *edge)
{
	json_int_t id;
	size_t i;
	const json_t *e;

	if (graph_id(graph, name, &id) != 0)
		return NULL;
	json_array_foreach(json_object_get(graph, "edges"), i, e)
	{
		const char *en = jstr(e, "name");

		if (json_is_integer(json_object_get(e, "parent")) &&
		    json_integer_value(json_object_get(e, "parent")) == id && en != NULL &&
		    strcmp(en, edge) == 0 && json_is_integer(json_object_get(e, "child")))
			return graph_name(graph, json_integer_value(json_object_get(e, "child")));
	}
	return NULL;
}

/* qdev is the QOM path of a -device id=drive ("/machine/peripheral/ID/virtio-backend"). */
static int qdev_matches(const char *qdev, const char *drive)
{
	static const char pfx[] = "/machine/peripheral/";
	size_t n = strlen(drive);

	if (strcmp(qdev, drive) == 0)
		return 1;
	return strncmp(qdev, pfx, sizeof(pfx) - 1) == 0 &&
	       strncmp(qdev + sizeof(pfx) - 1, drive, n) == 0 &&
	       (qdev[sizeof(pfx) - 1 + n] == '/' || qdev[sizeof(pfx) - 1 + n] == '\0');
}

/*
 * The root node of drive: a query-block entry whose device (the -drive id)
 * or qdev is drive, else a node of that name. 0 with the name in root, or
 * -1 (err names what QEMU has, to help).
 */
static int find_root(const char *drive, const json_t *block, const json_t *nodes, char *root,
                     char *err, size_t errlen)
{
	char have[256] = "";
	size_t i, o = 0;
	const json_t *b;

	json_array_foreach(block, i, b)
	{
		const char *dev = jstr(b, "device"), *qdev = jstr(b, "qdev"), *nn;

		if ((dev != NULL && dev[0] != '\0' && strcmp(dev, drive) == 0) ||
		    (qdev != NULL && qdev_matches(qdev, drive))) {
			nn = jstr(json_object_get(b, "inserted"), "node-name");
			if (nn == NULL) {
				snprintf(err, errlen, "drive %s has no medium (query-block)",
				         drive);
				return -1;
			}
			snprintf(root, PIVOT_NAME_LEN, "%s", nn);
			return 0;
		}
		if (o < sizeof(have))
			o += (size_t)snprintf(have + o, sizeof(have) - o, "%s%s", o ? ", " : "",
			                      dev != NULL && dev[0] != '\0' ? dev
			                      : qdev != NULL                ? qdev
			                                                    : "?");
	}
	if (node_info(nodes, drive) != NULL) {
		snprintf(root, PIVOT_NAME_LEN, "%s", drive);
		return 0;
	}
	snprintf(err, errlen, "QEMU has no drive, device or node named %s (its drives: %s)", drive,
	         have[0] ? have : "none");
	return -1;
}

static int is_filter(const char *drv)
{
	for (size_t i = 0; i < sizeof(pivot_filters) / sizeof(pivot_filters[0]); i++)
		if (strcmp(drv, pivot_filters[i]) == 0)
			return 1;
	return 0;
}

/* A new node's or job's name: prefix and the drive's name in the characters QEMU allows. */
static void local_name(const char *prefix, const char *drive, char out[PIVOT_NAME_LEN])
{
	size_t n = strlen(prefix);

	memcpy(out, prefix, n);
	for (const char *c = drive; *c != '\0' && n < PIVOT_NAME_LEN - 1; c++)
		out[n++] =
		    (char)((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
		                   (*c >= '0' && *c <= '9') || *c == '-' || *c == '.' || *c == '_'
		               ? *c
		               : '_');
	out[n] = '\0';
}

/* The raw node fmt's settings that its reopen must keep (the rest take QEMU's defaults). */
static void keep_settings(const json_t *info, struct pivot_plan *p)
{
	const json_t *cache = json_object_get(info, "cache");
	const char *dz = jstr(info, "detect_zeroes");

	p->read_only = json_is_true(json_object_get(info, "ro"));
	p->cache_direct = json_is_true(json_object_get(cache, "direct"));
	p->cache_no_flush = json_is_true(json_object_get(cache, "no-flush"));
	snprintf(p->detect_zeroes, sizeof(p->detect_zeroes), "%s",
	         dz != NULL && (strcmp(dz, "on") == 0 || strcmp(dz, "unmap") == 0) ? dz : "off");
}

int pivot_plan_make(const char *drive, const json_t *block, const json_t *nodes,
                    const json_t *graph, const char *export_hint, struct pivot_plan *p, char *err,
                    size_t errlen)
{
	char cur[PIVOT_NAME_LEN], root[PIVOT_NAME_LEN];
	const json_t *info;
	const char *drv, *child;
	int depth;

	memset(p, 0, sizeof(*p));
	if (!json_is_array(block) || !json_is_array(nodes) || !json_is_object(graph)) {
		snprintf(err, errlen,
		         "unexpected answers from QEMU (not a list of drives and nodes)");
		return -1;
	}
	if (find_root(drive, block, nodes, root, err, errlen) != 0)
		return -1;
	memcpy(cur, root, sizeof(cur));
	for (depth = 0;; depth++) {
		info = node_info(nodes, cur);
		drv = info != NULL ? jstr(info, "drv") : NULL;
		if (drv == NULL) {
			snprintf(err, errlen,
			         "node %s of drive %s is not in query-named-block-nodes", cur,
			         drive);
			return -1;
		}
		if (strcmp(drv, "raw") == 0)
			break;
		if (strcmp(drv, "nbd") == 0) {
			snprintf(err, errlen,
			         "drive %s sits on its nbd node %s with no format node above it: "
			         "there is "
			         "nothing to reopen onto the image; give QEMU a raw node (-drive "
			         "...,format=raw, or -blockdev driver=raw,file=NBD-NODE)",
			         drive, cur);
			return -1;
		}
		if (!is_filter(drv) || depth >= PIVOT_DEPTH_MAX) {
			snprintf(
			    err, errlen,
			    "drive %s: node %s is %s, not raw: fetch --qmp moves a raw drive on "
			    "fetch's export (-drive ...,format=raw)",
			    drive, cur, drv);
			return -1;
		}
		child = graph_child(graph, cur, "file");
		if (child == NULL) {
			snprintf(err, errlen,
			         "drive %s: the %s node %s has no file child in the graph", drive,
			         drv, cur);
			return -1;
		}
		snprintf(cur, sizeof(cur), "%s", child);
	}
	snprintf(p->fmt, sizeof(p->fmt), "%s", cur);
	keep_settings(info, p);
	child = graph_child(graph, cur, "file");
	info = child != NULL ? node_info(nodes, child) : NULL;
	drv = info != NULL ? jstr(info, "drv") : NULL;
	if (drv == NULL) {
		snprintf(err, errlen, "drive %s: the raw node %s has no file child in the graph",
		         drive, cur);
		return -1;
	}
	snprintf(p->nbd_file, sizeof(p->nbd_file), "%s",
	         jstr(info, "file") != NULL ? jstr(info, "file") : "?");
	if (strcmp(drv, "nbd") != 0) {
		snprintf(err, errlen, "drive %s is on a %s node (%s), not on fetch's NBD export",
		         drive, drv, p->nbd_file);
		return -1;
	}
	if (export_hint != NULL && strstr(p->nbd_file, export_hint) == NULL) {
		snprintf(err, errlen,
		         "drive %s reads %s, not this fetch's export (%s): it is not ours to move",
		         drive, p->nbd_file, export_hint);
		return -1;
	}
	snprintf(p->nbd, sizeof(p->nbd), "%s", child);
	local_name(PIVOT_NODE_PREFIX, drive, p->local);
	local_name(PIVOT_JOB_PREFIX, drive, p->job);
	snprintf(p->drive, sizeof(p->drive), "%s", drive);
	/* QEMU names its own nodes "#block123"; a user's name starts with a letter. */
	p->mirror = p->fmt[0] == '#';
	if (p->mirror && strcmp(root, p->fmt) != 0) {
		snprintf(err, errlen,
		         "drive %s: its raw node %s has no name of its own (QEMU named it) and "
		         "filters above it: name it (node-name=...) so that it can be reopened",
		         drive, p->fmt);
		return -1;
	}
	return 0;
}

int pivot_run_state(struct qmp *q, char *buf, size_t len, char *err, size_t errlen)
{
	json_t *ret = NULL;
	const char *st;

	if (qmp_execf(q, &ret, PIVOT_QUERY_MS, err, errlen, "query-status", NULL) != 0)
		return -1;
	st = jstr(ret, "status");
	snprintf(buf, len, "%s", st != NULL ? st : "?");
	json_decref(ret);
	return 0;
}

int pivot_prepare(struct qmp *q, const char *drive, const char *export_hint, struct pivot_plan *p,
                  char *err, size_t errlen)
{
	json_t *block = NULL, *nodes = NULL, *graph = NULL;
	int rc = -1;

	if (qmp_execf(q, &block, PIVOT_QUERY_MS, err, errlen, "query-block", NULL) != 0 ||
	    qmp_execf(q, &nodes, PIVOT_QUERY_MS, err, errlen, "query-named-block-nodes", NULL) !=
	        0 ||
	    qmp_execf(q, &graph, PIVOT_QUERY_MS, err, errlen, "x-debug-query-block-graph", NULL) !=
	        0)
		goto out;
	rc = pivot_plan_make(drive, block, nodes, graph, export_hint, p, err, errlen);
out:
	json_decref(block);
	json_decref(nodes);
	json_decref(graph);
	return rc;
}

/* blockdev-del of node name: 0 or -1 (err). */
static int delete_node(struct qmp *q, const char *name, char *err, size_t errlen)
{
	return qmp_execf(q, NULL, PIVOT_DRAIN_MS, err, errlen, "blockdev-del", "{s:s}", "node-name",
	                 name);
}

/* The root node of drive now (query-block, or a node of that name): 0 or -1 (err). */
static int drive_root(struct qmp *q, const char *drive, char root[PIVOT_NAME_LEN], char *err,
                      size_t errlen)
{
	json_t *block = NULL, *nodes = NULL;
	int rc = -1;

	if (qmp_execf(q, &block, PIVOT_QUERY_MS, err, errlen, "query-block", NULL) == 0 &&
	    qmp_execf(q, &nodes, PIVOT_QUERY_MS, err, errlen, "query-named-block-nodes", NULL) == 0)
		rc = find_root(drive, block, nodes, root, err, errlen);
	json_decref(block);
	json_decref(nodes);
	return rc;
}

/*
 * The current file child of the format node into child (or "" if none), and
 * whether a node named nbd still exists; 0 or -1. Waits as long as a drain:
 * QEMU answers it only after a command still running (a reopen that timed
 * out on our side).
 */
static int graph_state(struct qmp *q, const struct pivot_plan *p, char child[PIVOT_NAME_LEN],
                       int *nbd_exists, char *err, size_t errlen)
{
	json_t *graph = NULL, *nodes = NULL;
	const char *c;

	if (qmp_execf(q, &graph, PIVOT_DRAIN_MS, err, errlen, "x-debug-query-block-graph", NULL) !=
	        0 ||
	    qmp_execf(q, &nodes, PIVOT_QUERY_MS, err, errlen, "query-named-block-nodes", NULL) !=
	        0) {
		json_decref(graph);
		return -1;
	}
	c = graph_child(graph, p->fmt, "file");
	snprintf(child, PIVOT_NAME_LEN, "%s", c != NULL ? c : "");
	*nbd_exists = node_info(nodes, p->nbd) != NULL;
	json_decref(graph);
	json_decref(nodes);
	return 0;
}

/*
 * The discard setting of both nodes. QEMU does not report it; detect-zeroes
 * unmap is allowed only with discard unmap, so that one is known. Otherwise
 * QEMU's default (ignore): the guest's discards are then dropped, which
 * loses nothing.
 */
static const char *pivot_discard(const struct pivot_plan *p)
{
	return strcmp(p->detect_zeroes, "unmap") == 0 ? "unmap" : "ignore";
}

/* QEMU's protocol driver for image: host_device for a block device ("file" is refused there). */
static const char *image_driver(const char *image)
{
	struct stat st;

	return stat(image, &st) == 0 && S_ISBLK(st.st_mode) ? "host_device" : "file";
}

/* The reopen's options: the raw node with its settings and the new file child. */
static json_t *reopen_args(const struct pivot_plan *p)
{
	return json_pack("{s:[{s:s, s:s, s:s, s:b, s:{s:b, s:b}, s:s, s:s}]}", "options", "driver",
	                 "raw", "node-name", p->fmt, "file", p->local, "read-only", p->read_only,
	                 "cache", "direct", p->cache_direct, "no-flush", p->cache_no_flush,
	                 "detect-zeroes", p->detect_zeroes, "discard", pivot_discard(p));
}

/* The reopen way (pivot.h): 0 the drive reads the image, -1 it still reads the export. */
static int switch_reopen(struct qmp *q, const struct pivot_plan *p, const char *image, char *err,
                         size_t errlen)
{
	char child[PIVOT_NAME_LEN], why[512], e2[256];
	int nbd_exists;

	if (qmp_execf(q, NULL, PIVOT_QUERY_MS, err, errlen, "blockdev-add",
	              "{s:s, s:s, s:s, s:b, s:{s:b, s:b}, s:s}", "driver", image_driver(image),
	              "node-name", p->local, "filename", image, "read-only", p->read_only, "cache",
	              "direct", p->cache_direct, "no-flush", p->cache_no_flush, "discard",
	              pivot_discard(p)) != 0)
		return -1;
	if (qmp_exec(q, "blockdev-reopen", reopen_args(p), NULL, PIVOT_DRAIN_MS, why,
	             sizeof(why)) != 0) {
		/* Failed, or only timed out on our side: the graph says which. */
		if (graph_state(q, p, child, &nbd_exists, e2, sizeof(e2)) != 0) {
			snprintf(err, errlen, "blockdev-reopen: %s; and then: %s", why, e2);
			return -1;
		}
		if (strcmp(child, p->local) != 0) {
			if (delete_node(q, p->local, e2, sizeof(e2)) != 0)
				snprintf(err, errlen, "blockdev-reopen: %s; removing node %s: %s",
				         why, p->local, e2);
			else
				snprintf(err, errlen, "blockdev-reopen: %s", why);
			return -1;
		}
		return 0;
	}
	if (graph_state(q, p, child, &nbd_exists, err, errlen) != 0)
		return -1;
	if (strcmp(child, p->local) != 0) {
		snprintf(err, errlen, "blockdev-reopen succeeded but node %s reads %s, not %s",
		         p->fmt, child[0] ? child : "nothing", p->local);
		return -1;
	}
	return 0;
}

/*
 * Wait until deadline_ms (monotonic) for the next event of job: 0 with its
 * name in kind ("BLOCK_JOB_READY", "BLOCK_JOB_COMPLETED" with error set if
 * it failed, or "BLOCK_JOB_CANCELLED"), 1 on timeout, -1 if QMP broke.
 */
static int job_event(struct qmp *q, const char *job, int timeout_ms, char *kind, size_t kindlen,
                     char *error, size_t errorlen, char *err, size_t errlen)
{
	json_t *ev = NULL;
	int rc;

	for (int waited = 0; waited < timeout_ms;) {
		int left = timeout_ms - waited;
		/* Events of other jobs or kinds are dropped; the slice bounds the loop in time. */
		int slice = left < 1000 ? left : 1000;
		const char *name, *dev, *e;

		rc = qmp_wait_event(q, NULL, slice, &ev, err, errlen);
		if (rc < 0)
			return -1;
		if (rc == 1) {
			waited += slice;
			continue;
		}
		name = jstr(ev, "event");
		dev = jstr(json_object_get(ev, "data"), "device");
		e = jstr(json_object_get(ev, "data"), "error");
		if (name != NULL && dev != NULL && strcmp(dev, job) == 0 &&
		    (strcmp(name, "BLOCK_JOB_READY") == 0 ||
		     strcmp(name, "BLOCK_JOB_COMPLETED") == 0 ||
		     strcmp(name, "BLOCK_JOB_CANCELLED") == 0)) {
			snprintf(kind, kindlen, "%s", name);
			snprintf(error, errorlen, "%s", e != NULL ? e : "");
			json_decref(ev);
			return 0;
		}
		json_decref(ev);
	}
	return 1;
}

/* The mirror job is given up (if it runs) and the target deleted; why goes to err. */
static void mirror_undo(struct qmp *q, const struct pivot_plan *p, int job_runs, const char *why,
                        char *err, size_t errlen)
{
	char kind[32], jerr[256], e2[256] = "";

	if (job_runs) {
		if (qmp_execf(q, NULL, PIVOT_QUERY_MS, e2, sizeof(e2), "block-job-cancel",
		              "{s:s, s:b}", "device", p->job, "force", 1) == 0 &&
		    job_event(q, p->job, PIVOT_DRAIN_MS, kind, sizeof(kind), jerr, sizeof(jerr), e2,
		              sizeof(e2)) != 0 &&
		    e2[0] == '\0')
			snprintf(e2, sizeof(e2), "job %s did not end", p->job);
	}
	if (e2[0] == '\0')
		delete_node(q, p->local, e2, sizeof(e2));
	if (e2[0] != '\0')
		snprintf(err, errlen, "%s; undoing it: %s", why, e2);
	else
		snprintf(err, errlen, "%s", why);
}

/* The mirror way (pivot.h): 0 the drive reads the image, -1 it still reads the export. */
static int switch_mirror(struct qmp *q, const struct pivot_plan *p, const char *image, char *err,
                         size_t errlen)
{
	char why[512], kind[32], jerr[256], root[PIVOT_NAME_LEN];
	int rc;

	/* The target: a raw node over a file node on the image, with the raw node's settings. */
	if (qmp_execf(q, NULL, PIVOT_QUERY_MS, err, errlen, "blockdev-add",
	              "{s:s, s:s, s:b, s:{s:b, s:b}, s:s, s:s, s:{s:s, s:s, s:b, s:{s:b, s:b}, "
	              "s:s}}",
	              "driver", "raw", "node-name", p->local, "read-only", p->read_only, "cache",
	              "direct", p->cache_direct, "no-flush", p->cache_no_flush, "detect-zeroes",
	              p->detect_zeroes, "discard", pivot_discard(p), "file", "driver",
	              image_driver(image), "filename", image, "read-only", p->read_only, "cache",
	              "direct", p->cache_direct, "no-flush", p->cache_no_flush, "discard",
	              pivot_discard(p)) != 0)
		return -1;
	if (qmp_execf(q, NULL, PIVOT_DRAIN_MS, why, sizeof(why), "blockdev-mirror",
	              "{s:s, s:s, s:s, s:s, s:s}", "job-id", p->job, "device", p->fmt, "target",
	              p->local, "sync", "none", "copy-mode", "write-blocking") != 0) {
		mirror_undo(q, p, 0, why, err, errlen);
		return -1;
	}
	rc = job_event(q, p->job, PIVOT_DRAIN_MS, kind, sizeof(kind), jerr, sizeof(jerr), why,
	               sizeof(why));
	if (rc != 0 || strcmp(kind, "BLOCK_JOB_READY") != 0) {
		if (rc == 0)
			snprintf(why, sizeof(why), "mirror job %s ended before it was ready: %s %s",
			         p->job, kind, jerr);
		else if (rc == 1)
			snprintf(why, sizeof(why), "mirror job %s not ready within %d s", p->job,
			         PIVOT_DRAIN_MS / 1000);
		mirror_undo(q, p, rc != 0, why, err, errlen);
		return -1;
	}
	if (qmp_execf(q, NULL, PIVOT_DRAIN_MS, why, sizeof(why), "job-complete", "{s:s}", "id",
	              p->job) != 0) {
		mirror_undo(q, p, 1, why, err, errlen);
		return -1;
	}
	rc = job_event(q, p->job, PIVOT_DRAIN_MS, kind, sizeof(kind), jerr, sizeof(jerr), why,
	               sizeof(why));
	if (rc != 0 || strcmp(kind, "BLOCK_JOB_COMPLETED") != 0 || jerr[0] != '\0') {
		if (rc == 0)
			snprintf(why, sizeof(why), "mirror job %s: %s %s", p->job, kind, jerr);
		else if (rc == 1)
			snprintf(why, sizeof(why), "mirror job %s did not complete within %d s",
			         p->job, PIVOT_DRAIN_MS / 1000);
		mirror_undo(q, p, rc != 0, why, err, errlen);
		return -1;
	}
	/* Completed: the target took the raw node's place under the drive. */
	if (drive_root(q, p->drive, root, err, errlen) != 0)
		return -1;
	if (strcmp(root, p->local) != 0) {
		snprintf(err, errlen, "mirror job %s completed but drive %s reads node %s, not %s",
		         p->job, p->drive, root, p->local);
		return -1;
	}
	return 0;
}

int pivot_switch(struct qmp *q, const struct pivot_plan *p, const char *image, char *err,
                 size_t errlen)
{
	json_t *nodes = NULL;
	char e2[256];
	int nbd_exists;

	if ((p->mirror ? switch_mirror : switch_reopen)(q, p, image, err, errlen) != 0)
		return -1;
	/* On the image now. An nbd node made by -drive went with its parent; one made by
	 * blockdev-add stays until deleted. */
	if (qmp_execf(q, &nodes, PIVOT_QUERY_MS, e2, sizeof(e2), "query-named-block-nodes", NULL) !=
	    0) {
		snprintf(err, errlen, "the drive runs on the image, but: %s", e2);
		return 1;
	}
	nbd_exists = node_info(nodes, p->nbd) != NULL;
	json_decref(nodes);
	if (nbd_exists && delete_node(q, p->nbd, e2, sizeof(e2)) != 0) {
		snprintf(err, errlen, "the old nbd node %s is left in QEMU: blockdev-del: %s",
		         p->nbd, e2);
		return 1;
	}
	return 0;
}
