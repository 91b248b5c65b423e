#!/usr/bin/python3
# SPDX-License-Identifier: ISC
"""The stock-BitTorrent anchor of the swarm benchmark: libtorrent roles.

Run with /usr/bin/python3 (Debian's python3-libtorrent, libtorrent-rasterbar
2.0.x). One role per invocation; tools/bt_lab.sh starts one process per lab
host.

  bt_swarm.py make-torrent IMAGE TRACKER_URL OUT.torrent [--piece-kib K]
      A normal (BitTorrent v1) single-file torrent of IMAGE announcing to
      TRACKER_URL, piece size K KiB (default 256).

  bt_swarm.py seed TORRENT IMAGE_DIR --listen IP:PORT [options]
      Seed TORRENT from IMAGE_DIR (which holds the file under the torrent's
      name). The data is hash-checked when added; once it is seeding, writes
      "ready" to stdout and to --ready-file. Runs until stopped.

  bt_swarm.py fetch TORRENT OUT_DIR --listen IP:PORT --name NAME [options]
      Download TORRENT into OUT_DIR. Writes progress samples
      "time_s,name,fraction" every --sample-s seconds (default 0.2) to
      --progress-csv (a header line "time_s,name,fraction" first if the file
      is empty); the last sample is "T,NAME,1" at the completion time T.
      When the download is complete, it re-reads the file and checks every
      piece's SHA-1 against the torrent, then writes "complete T" to stdout
      and to --done-file (T: completion time, before the re-check). It then
      keeps seeding to the others until stopped.

  Options of seed and fetch:
      --listen IP:PORT     listen on (and connect from) this address only
      --t0 EPOCH_SECONDS   the clock's zero for time_s (default: process
                           start). A fetcher given a --t0 in the future sets
                           up its session and adds the torrent only at t0, so
                           fetchers started together really start together.
      --stop-file PATH     stop (exit) once this file exists
      --ready-file PATH    (seed) written when seeding
      --done-file PATH     (fetch) written when complete and verified
      --progress-csv PATH  (fetch) progress samples
      --name NAME          (fetch) peer name in the samples (no commas)
      --timeout SECS       give up after SECS (default 600): exit 3
      --sample-s SECS      (fetch) sampling period (default 0.2)
      --set KEY=VALUE      override one libtorrent setting (repeatable), for
                           experiments only; the benchmark uses none
      --super-seed         (seed) BEP 16 super seeding; not a default, for
                           experiments only

  SIGTERM/SIGINT or the stop file: exit 0 if the role's job was done (seed:
  it was seeding; fetch: complete and verified), else 1. Exit codes: 0 ok,
  1 failure (libtorrent error, bad data, stopped before done), 2 usage,
  3 timeout (reached even if done: nobody stopped it in time).
  At exit a line "summary ..." (payload bytes up/down, redundant and failed
  bytes, peers, the process's CPU time) goes to stderr.

Session settings (see session_settings): TCP only, no DHT/LSD/UPnP/NAT-PMP,
bound to the given IP, every interested peer unchoked; everything else,
piece picking in particular, is libtorrent's default.
"""

import argparse
import hashlib
import os
import resource
import signal
import sys
import time

try:
    import libtorrent as lt
except ImportError:
    sys.stderr.write("bt_swarm: no libtorrent module; run with /usr/bin/python3 "
                     "(Debian python3-libtorrent)\n")
    sys.exit(2)

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_TIMEOUT = 0, 1, 2, 3


def log(msg):
    sys.stderr.write("bt_swarm: %s\n" % msg)
    sys.stderr.flush()


def write_atomic(path, text):
    """Write text to path so that a reader never sees half of it."""
    tmp = "%s.tmp.%d" % (path, os.getpid())
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def parse_listen(s):
    """IP:PORT -> (ip, port); IPv4 only, like the lab."""
    ip, sep, port = s.rpartition(":")
    if not sep or not ip or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError("bad --listen '%s' (want IP:PORT)" % s)
    return ip, int(port)


def parse_setting(s):
    """KEY=VALUE -> (key, value) for a libtorrent setting; the value's type
    follows the setting's default (bool, int or string)."""
    key, sep, val = s.partition("=")
    defaults = lt.default_settings()
    if not sep or key not in defaults:
        raise argparse.ArgumentTypeError("unknown libtorrent setting in '%s'" % s)
    cur = defaults[key]
    try:
        if isinstance(cur, bool):
            if val.lower() not in ("1", "0", "true", "false"):
                raise ValueError(val)
            return key, val.lower() in ("1", "true")
        if isinstance(cur, int):
            return key, int(val, 0)
    except ValueError:
        raise argparse.ArgumentTypeError("bad value in '%s'" % s)
    return key, val


# ---------------------------------------------------------------------------
# make-torrent


def make_torrent(image, tracker_url, out, piece_kib):
    if piece_kib < 16 or piece_kib & (piece_kib - 1):
        log("--piece-kib must be a power of two >= 16")
        return EXIT_USAGE
    image = os.path.abspath(image)
    if not os.path.isfile(image):
        log("no such file: %s" % image)
        return EXIT_FAIL
    fs = lt.file_storage()
    lt.add_files(fs, image)
    # v1_only: a plain BEP 3 torrent (SHA-1 pieces, one info-hash). The
    # default in 2.0 is a hybrid v1+v2 torrent, which announces under two
    # info-hashes (two swarms on the tracker) and is not what we compare to.
    ct = lt.create_torrent(fs, piece_kib * 1024, flags=lt.create_torrent.v1_only)
    ct.add_tracker(tracker_url)
    ct.set_creator("p2pvbd bt_swarm.py")
    lt.set_piece_hashes(ct, os.path.dirname(image))
    data = lt.bencode(ct.generate())
    tmp = "%s.tmp.%d" % (out, os.getpid())
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, out)
    ti = lt.torrent_info(out)
    print("torrent %s: %s, %d bytes, %d pieces of %d KiB, info-hash %s" % (
        out, ti.name(), ti.total_size(), ti.num_pieces(), ti.piece_length() // 1024,
        ti.info_hashes().v1))
    return EXIT_OK


# ---------------------------------------------------------------------------
# seed / fetch


def session_settings(ip, port):
    """A libtorrent session for a LAN benchmark; each choice is explained."""
    return {
        # Bind to the lab host's address: listen there, and make outgoing
        # connections (peers and tracker) from there. The "s" suffix would
        # mean SSL; plain "IP:PORT" is a TCP (and, if enabled, uTP) listener.
        "listen_interfaces": "%s:%d" % (ip, port),
        "outgoing_interfaces": ip,
        # Nothing but the tracker finds peers: no DHT, no local service
        # discovery (multicast on the bridge), no port mapping (there is no
        # NAT; UPnP/NAT-PMP would only send stray multicast/gateway traffic).
        "enable_dht": False,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        # TCP only. p2pvbd uses TCP, so both sides get the kernel's TCP
        # congestion control over the same shaped links. uTP (LEDBAT) is
        # designed to yield to other traffic and runs its congestion control
        # in user space (costly with ten peers on a small machine); on a
        # dedicated LAN it could only make libtorrent look worse. With both
        # enabled, libtorrent would also make uTP its first choice for
        # outgoing connections.
        "enable_outgoing_utp": False,
        "enable_incoming_utp": False,
        "enable_outgoing_tcp": True,
        "enable_incoming_tcp": True,
        # No rate limits (0 = unlimited; also the default, said explicitly
        # because the benchmark depends on it). The shaping is the lab's.
        "upload_rate_limit": 0,
        "download_rate_limit": 0,
        # Unchoke every interested peer. The default of 8 upload slots (and
        # the tit-for-tat choker rotating them) exists to keep per-connection
        # rates useful among hundreds of internet peers; in this swarm a peer
        # has at most N others, all on one LAN, so choking would only idle
        # upload capacity. -1 = unlimited. Choking algorithms themselves stay
        # at their defaults.
        "unchoke_slots_limit": -1,
        # Every lab host has its own address, so one connection per IP is
        # enough: allow_multiple_connections_per_ip stays at its default
        # (False).
        # Private 10.x addresses are "local network": libtorrent treats them
        # as such by default (local peer class, no rate limits); nothing to
        # change. Piece picking (rarest first, random first pieces, end
        # game), request queue sizing and disk I/O stay at the defaults: this
        # is the stock anchor.
        "alert_mask": (lt.alert.category_t.error_notification
                       | lt.alert.category_t.status_notification
                       | lt.alert.category_t.tracker_notification),
        "user_agent": "p2pvbd-bt-anchor/libtorrent-" + lt.__version__,
    }


class Stop:
    """SIGTERM/SIGINT arrive here; the main loop polls it."""

    def __init__(self, stop_file):
        self.signalled = None
        self.stop_file = stop_file
        signal.signal(signal.SIGTERM, self._handler)
        signal.signal(signal.SIGINT, self._handler)

    def _handler(self, signum, _frame):
        self.signalled = signum

    def requested(self):
        if self.signalled is not None:
            return "signal %d" % self.signalled
        if self.stop_file and os.path.exists(self.stop_file):
            return "stop file"
        return None


def verify_pieces(ti, save_path):
    """Re-read the downloaded file; True if every piece's SHA-1 matches."""
    path = os.path.join(save_path, ti.files().file_path(0))
    plen = ti.piece_length()
    try:
        with open(path, "rb") as f:
            for i in range(ti.num_pieces()):
                want = bytes(ti.hash_for_piece(i))
                got = hashlib.sha1(f.read(plen)).digest()
                if got != want:
                    log("piece %d of %s does not match the torrent" % (i, path))
                    return False
            if f.read(1):
                log("%s is longer than the torrent says" % path)
                return False
    except OSError as e:
        log("cannot re-read %s: %s" % (path, e))
        return False
    if os.path.getsize(path) != ti.total_size():
        log("%s has the wrong size" % path)
        return False
    return True


def handle_alerts(ses, role):
    """Log interesting alerts; return an error string for fatal ones."""
    fatal = None
    for a in ses.pop_alerts():
        if isinstance(a, (lt.torrent_error_alert, lt.listen_failed_alert,
                          lt.file_error_alert)):
            log("%s: %s" % (role, a.message()))
            fatal = a.message()
        elif isinstance(a, (lt.tracker_error_alert, lt.tracker_warning_alert,
                            lt.hash_failed_alert)):
            log("%s: %s" % (role, a.message()))
    return fatal


def summary(role, name, h):
    st = h.status()
    ru = resource.getrusage(resource.RUSAGE_SELF)
    log("summary %s %s: payload up %d down %d redundant %d failed %d peers %d "
        "state %s cpu user %.1f s sys %.1f s" % (
            role, name, st.total_payload_upload, st.total_payload_download,
            st.total_redundant_bytes, st.total_failed_bytes, st.num_peers, st.state,
            ru.ru_utime, ru.ru_stime))


def run_peer(args, role):
    started = time.monotonic()
    deadline = started + args.timeout
    t0 = args.t0 if args.t0 is not None else time.time()
    stop = Stop(args.stop_file)
    ip, port = args.listen

    try:
        ti = lt.torrent_info(args.torrent)
    except RuntimeError as e:
        log("cannot load %s: %s" % (args.torrent, e))
        return EXIT_FAIL
    save_path = os.path.abspath(args.dir)
    os.makedirs(save_path, exist_ok=True)

    settings = session_settings(ip, port)
    settings.update(args.set or {})
    ses = lt.session(settings)

    # A fetcher waits for t0 (if it is ahead) before adding the torrent.
    if role == "fetch":
        while time.time() < t0:
            if stop.requested():
                return EXIT_FAIL
            if time.monotonic() >= deadline:
                return EXIT_TIMEOUT
            time.sleep(min(0.01, max(0.0, t0 - time.time())))

    atp = lt.add_torrent_params()
    atp.ti = ti
    atp.save_path = save_path
    if role == "seed" and args.super_seed:
        atp.flags |= lt.torrent_flags.super_seeding
    h = ses.add_torrent(atp)

    csv = None
    if role == "fetch" and args.progress_csv:
        csv = open(args.progress_csv, "a", buffering=1)
        if csv.tell() == 0:
            csv.write("time_s,name,fraction\n")

    def now():
        return time.time() - t0

    def sample(t=None, frac=None):
        if csv is None:
            return
        if frac is None:
            st = h.status()
            frac = st.total_wanted_done / st.total_wanted if st.total_wanted else 0.0
        csv.write("%.3f,%s,%.6f\n" % (now() if t is None else t, args.name, frac))

    done = False  # seed: seeding; fetch: complete and verified
    rc = None
    next_sample = time.monotonic()
    while rc is None:
        # Wait for alerts until the next sample is due, so a completion is
        # timed to the alert, not to the sampling period.
        wait_ms = int(max(0.0, next_sample - time.monotonic()) * 1000)
        ses.wait_for_alert(max(1, min(wait_ms, 200)))
        fatal = handle_alerts(ses, role)
        if fatal:
            rc = EXIT_FAIL
            break
        st = h.status()
        if not done and st.is_seeding:
            if role == "seed":
                done = True
                write_line = "ready"
                print(write_line, flush=True)
                if args.ready_file:
                    write_atomic(args.ready_file, write_line + "\n")
            else:
                t_done = now()
                sample(t_done, 1.0)
                if csv is not None:
                    csv.close()
                    csv = None
                if not verify_pieces(ti, save_path):
                    rc = EXIT_FAIL
                    break
                done = True
                line = "complete %.3f" % t_done
                print(line, flush=True)
                if args.done_file:
                    write_atomic(args.done_file, line + "\n")
        if role == "fetch" and not done and time.monotonic() >= next_sample:
            sample()
            next_sample += args.sample_s
            if next_sample < time.monotonic():  # fell behind: do not burst
                next_sample = time.monotonic() + args.sample_s
        why = stop.requested()
        if why:
            log("%s %s: stopping (%s)" % (role, args.name or "", why))
            rc = EXIT_OK if done else EXIT_FAIL
        elif time.monotonic() >= deadline:
            log("%s %s: timeout after %g s (%s)" % (
                role, args.name or "", args.timeout, "done" if done else "not done"))
            rc = EXIT_TIMEOUT

    if csv is not None:
        csv.close()
    summary(role, args.name or "", h)
    ses.pause()
    return rc


def main(argv):
    p = argparse.ArgumentParser(
        prog="bt_swarm.py", description="libtorrent roles of the swarm benchmark",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)

    mk = sub.add_parser("make-torrent", help="make a torrent of an image")
    mk.add_argument("image")
    mk.add_argument("tracker_url")
    mk.add_argument("out")
    mk.add_argument("--piece-kib", type=int, default=256)

    for role in ("seed", "fetch"):
        r = sub.add_parser(role, help="%s a torrent" % role)
        r.add_argument("torrent")
        r.add_argument("dir")
        r.add_argument("--listen", type=parse_listen, required=True)
        r.add_argument("--t0", type=float)
        r.add_argument("--stop-file")
        r.add_argument("--timeout", type=float, default=600.0)
        r.add_argument("--set", type=parse_setting, action="append",
                       metavar="KEY=VALUE")
        if role == "seed":
            r.add_argument("--ready-file")
            r.add_argument("--name", default="seed")
            r.add_argument("--super-seed", action="store_true")
        else:
            r.add_argument("--progress-csv")
            r.add_argument("--done-file")
            r.add_argument("--name", required=True)
            r.add_argument("--sample-s", type=float, default=0.2)

    args = p.parse_args(argv)
    if getattr(args, "set", None):
        args.set = dict(args.set)
    if args.cmd == "make-torrent":
        return make_torrent(args.image, args.tracker_url, args.out, args.piece_kib)
    if "," in args.name or "\n" in args.name:
        p.error("--name must not contain commas or newlines")
    if args.timeout <= 0:
        p.error("--timeout must be positive")
    if args.cmd == "fetch" and args.sample_s <= 0:
        p.error("--sample-s must be positive")
    return run_peer(args, args.cmd)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
