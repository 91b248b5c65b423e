/* SPDX-License-Identifier: ISC */
/*
 * seed_qmp: `p2pvbd seed --qmp SOCKET --drive DRIVE`, a VM that runs on its
 * own disk (vmattach.h). Instead of an IMAGE the seed keeps a scratch copy
 * in --state-dir; QEMU mirrors the drive into it through the seed's own NBD
 * export, and the seed serves peers only once that bulk copy is READY. When
 * the seed stops it detaches, and the VM runs on as it was.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "imglock.h"
#include "seed_int.h"
#include "swarm.h"
#include "util.h"

/*
 * --qmp, first of all: the state directory (made if missing), and the
 * scratch copy opened and locked, so that a second seed of this drive stops
 * here, before it checks sockets or waits for QMP. 0 or -1 (logged).
 */
int seed_qmp_prepare(struct seed *s)
{
	const struct seed_opts *o = s->o;
	const char *dir = o->state_dir ? o->state_dir : CLI_BLOCKDEV_STATE_DIR;
	struct stat st;

	if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
		log_error("state directory %s: %s", dir, strerror(errno));
		return -1;
	}
	if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode) || access(dir, W_OK) != 0) {
		log_error("state directory %s: not a writable directory", dir);
		return -1;
	}
	s->fd = open(o->image, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (s->fd < 0) {
		log_error("cannot open the scratch copy %s: %s", o->image, strerror(errno));
		return -1;
	}
	if (imglock_acquire(o->image, s->fd, IMGLOCK_EXCLUSIVE, &s->ilock) != 0) {
		log_error("is another seed attached to drive %s of this VM?", o->drive);
		return -1;
	}
	return 0;
}

/*
 * The scratch copy in --state-dir instead of an IMAGE (opened and locked by
 * seed_qmp_prepare): connect to QEMU, remove what an earlier seed of this
 * drive left in QEMU, learn the drive, and make the copy an empty
 * sparse file of its size: QEMU's mirror fills it, and a copy left by an
 * earlier run is never trusted (the generations go on above it, seedgen.h).
 * 0 or -1 (logged).
 */
int seed_open_scratch(struct seed *s)
{
	const struct seed_opts *o = s->o;
	struct vmattach_drive *d = &s->drv;
	char sz[16];

	s->va = vmattach_open(o->qmp_path, o->qmp_tag);
	if (s->va == NULL)
		return -1;
	if (vmattach_clear(s->va) != 0 || vmattach_drive(s->va, o->drive, d) != 0)
		return -1;
	if (ftruncate(s->fd, 0) != 0 || ftruncate(s->fd, (off_t)d->size) != 0) {
		log_error("cannot size the scratch copy %s: %s", o->image, strerror(errno));
		return -1;
	}
	s->image_size = d->size;
	log_info("drive %s: node %s (%s%s), %s; scratch copy %s", o->drive, d->node,
	         d->format[0] ? d->format : "?", d->ro ? ", read-only" : "",
	         fmt_bytes(d->size, sz, sizeof(sz)), o->image);
	if ((s->image_size + o->chunk_size - 1) / o->chunk_size > MANIFEST_MAX_CHUNKS) {
		log_error("drive %s: too many chunks; use a larger --chunk-size", o->drive);
		return -1;
	}
	return 0;
}

/* A read-only drive never changes: its copy is final at once. */
static void seed_qmp_frozen(void *arg, int result)
{
	(void)arg;
	if (result != 0)
		log_error("drive is read-only, but its generation could not be made final");
}

/* QEMU's bulk copy is done: now serve peers (the URI goes out). */
static void seed_qmp_ready(struct seed *s)
{
	const struct seed_opts *o = s->o;
	struct swarm_status st;

	swarm_status(s->sw, &st);
	log_info("drive %s is copied (generation %llu): every write of the guest now reaches the "
	         "seed before the guest sees it done",
	         o->drive, (unsigned long long)st.generation);
	swarm_set_max_dirty_rate(s->sw, o->max_dirty);
	if (swarm_listen(s->sw, o->listen_at.host, o->listen_at.port, &s->port) != 0 ||
	    seed_write_uri(s) != 0) {
		s->va_failed = 1;
		swarm_shutdown(s->sw);
		return;
	}
	log_info("serving on %s:%u", o->listen_at.host, s->port);
	s->va_serving = 1;
	if (s->drv.ro)
		swarm_freeze(s->sw, seed_qmp_frozen, s);
	swarm_start(s->sw);
	sd_notifyf(0, "READY=1\nSTATUS=serving drive %s on port %u", o->drive, (unsigned)s->port);
}

/* What the QMP side says (on the loop). */
static void seed_qmp_event(void *arg, enum vmattach_event ev, const char *msg)
{
	struct seed *s = arg;
	struct swarm_status st;

	switch (ev) {
	case VMATTACH_READY:
		seed_qmp_ready(s);
		break;
	case VMATTACH_FAILED:
		/* The seed no longer sees every write: what it would publish could miss one. */
		log_error("drive %s: %s; stopping (the VM runs on, on its own disk)", s->o->drive,
		          msg);
		/*
		 * Frozen, the seed refuses writes; QEMU's mirror then completes the
		 * guest's write on its own disk all the same, and the job fails.
		 */
		swarm_status(s->sw, &st);
		if (st.final)
			log_error(
			    "the VM wrote after the freeze (it was not stopped): that write is "
			    "not in the final generation %llu; do not run a VM on it",
			    (unsigned long long)st.generation);
		s->va_failed = 1;
		swarm_shutdown(s->sw);
		break;
	case VMATTACH_GONE:
		if (!s->va_serving) {
			log_error("QEMU exited before drive %s was copied: stopping", s->o->drive);
			s->va_failed = 1;
			swarm_shutdown(s->sw);
			break;
		}
		swarm_status(s->sw, &st);
		if (st.final)
			log_info("QEMU exited after the freeze: serving the final generation %llu",
			         (unsigned long long)st.generation);
		else
			log_warn(
			    "QEMU exited (%s): the VM is gone; serving generation %llu, its disk "
			    "as "
			    "it last wrote it, not final ('p2pvbd ctl CTL freeze' makes it final)",
			    msg, (unsigned long long)st.generation);
		break;
	case VMATTACH_DETACHED:
		if (msg != NULL)
			s->va_failed = 1;
		event_base_loopexit(s->base, NULL);
		break;
	}
}

/* Start attaching (QMP thread); the loop then serves QEMU's copy. 0 or -1 (logged). */
int seed_qmp_attach(struct seed *s)
{
	if (vmattach_start(s->va, s->base, s->o->export_spec + strlen("unix:"), &s->drv,
	                   seed_qmp_event, s) != 0) {
		log_error("cannot start the QMP thread");
		return -1;
	}
	s->va_started = 1;
	return 0;
}

/*
 * The loop has stopped: detach from QEMU with it running again (QEMU's
 * drain waits for our NBD export) until the QMP side is done.
 */
void seed_qmp_detach(struct seed *s)
{
	if (!s->va_started)
		return;
	swarm_unthrottle(s->sw);
	vmattach_detach(s->va);
	event_base_dispatch(s->base);
}
