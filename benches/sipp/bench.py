#!/usr/bin/env python3
"""SIPp load benchmark for presenced.

Measures (pick with --only, comma-separated; the default is the first four):
  publish       sustained PUBLISH/s: initial → modify → remove over 100 presentities
  subscribe     sustained SUBSCRIBE+NOTIFY/s: subscribe, then unsubscribe, over 100
  fanout        NOTIFY/s with 1,000 watchers on 100 presentities under PUBLISH load
  memory        RSS with 100,000 active subscriptions (10,000 with --quick)
  publish_new   one initial PUBLISH of a NEW presentity per call: the presentity table
                grows by one row per call (60 s at 20,000/s = 1.2 M rows)
  subscribe_new 1,000 presentities published first, then one NEW watcher dialog per call
                (SUBSCRIBE 3600 s → 200 → NOTIFY → 200), kept: active_watchers grows
  fanout10k     NOTIFY/s with 10,000 watchers on 1,000 presentities under PUBLISH load
  overload      given a sustained PUBLISH rate R (--rates overload=R, or found by a
                publish_new rate search), 2R of publish_new for 30 s (a 503 is an expected
                answer there, counted), then R for 30 s on the same server: is the second
                phase clean?
  io            bytes written to disk per operation (write_bytes of /proc/PID/io): N new
                PUBLISHes (--io publish_new=100000 at --io-rate 1000/s), refreshes and
                modifies of them, new kept SUBSCRIBEs with their NOTIFY, new PUBLISHes at
                --io-slow-rate (10/s); the database's size on disk per row
  mix           phones with BLF keys: --phones N (20,000) each watching --blf K (10) other
                phones (Event: dialog), refreshing every --refresh S (600) seconds, and
                --change-pct P (1) % of the phones changing state per second by PUBLISH
                (dialog-info); set up at --ramp calls/s (5,000), then measured for 60 s

Scenarios: publish.xml, subscribe.xml, watchers.xml, subscribe_keep.xml (the original
measures; subscribe_keep.xml is also subscribe_new's watcher), publish_new.xml,
mix_phone.xml, mix_blf.xml, io_publish_new.xml, io_publish_refresh.xml, io_publish_modify.xml
(io). BENCH_KEEP=1 keeps each run's directory (SIPp statistics,
response times, errors with -trace_err, the daemon's log) and names it on stderr.

Every run reports SIPp's response times (p50/p99), the CPU time of the presenced process
per operation (/proc/PID/stat utime+stime) and its RSS at the end and --settle seconds
(40) later, once completed transactions have left (Timer J, 32 s).

Everything runs on 127.0.0.1, every SIPp run is bounded by -m and -timeout (and is
stopped by this script at a deadline where a scenario runs until told to stop), and the
daemon is stopped at the end. Usage (after `cargo build --release`):

    python3 benches/sipp/bench.py [--duration S] [--quick] [--only NAMES] [--rates NAME=R,…]
                                  [--config 'sync = "always"']

Prints a Markdown table for BENCHMARKS.md. A rate search counts a run only with 0 failed
calls, 0 retransmissions and no 503; it steps the rate down until that holds. The exit
status is 1 when a measure had no clean run or a SIPp run failed.
"""

import argparse
import contextlib
import csv
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
# Lines added to every server's configuration (--config).
EXTRA_CONFIG = ""
ROOT = os.path.dirname(os.path.dirname(HERE))
BIN = os.environ.get("PRESENCED_BIN", os.path.join(ROOT, "target", "release", "presenced"))
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Names of measures that failed; any makes the exit status 1.
FAILED = []
# Every SIPp started, so that none outlives the script.
LIVE = []
# BLF subscriptions per SIPp instance in the mix (a SIPp call holds ~4 KiB).
BLF_PER_SIPP = 50_000


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def free_port():
    while True:
        t = socket.socket()
        t.bind(("127.0.0.1", 0))
        port = t.getsockname()[1]
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            u.bind(("127.0.0.1", port))
            return port
        except OSError:
            pass
        finally:
            t.close()
            u.close()


class Server:
    def __init__(self, work, extra_config="", source_limits=False, db=None):
        self.work = work
        self.port = free_port()
        self.db = db or os.path.join(work, "db")
        self.output = None
        cfg = os.path.join(work, "presenced.toml")
        with open(cfg, "w") as f:
            # One SIPp process is one source address: no per-source rate limit, except
            # where the limit is what is measured (flood).
            f.write("min_expires = 0\nmax_expires = 3600\n"
                    + ("" if source_limits else "max_requests_per_source = 0\n")
                    + EXTRA_CONFIG + extra_config)
        self.log = open(os.path.join(work, "presenced.log"), "w")
        env = dict(os.environ, RUST_LOG="warn,presenced::daemon=info")
        self.proc = subprocess.Popen(
            [BIN, "run", "--config", cfg, "--db", self.db,
             "--listen", f"udp:127.0.0.1:{self.port}", "--listen", f"tcp:127.0.0.1:{self.port}"],
            stdout=self.log, stderr=self.log, env=env)
        deadline = time.time() + 10
        while time.time() < deadline:
            with open(os.path.join(work, "presenced.log")) as f:
                if "listening on" in f.read():
                    return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("presenced did not start")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            fields = dict(l.split(":", 1) for l in f if ":" in l)
        return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])

    def cpu_s(self):
        """User + system CPU seconds of the daemon so far (all its threads)."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def status(self):
        """`presenced ctl status`: engine counters and table sizes (None if it fails)."""
        try:
            out = subprocess.run([BIN, "ctl", "--db", self.db, "status"], capture_output=True,
                                 text=True, timeout=120)
            return json.loads(out.stdout) if out.returncode == 0 else None
        except (subprocess.TimeoutExpired, ValueError):
            return None

    def stop(self):
        """SIGTERM, then the log (with its final stats line). Safe to call twice."""
        if self.output is not None:
            return self.output
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        with open(os.path.join(self.work, "presenced.log")) as f:
            self.output = f.read()
        return self.output


def workdir(prefix):
    """A temporary directory for one run; kept (and named on stderr) with BENCH_KEEP=1."""
    if os.environ.get("BENCH_KEEP"):
        d = tempfile.mkdtemp(prefix=prefix)
        log(f"  (keeping {d})")
        return contextlib.nullcontext(d)
    return tempfile.TemporaryDirectory(prefix=prefix)


def names_file(work, name, lines):
    """A SEQUENTIAL injection file, one call per line in order."""
    path = os.path.join(work, name)
    with open(path, "w") as f:
        f.write("SEQUENTIAL\n")
        for line in lines:
            f.write(f"{line}\n")
    return path


def injection(work, n=100):
    return names_file(work, "presentities.csv", (f"user{i}" for i in range(n)))


def num(stats, key, default=0):
    try:
        return int(float(stats.get(key, default)))
    except ValueError:
        return default


class Result:
    """One SIPp run's outcome: its last -trace_stat row, response times, exit status."""

    def __init__(self, d, rc, stopped=False):
        self.dir = d
        self.rc = rc  # None: still running, or stopped because it overran its bound
        self.stopped = stopped  # ended by SIGINT at our deadline, not by itself
        self.rows = []
        path = os.path.join(d, "stats.csv")
        if os.path.exists(path):
            with open(path) as f:
                rows = list(csv.reader(f, delimiter=";"))
            if len(rows) > 1:
                self.rows = [dict(zip(rows[0], r)) for r in rows[1:]]
        self.stats = self.rows[-1] if self.rows else {}
        self.start = epoch(self.stats.get("StartTime", ""))
        self._rtt = None
        err = os.path.join(d, "err")
        self.err = ""
        if os.path.exists(err):
            with open(err, errors="replace") as f:
                # SIPp's own lines start with a time stamp (messages quoted in them do not);
                # a recv timeout with a label to jump to is how mix_blf.xml reads the clock.
                lines = [l.split(": ", 1)[-1].strip() for l in f
                         if re.match(r"\d{4}-\d\d-\d\d\t", l) and "jumping to label" not in l]
            self.err = " | ".join(dict.fromkeys(lines[-3:]))

    def n(self, key):
        return num(self.stats, key)

    def counter(self, name):
        return self.n(f"{name}(C)")

    @property
    def ok_calls(self):
        return self.n("SuccessfulCall(C)")

    @property
    def failed(self):
        return num(self.stats, "FailedCall(C)", 1)

    @property
    def retrans(self):
        return num(self.stats, "Retransmissions(C)", 1)

    @property
    def elapsed(self):
        return elapsed_s(self.stats)

    @property
    def clean(self):
        """No failed call, no retransmission, no 503, and SIPp itself ended well (a run we
        stopped at its deadline has no exit status of its own to go by)."""
        return (bool(self.stats) and (self.stopped or self.rc == 0) and self.failed == 0
                and self.retrans == 0 and self.counter("shed") == 0)

    def why(self):
        """What made the run unclean, for the log."""
        if not self.stats:
            return f"no SIPp statistics (exit {self.rc}) {self.err}"
        parts = []
        if not self.stopped and self.rc != 0:
            parts.append(f"SIPp exit {self.rc}")
        for label, v in (("failed", self.failed), ("retrans", self.retrans), ("503", self.counter("shed"))):
            if v:
                parts.append(f"{label}={v}")
        if self.err and parts:
            parts.append(self.err)
        return ", ".join(parts)

    @property
    def rtt(self):
        """SIPp's response times (-trace_rtt) as (seconds since the epoch, ms), read once."""
        if self._rtt is None:
            self._rtt = []
            for name in os.listdir(self.dir):
                if name.endswith("_rtt.csv"):
                    with open(os.path.join(self.dir, name)) as f:
                        for row in csv.reader(f, delimiter=";"):
                            try:
                                self._rtt.append(((self.start or 0) + float(row[0]) / 1000, float(row[1])))
                            except (ValueError, IndexError):
                                pass
        return self._rtt

    def loaded(self):
        """Itself, with its response times read (before its directory goes away)."""
        _ = self.rtt
        return self

    def latencies(self, since=None, until=None):
        return [ms for t, ms in self.rtt if (since is None or t >= since) and (until is None or t <= until)]

    def counter_at(self, t, name):
        return num(self.at(t), f"{name}(C)")

    def at(self, t):
        """The last statistics row written at or before `t` (seconds since the epoch)."""
        best = {}
        for row in self.rows:
            if epoch(row.get("CurrentTime", "")) <= t:
                best = row
        return best


class Sipp:
    """One SIPp instance, started at once. Bounded three ways: -m calls, -timeout (with
    -timeout_error: reaching it is a failure), and wait() stops it at -timeout + 30 s."""

    def __init__(self, work, label, scenario, port, calls, rate, limit, inf, timeout_s, keys=(), extra=(),
                 ip="127.0.0.1"):
        self.dir = os.path.join(work, label)
        os.makedirs(self.dir, exist_ok=True)
        self.timeout_s = timeout_s
        self.started = time.time()
        self.stopped = False  # stopped at a deadline of ours
        self.overran = False  # stopped because it did not end within its bound
        args = ["sipp", "-sf", os.path.join(HERE, scenario), "-inf", inf, "-i", ip,
                "-p", "0", "-m", str(int(calls)), "-r", str(rate), "-rp", "1000", "-l", str(int(limit)),
                "-timeout", f"{timeout_s}s", "-timeout_error", "-nostdin",
                "-trace_stat", "-stf", os.path.join(self.dir, "stats.csv"), "-fd", "1",
                "-trace_rtt", "-rtt_freq", "1", "-max_socket", "2000", "-nd",
                *(["-trace_err"] if os.environ.get("BENCH_KEEP") else []),
                # SIPp's default 64 KiB socket buffers drop bursts of NOTIFYs on its side;
                # the load generator must not be what loses messages.
                "-buff_size", str(4 * 1024 * 1024),
                *[x for k, v in keys for x in ("-key", k, str(v))],
                *extra,
                f"127.0.0.1:{port}"]
        with open(os.path.join(self.dir, "err"), "w") as err:
            self.proc = subprocess.Popen(args, cwd=self.dir, stdout=subprocess.DEVNULL, stderr=err,
                                         stdin=subprocess.DEVNULL)
        LIVE.append(self)

    def running(self):
        return self.proc.poll() is None

    def wait(self, until=None):
        """Waits for SIPp to end by itself, at most until `until` (default: its -timeout
        plus 30 s); past that it is stopped, and a run that had to be stopped that way
        without a deadline of ours counts as failed (exit status None)."""
        limit = until if until is not None else self.started + self.timeout_s + 30
        try:
            self.proc.wait(timeout=max(0.1, limit - time.time()))
        except subprocess.TimeoutExpired:
            self.stop(deadline=until is not None)
        return self.result()

    def stop(self, deadline=True):
        """SIGINT: SIPp ends at once (calls in progress are dropped, not failed)."""
        self.halt(deadline)
        return self.result()

    def halt(self, deadline=True):
        if self.running():
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.stopped = deadline
            self.overran = not deadline

    def result(self):
        return Result(self.dir, None if self.overran else self.proc.returncode, self.stopped)


def stop_all(sipps):
    for s in sipps:
        s.halt()


def epoch(stamp):
    """SIPp's time stamps end in seconds since the epoch: '2026-12-04\t20:28:41.27\t1796416121.27'."""
    try:
        return float(stamp.split()[-1])
    except (ValueError, IndexError):
        return 0.0


def pct(values, p):
    if not values:
        return float("nan")
    v = sorted(values)
    return v[min(len(v) - 1, int(len(v) * p / 100))]


def elapsed_s(stats):
    start, now = epoch(stats.get("StartTime", "")), epoch(stats.get("CurrentTime", ""))
    if start and now:
        return now - start
    t = stats.get("ElapsedTime(C)", "0:0:0")
    h, m, s = t.split(":")[:3]
    return int(h) * 3600 + int(m) * 60 + float(s)


def server_counters(log_text):
    m = re.findall(r"stats: (.*)", log_text)
    return m[-1] if m else ""


def engine(status, key):
    return int(((status or {}).get("engine") or {}).get(key, 0))


def table(status, key):
    return int(((status or {}).get("tables") or {}).get(key, -1))


def settle_memory(srv, settle):
    """RSS now, RSS `settle` seconds later and the peak, in KiB."""
    end, _ = srv.rss_kib()
    time.sleep(settle)
    after, hwm = srv.rss_kib()
    return end, after, hwm


def row(name, rate, rtts, secs, counters, cpu_s=None, ops=None, mem=None, notes=""):
    return {"name": name, "rate": rate, "p50": pct(rtts, 50), "p99": pct(rtts, 99), "secs": secs,
            "counters": counters, "cpu_us": (cpu_s / ops * 1e6) if cpu_s is not None and ops else None,
            "mem": mem, "notes": notes}


def no_clean_row(name, why="no clean run"):
    FAILED.append(name)
    return row(name, 0.0, [], 0, why)


def rate_search(name, rates, attempt, results):
    """Steps down through `rates` (calls/s) until `attempt(rate)` returns a row (a clean
    run); records it, or a failed row when no rate was clean."""
    for rate in rates:
        r = attempt(rate)
        if r is not None:
            results.append(r)
            return rate
    results.append(no_clean_row(name))
    return None


# ---- the original measures ---------------------------------------------------------------

def run_rate_search(name, scenario, per_call, rates, duration, results, settle):
    """Steps down through `rates` (calls/s) until a run is clean; records the result."""
    def attempt(rate):
        with workdir("presenced-bench-") as work, Server(work) as srv:
            inf = injection(work)
            calls = int(rate * duration)
            cpu0 = srv.cpu_s()
            r = Sipp(work, "run", scenario, srv.port, calls, rate, rate * 2, inf, duration + 30).wait()
            cpu = srv.cpu_s() - cpu0
            ok = r.clean and r.ok_calls == calls
            secs = r.elapsed
            achieved = r.ok_calls * per_call / max(secs, 1e-9)
            log(f"  {name}: {rate} calls/s → {achieved:.0f} ops/s, failed={r.failed}, "
                f"retrans={r.retrans}, {secs:.1f}s, clean={ok} {r.why()}")
            if not ok:
                return None
            mem = settle_memory(srv, settle)
            return row(name, achieved, r.latencies(), secs, server_counters(srv.stop()),
                       cpu, r.ok_calls * per_call, mem)
    rate_search(name, rates, attempt, results)


def fanout(name, duration, rates, results, settle, watchers=1000, presentities=100, sub_rate=500):
    """`watchers` watchers, `watchers / presentities` on each presentity, answer every
    NOTIFY while publish.xml cycles through the presentities at each rate (highest first)
    until a run is clean. Reports what the server sent: notifies_sent less each
    watcher's first and last NOTIFY."""
    def attempt(rate):
        with workdir("presenced-bench-fanout-") as work, \
                Server(work, "clean_period = 1\n") as srv:  # the sweep ends the watchers
            inf = injection(work, presentities)
            ramp = watchers / sub_rate + 2  # subscriptions, then their first NOTIFYs
            w = Sipp(work, "watchers", "watchers.xml", srv.port, watchers, sub_rate, watchers, inf,
                     int(ramp + duration + 60), keys=[("expires", int(ramp + duration + 8))])
            time.sleep(ramp)
            st0 = srv.status()
            if table(st0, "active_watchers") != watchers:
                log(f"  {name}: {table(st0, 'active_watchers')} of {watchers} watchers subscribed "
                    f"after {ramp:.0f} s")
            cpu0 = srv.cpu_s()
            calls = int(rate * duration)
            r = Sipp(work, "fanout-pub", "publish.xml", srv.port, calls, rate, rate * 2, inf,
                     duration + 30).wait()
            cpu = srv.cpu_s() - cpu0
            st1 = srv.status()
            wr = w.wait()
            mem = settle_memory(srv, settle) if r.clean and wr.clean else None
            log_text = srv.stop()
            secs = r.elapsed
            # Each PUBLISH changes state once and each presentity has its watchers, but a
            # dialog with a NOTIFY in flight only gets the newest state after it, so count
            # what the server really sent, less each watcher's first and last NOTIFY.
            sent = re.search(r"notifies_sent: (\d+)", server_counters(log_text))
            notifies = int(sent.group(1)) - 2 * watchers if sent else 0
            ok = r.clean and r.ok_calls == calls and wr.clean and "client_retransmissions: 0," in log_text
            log(f"  {name}: {rate} publish calls/s → {notifies / max(secs, 1e-9):.0f} NOTIFY/s, "
                f"pub failed={r.failed} {r.why()}, watchers failed={wr.failed} {wr.why()}, "
                f"server: {server_counters(log_text)}, clean={ok}")
            if not ok:
                return None
            window_notifies = engine(st1, "notifies_sent") - engine(st0, "notifies_sent")
            return row(name, notifies / secs, r.latencies(), secs, server_counters(log_text),
                       cpu, window_notifies, mem, f"{watchers:,} watchers on {presentities:,} presentities")
    rate_search(name, rates, attempt, results)


def memory(subs):
    with workdir("presenced-bench-rss-") as work, Server(work) as srv:
        inf = injection(work)
        before, _ = srv.rss_kib()
        r = Sipp(work, "rss", "subscribe_keep.xml", srv.port, subs, 2000, 4000, inf, 300).wait()
        loaded, _ = srv.rss_kib()
        # Completed server transactions linger for Timer J (64·T1 = 32 s) holding their
        # responses; measure again once they are gone.
        time.sleep(40)
        rss, hwm = srv.rss_kib()
        if not r.clean:
            FAILED.append("memory")
            log(f"  memory: SIPp run not clean: {r.why()}")
        return before, loaded, rss, hwm, r.ok_calls, r.failed


# ---- users' workloads ----------------------------------------------------------------------

def publish_new_run(work, srv, label, rate, calls, prefix, timeout_s, limit=None, extra=()):
    inf = names_file(work, "unused.csv", ["-"])
    return Sipp(work, label, "publish_new.xml", srv.port, calls, rate, limit or rate * 2, inf, timeout_s,
                keys=[("prefix", prefix), ("expires", 3600)], extra=extra)


def publish_new(rates, duration, results, settle):
    """One initial PUBLISH of a new presentity per call; the table grows by one per call."""
    name = "PUBLISH/s, new presentities"

    def attempt(rate):
        with workdir("presenced-bench-pubnew-") as work, Server(work) as srv:
            calls = int(rate * duration)
            cpu0 = srv.cpu_s()
            r = publish_new_run(work, srv, "run", rate, calls, "p", duration + 30).wait()
            cpu = srv.cpu_s() - cpu0
            ok = r.clean and r.ok_calls == calls
            secs = r.elapsed
            log(f"  publish_new: {rate} calls/s → {r.ok_calls / max(secs, 1e-9):.0f} PUBLISH/s, "
                f"{r.ok_calls:,}/{calls:,} ok, failed={r.failed}, retrans={r.retrans}, "
                f"503={r.counter('shed')}, {secs:.1f}s, clean={ok} {r.why()}")
            if not ok:
                return None
            mem = settle_memory(srv, settle)
            rows = table(srv.status(), "presentity")
            if rows != calls:
                log(f"  publish_new: presentity table has {rows:,} rows after {calls:,} new presentities")
                return None
            return row(name, r.ok_calls / secs, r.latencies(), secs, server_counters(srv.stop()),
                       cpu, r.ok_calls, mem, f"presentity rows: {rows:,}")
    return rate_search(name, rates, attempt, results)


def subscribe_new(rates, duration, results, settle, presentities):
    """`presentities` presentities published first; then a new watcher dialog per call,
    kept (never unsubscribed), spread over them."""
    name = "SUBSCRIBE+NOTIFY/s, new watchers kept"

    def attempt(rate):
        with workdir("presenced-bench-subnew-") as work, Server(work) as srv:
            pre = publish_new_run(work, srv, "preload", min(1000, presentities), presentities, "p", 60).wait()
            if not (pre.clean and pre.ok_calls == presentities):
                log(f"  subscribe_new: preloading {presentities} presentities failed: "
                    f"{pre.ok_calls} ok, {pre.why()}")
                return None
            inf = names_file(work, "published.csv", (f"p{i}" for i in range(1, presentities + 1)))
            calls = int(rate * duration)
            cpu0 = srv.cpu_s()
            r = Sipp(work, "run", "subscribe_keep.xml", srv.port, calls, rate, rate * 2, inf,
                     duration + 30).wait()
            cpu = srv.cpu_s() - cpu0
            ok = r.clean and r.ok_calls == calls
            secs = r.elapsed
            log(f"  subscribe_new: {rate} calls/s → {r.ok_calls / max(secs, 1e-9):.0f} SUBSCRIBE+NOTIFY/s, "
                f"{r.ok_calls:,}/{calls:,} ok, failed={r.failed}, retrans={r.retrans}, {secs:.1f}s, "
                f"clean={ok} {r.why()}")
            if not ok:
                return None
            mem = settle_memory(srv, settle)
            st = srv.status()
            dialogs, rows = table(st, "active_watchers"), table(st, "presentity")
            if dialogs != calls or rows != presentities:
                log(f"  subscribe_new: {dialogs:,} dialogs (expected {calls:,}), "
                    f"{rows:,} presentities (expected {presentities:,})")
                return None
            return row(name, r.ok_calls / secs, r.latencies(), secs, server_counters(srv.stop()),
                       cpu, r.ok_calls, mem, f"active_watchers rows: {dialogs:,} on {rows:,} presentities")
    rate_search(name, rates, attempt, results)


def overload(rate, d1, d2, results, settle, out):
    """2R of publish_new for d1 s, then R for d2 s at once on the same server. A 503 is an
    expected answer in the first phase (counted, not failed); the second phase must be
    clean: 0 failed, 0 retransmissions, no 503, every call answered."""
    name = f"overload: {rate:,}/s after {2 * rate:,}/s"
    with workdir("presenced-bench-overload-") as work, Server(work) as srv:
        cpu0 = srv.cpu_s()
        # A call whose PUBLISH gets no answer in 10 s fails (SIPp's own retransmissions
        # keep going until then); the phase is stopped 10 s after its 30 s of offered load
        # whether or not the server caught up.
        p1 = publish_new_run(work, srv, "phase1-2R", 2 * rate, 2 * rate * d1, "a", d1 + 20,
                             limit=2 * rate * 12, extra=["-recv_timeout", "10000"])
        r1 = p1.wait(until=p1.started + d1 + 10).loaded()
        cpu1 = srv.cpu_s()
        p2 = publish_new_run(work, srv, "phase2-R", rate, rate * d2, "b", d2 + 30)
        r2 = p2.wait().loaded()
        cpu2 = srv.cpu_s()
        ok2 = r2.clean and r2.ok_calls == rate * d2
        mem = settle_memory(srv, settle)
        counters = server_counters(srv.stop())
    s1 = r1.elapsed
    done1 = r1.counter("published")
    placed = r1.n("OutgoingCall(C)")
    # When the last call was placed (the statistics rows are a second apart).
    offered_s = next((epoch(x.get("CurrentTime", "")) - r1.start for x in r1.rows
                      if num(x, "OutgoingCall(C)") >= placed), s1)
    unfinished = max(0, placed - r1.ok_calls - r1.failed)
    lines = [
        f"Overload, R = {rate:,} PUBLISH/s (new presentities):",
        f"- phase 1, {2 * rate:,}/s offered for {d1} s: {placed:,} new PUBLISHes sent in ~{offered_s:.0f} s "
        f"({placed / max(offered_s, 1e-9):,.0f}/s); by the end of the phase ({s1:.1f} s) {done1:,} answered 200 "
        f"({done1 / max(s1, 1e-9):,.0f} PUBLISH/s), "
        f"{r1.counter('shed'):,} answered 503, {r1.failed:,} failed calls, {unfinished:,} unfinished when stopped, "
        f"{r1.retrans:,} retransmissions; p50/p99 {pct(r1.latencies(), 50):.0f}/{pct(r1.latencies(), 99):.0f} ms; "
        f"{(cpu1 - cpu0) / max(done1, 1) * 1e6:.1f} µs CPU per completed PUBLISH",
        f"- phase 2, {rate:,}/s for {d2} s right after: {r2.ok_calls:,}/{rate * d2:,} answered "
        f"({r2.counter('published') / max(r2.elapsed, 1e-9):,.0f} PUBLISH/s), {r2.counter('shed'):,} answered 503, "
        f"{r2.failed:,} failed, {r2.retrans:,} retransmissions; p50/p99 {pct(r2.latencies(), 50):.0f}/"
        f"{pct(r2.latencies(), 99):.0f} ms; {(cpu2 - cpu1) / max(r2.counter('published'), 1) * 1e6:.1f} µs CPU "
        f"per PUBLISH: **{'clean' if ok2 else 'NOT clean'}**" + ("" if ok2 else f" ({r2.why()})"),
        f"- RSS {mem[0] / 1024:.1f} MiB at the end, {mem[1] / 1024:.1f} MiB {settle} s later, "
        f"peak {mem[2] / 1024:.1f} MiB; server: {counters}",
    ]
    for l in lines:
        log("  " + l)
    out.append("\n".join(lines))
    if not ok2:
        FAILED.append("overload")
    results.append(row(name, r2.ok_calls / max(r2.elapsed, 1e-9), r2.latencies(), r2.elapsed, counters,
                       cpu2 - cpu1, r2.ok_calls, mem,
                       ("phase 2 clean" if ok2 else "phase 2 NOT clean") +
                       f"; phase 1: {done1 / max(s1, 1e-9):,.0f} PUBLISH/s answered, {r1.counter('shed'):,} 503, "
                       f"{r1.failed:,} failed, {r1.retrans:,} retrans"))


def flood(flood_rate, duration, results, out):
    """One source (127.0.0.1) floods new PUBLISHes at `flood_rate` while a second source
    (127.0.0.2) sends a PUBLISH of its own presentity and a SUBSCRIBE (kept) every 100 ms
    each. Measured with the default per-source limits; the
    second source's figures are reported next to the same run without the flood."""
    def victims(work, srv, label):
        pub = Sipp(work, f"{label}-pub", "publish_new.xml", srv.port, 10 * duration, 10, 10,
                   names_file(work, "unused.csv", ["-"]), duration + 30,
                   keys=[("prefix", f"v{label}"), ("expires", 3600)], ip="127.0.0.2")
        sub = Sipp(work, f"{label}-sub", "subscribe_keep.xml", srv.port, 10 * duration, 10, 10,
                   names_file(work, "watched.csv", ["alice"]), duration + 30, ip="127.0.0.2")
        return pub, sub

    def report(rs):
        calls = sum(r.n("OutgoingCall(C)") for r in rs)
        ok = sum(r.ok_calls for r in rs)
        lat = [ms for r in rs for ms in r.latencies()]
        return calls, ok, lat

    lines = [f"Flood: one source sends new PUBLISHes at {flood_rate:,}/s offered for {duration} s; a "
             f"second source sends a PUBLISH and a SUBSCRIBE every 100 ms each (default limits):"]
    for flooded in (False, True):
        label = "flood" if flooded else "quiet"
        with workdir(f"presenced-bench-{label}-") as work, Server(work, source_limits=True) as srv:
            flooder = None
            if flooded:
                flooder = publish_new_run(work, srv, "flooder", flood_rate, flood_rate * duration, "f",
                                          duration + 20, limit=flood_rate * 12,
                                          extra=["-recv_timeout", "5000"])
            pub, sub = victims(work, srv, label)
            rp, rs = pub.wait().loaded(), sub.wait().loaded()
            rf = flooder.wait(until=flooder.started + duration + 10).loaded() if flooder else None
            counters = server_counters(srv.stop())
        calls, ok, lat = report([rp, rs])
        share = ok / max(calls, 1) * 100
        line = (f"- {label}: second source {ok}/{calls} answered ({share:.2f} %), p50/p99 "
                f"{pct(lat, 50):.1f}/{pct(lat, 99):.1f} ms, failed {rp.failed + rs.failed}, "
                f"retransmissions {rp.retrans + rs.retrans}")
        if rf is not None:
            placed = rf.n("OutgoingCall(C)")
            line += (f"; flooder: {placed:,} PUBLISHes sent ({placed / max(rf.elapsed, 1e-9):,.0f}/s), "
                     f"{rf.counter('published'):,} answered 200, {rf.counter('shed'):,} answered 503")
        line += f"; server: {counters}"
        log("  " + line)
        lines.append(line)
        if flooded:
            good = share >= 99.0 and pct(lat, 99) < 50
            if not good:
                FAILED.append("flood")
            results.append(row(f"flood: second source under {flood_rate:,}/s", ok / max(rp.elapsed, 1e-9), lat,
                               rp.elapsed, counters, None, None, None,
                               f"{share:.2f} % answered" + ("" if good else " — NOT within 99 % / 50 ms")))
    out.append("\n".join(lines))


def mix(a, window, results, settle, out):
    """Phones with BLF keys. Setup (not measured): every phone publishes its idle line and
    every BLF subscription gets its first NOTIFY. Then a window of `window` seconds in
    which phones change state (PUBLISH) and subscriptions refresh; CPU per operation
    counts PUBLISHes, refreshes and NOTIFYs in the window."""
    phones, blf, refresh, ramp = a.phones, a.blf, a.refresh, a.ramp
    if phones <= blf:
        raise SystemExit("--phones must be more than --blf")
    subs = phones * blf
    change_ms = int(100_000 / a.change_pct)  # each phone changes every change_ms
    chunk_s = max(0.5, min(refresh / 4, 60))  # how late a refresh may be (see mix_blf.xml)
    sub_expires = min(3600, max(2 * refresh, int(refresh + 2 * chunk_s + 10)))
    if refresh + chunk_s >= sub_expires:
        raise SystemExit("--refresh too long for max_expires = 3600")
    name = f"mix: {phones:,} phones × {blf} BLF"
    instances = math.ceil(subs / BLF_PER_SIPP)
    setup_s = max(phones, subs) / ramp  # phones and keys are set up side by side
    with workdir("presenced-bench-mix-") as work, Server(work) as srv:
        bound = setup_s * 2 + 60 + window + 60  # SIPp's own -timeout: we stop it long before
        phone_inf = names_file(work, "phones.csv", (f"phone{i}" for i in range(phones)))
        sipps = [Sipp(work, "phones", "mix_phone.xml", srv.port, phones, min(ramp, phones), phones,
                      phone_inf, int(bound), keys=[("change_ms", change_ms), ("expires", 3600)])]
        pairs = [(i, (i + k) % phones) for i in range(phones) for k in range(1, blf + 1)]
        per = math.ceil(len(pairs) / instances)
        for j in range(instances):
            part = pairs[j * per:(j + 1) * per]
            inf = names_file(work, f"blf{j}.csv", (f"phone{i};phone{t}" for i, t in part))
            sipps.append(Sipp(work, f"blf{j}", "mix_blf.xml", srv.port, len(part), ramp / instances,
                              len(part), inf, int(bound),
                              keys=[("refresh_s", refresh), ("expires", sub_expires)],
                              extra=["-recv_timeout", str(int(chunk_s * 1000))]))
        try:
            # Setup: wait until every phone has published and every key has its first NOTIFY.
            deadline = time.time() + setup_s * 2 + 60
            while True:
                time.sleep(1)
                res = [s.result() for s in sipps]
                published, subscribed = res[0].counter("online"), sum(r.counter("subscribed") for r in res[1:])
                broken = [r for s, r in zip(sipps, res) if not s.running() or r.failed or r.retrans]
                if published >= phones and subscribed >= subs or broken or time.time() > deadline:
                    break
            if published < phones or subscribed < subs or broken:
                stop_all(sipps)
                res = [s.result() for s in sipps]
                why = "; ".join(f"{os.path.basename(r.dir)}: {r.why()}" for r in res if r.why())
                log(f"  mix: setup failed: {published:,}/{phones:,} phones published, "
                    f"{subscribed:,}/{subs:,} keys subscribed; {why}")
                results.append(no_clean_row(name, "setup failed"))
                return
            log(f"  mix: setup done: {published:,} phones published, {subscribed:,} keys subscribed")
            time.sleep(2)
            st0 = srv.status()
            t0, cpu0 = time.time(), srv.cpu_s()
            time.sleep(window)
            t1, cpu1 = time.time(), srv.cpu_s()
            rss_end, _ = srv.rss_kib()
            st1 = srv.status()
        finally:
            # Phones first, so no state change is left without its watchers to answer.
            sipps[0].stop()
            time.sleep(2)
            stop_all(sipps[1:])
        res = [s.result().loaded() for s in sipps]
        time.sleep(settle)
        rss_after, hwm = srv.rss_kib()
        counters = server_counters(srv.stop())
    cpu = cpu1 - cpu0
    secs = t1 - t0
    pubs = engine(st1, "publishes") - engine(st0, "publishes")
    notifies = engine(st1, "notifies_sent") - engine(st0, "notifies_sent")
    notify_failures = engine(st1, "notify_failures") - engine(st0, "notify_failures")
    refreshes = sum(r.counter_at(t1, "refreshed") - r.counter_at(t0, "refreshed") for r in res[1:])
    ops = pubs + refreshes + notifies
    lat = [ms for r in res for ms in r.latencies(t0, t1)]
    ok = all(r.failed == 0 and r.retrans == 0 and r.stats for r in res) and notify_failures == 0 and ops > 0
    nominal_pub = phones * a.change_pct / 100
    line = (f"Mix: {phones:,} phones, {subs:,} BLF subscriptions (Event: dialog, Expires {sub_expires} s, "
            f"refresh every {refresh} s), {a.change_pct:g} % of phones changing per second; {secs:.0f} s window: "
            f"{pubs / secs:,.0f} PUBLISH/s (nominal {nominal_pub:,.0f}), {refreshes / secs:,.1f} refreshes/s "
            f"(nominal {subs / refresh:,.1f}), {notifies / secs:,.0f} NOTIFY/s; presenced CPU {cpu:.2f} s "
            f"= {cpu / secs * 100:.0f} % of a core, {cpu / max(ops, 1) * 1e6:.1f} µs per operation; "
            f"p50/p99 {pct(lat, 50):.0f}/{pct(lat, 99):.0f} ms; RSS {rss_end / 1024:.1f} MiB in the window, "
            f"{rss_after / 1024:.1f} MiB {settle} s after, peak {hwm / 1024:.1f} MiB; "
            f"SIPp: " + ", ".join(f"{os.path.basename(r.dir)} failed={r.failed} retrans={r.retrans}" for r in res)
            + f"; NOTIFY failures {notify_failures}: **{'clean' if ok else 'NOT clean'}**")
    log("  " + line)
    out.append(line)
    if not ok:
        FAILED.append("mix")
    results.append(row(name, ops / secs, lat, secs, counters, cpu, ops, (rss_end, rss_after, hwm),
                       f"ops/s = PUBLISH {pubs / secs:,.0f} + refresh {refreshes / secs:,.1f} + NOTIFY "
                       f"{notifies / secs:,.0f}; " + ("clean" if ok else "NOT clean")))


# ---- bytes written per operation (flash wear) ---------------------------------------------

# Operations measured by io_per_op, in the order they run, and how many of each by default
# (--io NAME=N; 0 skips one). refresh and modify act on publications the phase before made
# (SIP-If-Match with the ETag it got back), so refresh ≤ publish_new and modify ≤ refresh;
# subscribe_new watches the first N presentities publish_new made. slow is new PUBLISHes at
# --io-slow-rate, where every flush carries only a few operations (a quiet router); idle=S is
# S seconds without traffic before it (what the database writes on its own meanwhile).
IO_PHASES = {"publish_new": 100_000, "refresh": 50_000, "modify": 50_000, "subscribe_new": 30_000,
             "idle": 30, "slow": 300}


def proc_io(pid):
    """/proc/PID/io of the whole process (every thread) as integers."""
    with open(f"/proc/{pid}/io") as f:
        return {k: int(v) for k, v in (l.split(": ", 1) for l in f.read().splitlines() if ": " in l)}


def sync_period_s():
    """The daemon's sync_period_ms (--config), in seconds."""
    try:
        import tomllib
        return tomllib.loads(EXTRA_CONFIG).get("sync_period_ms", 500) / 1000
    except Exception:  # an unparsable --config fails at the daemon's start anyway
        return 0.5


def settled_io(srv, quiet_s):
    """/proc/PID/io once the daemon has stopped writing: `quiet_s` first (past the periodic
    flush that covers the last operation, sync_period_ms after it), then until write_bytes
    has not moved for 2 s (sled's own flusher thread syncs every 500 ms), at most 60 s."""
    time.sleep(quiet_s)
    last = proc_io(srv.proc.pid)
    if getattr(srv, "db_fs", None):
        # The file system's own writes (journal commit, metadata) for what the daemon
        # wrote reach the device now, not up to 5 s later (syncfs of that file system).
        subprocess.run(["sync", "-f", srv.db_fs], check=False)
    still, deadline = time.time(), time.time() + 60
    while time.time() - still < 2 and time.time() < deadline:
        time.sleep(0.25)
        now = proc_io(srv.proc.pid)
        if now["write_bytes"] != last["write_bytes"]:
            last, still = now, time.time()
    return last


def device_stat(path):
    """The block device under `path` (/sys/dev/block/MAJ:MIN/stat): (sectors written,
    write requests), or None. Whole device: exact for the daemon only on a file system
    nothing else writes to (--io-dir)."""
    try:
        dev = os.stat(path).st_dev
        with open(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}/stat") as f:
            fields = f.read().split()
        return int(fields[6]), int(fields[4])
    except (OSError, IndexError, ValueError):
        return None


def disk_usage(path):
    """(apparent bytes, allocated bytes) of every file under `path` (du -sb, du -sB1)."""
    size = alloc = 0
    for d, _, files in os.walk(path):
        for name in files:
            try:
                st = os.stat(os.path.join(d, name))
            except FileNotFoundError:
                continue
            size += st.st_size
            alloc += st.st_blocks * 512
    return size, alloc


def sipp_log(path):
    """The lines a scenario's <log> actions wrote ("user;etag")."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [l.strip() for l in f if re.fullmatch(r"[^;\s]+;[^;\s]+", l.strip())]


def io_per_op(a, out):
    """Bytes the daemon writes to disk per operation: write_bytes of /proc/PID/io (what
    the process sent to the block layer, counted a 4 KiB page at a time as pages turn
    dirty; the file system's journal is not in it) read before each phase and after it
    once the flush that covers its last operation is done. One server, phases in order:
    new PUBLISHes (the presentity table grows by one row each), refreshes of the first of
    them (SIP-If-Match, no body), modifies of those (SIP-If-Match and a new body), new kept
    SUBSCRIBEs each with its first NOTIFY, and new PUBLISHes at a slow rate. Also the
    database's size on disk after each phase, per row."""
    counts = dict(IO_PHASES)
    for spec in a.io:
        for item in spec.split(","):
            name, _, n = item.partition("=")
            if name not in counts:
                raise SystemExit(f"--io: unknown operation {name!r}")
            counts[name] = int(n)
    counts["refresh"] = min(counts["refresh"], counts["publish_new"])
    counts["modify"] = min(counts["modify"], counts["refresh"])
    counts["subscribe_new"] = min(counts["subscribe_new"], counts["publish_new"])
    rate, slow = a.io_rate, a.io_slow_rate
    quiet_s = sync_period_s() + 1.5
    results = []
    db_parent = tempfile.mkdtemp(prefix="presenced-bench-io-db-", dir=a.io_dir) if a.io_dir else None
    try:
        io_phases(a, counts, rate, slow, quiet_s, results, db_parent, out)
    finally:
        if db_parent and not os.environ.get("BENCH_KEEP"):
            subprocess.run(["rm", "-rf", db_parent])


def io_phases(a, counts, rate, slow, quiet_s, results, db_parent, out):
    db = os.path.join(db_parent, "db") if db_parent else None
    with workdir("presenced-bench-io-") as work, Server(work, db=db) as srv:
        srv.db_fs = db_parent

        def dev():
            return device_stat(db_parent) if db_parent else None

        def phase(label, what, scenario, n, r, inf, keys=(), logged=False):
            if n <= 0:
                return []
            logf = os.path.join(work, f"{label}.log")
            extra = ["-trace_logs", "-log_file", logf] if logged else []
            before = settled_io(srv, 0)
            dev0 = dev()
            t0 = time.time()
            res = Sipp(work, label, scenario, srv.port, n, r, max(2 * r, 100), inf, int(n / r) + 60,
                       keys=keys, extra=extra).wait()
            secs = time.time() - t0
            after = settled_io(srv, quiet_s)
            dev1 = dev()
            st = srv.status()
            size, alloc = disk_usage(srv.db)
            ok = res.clean and res.ok_calls == n
            tables = (st or {}).get("tables") or {}
            rows = sum(v for v in tables.values() if isinstance(v, int))
            wrote = after["write_bytes"] - before["write_bytes"]
            item = {"what": what, "n": res.ok_calls, "rate": r, "wrote": wrote,
                    "per_op": wrote / max(res.ok_calls, 1),
                    "cancelled": after["cancelled_write_bytes"] - before["cancelled_write_bytes"],
                    "syscw": after["syscw"] - before["syscw"], "secs": secs, "ok": ok,
                    "dev": (dev1[0] - dev0[0]) * 512 if dev0 and dev1 else None,
                    "tables": tables, "rows": rows, "size": size, "alloc": alloc,
                    "sled_size": (st or {}).get("size_on_disk")}
            log(f"  io: {what}: {res.ok_calls:,}/{n:,} ok in {secs:.0f} s, wrote {wrote:,} bytes = "
                f"{item['per_op']:,.0f} per operation ({item['syscw']:,} write calls)"
                + (f", device {item['dev']:,} bytes = {item['dev'] / max(res.ok_calls, 1):,.0f} per operation"
                   if item["dev"] is not None else "") + "; database "
                f"{size:,} bytes ({alloc:,} allocated) for {rows:,} rows {tables}"
                + ("" if ok else f" — NOT clean: {res.why()}"))
            if not ok:
                FAILED.append(f"io {label}")
            results.append(item)
            return sipp_log(logf)

        made = phase("publish_new", "new PUBLISH (new presentity, 220-byte PIDF)", "io_publish_new.xml",
                     counts["publish_new"], rate, names_file(work, "unused.csv", ["-"]),
                     keys=[("prefix", "p"), ("expires", 3600)], logged=True)
        presentity_rows = results[-1]["tables"].get("presentity") if results else None
        at_100k = results[-1] if results else None
        refreshed = []
        if counts["refresh"] > 0:
            if len(made) < counts["refresh"]:
                raise SystemExit(f"io: only {len(made)} ETags logged by the new PUBLISHes")
            refreshed = phase("refresh", "refresh (SIP-If-Match, no body)", "io_publish_refresh.xml",
                              counts["refresh"], rate,
                              names_file(work, "refresh.csv", made[:counts["refresh"]]),
                              keys=[("expires", 3600)], logged=True)
        if counts["modify"] > 0:
            if len(refreshed) < counts["modify"]:
                raise SystemExit(f"io: only {len(refreshed)} ETags logged by the refreshes")
            phase("modify", "modify (SIP-If-Match + new 220-byte body)", "io_publish_modify.xml",
                  counts["modify"], rate, names_file(work, "modify.csv", refreshed[:counts["modify"]]),
                  keys=[("expires", 3600)])
        phase("subscribe_new", "new SUBSCRIBE (kept) + its NOTIFY", "subscribe_keep.xml",
              counts["subscribe_new"], rate,
              names_file(work, "watched.csv", (f"p{i}" for i in range(1, counts["subscribe_new"] + 1))))
        if counts["idle"] > 0:
            before = settled_io(srv, 0)
            dev0 = dev()
            time.sleep(counts["idle"])
            after = proc_io(srv.proc.pid)
            dev1 = dev()
            wrote = after["write_bytes"] - before["write_bytes"]
            size, alloc = disk_usage(srv.db)
            rows = results[-1]["rows"] if results else 0
            log(f"  io: idle {counts['idle']} s: wrote {wrote:,} bytes")
            results.append({"what": f"idle, {counts['idle']} s without traffic (per second)", "n": counts["idle"],
                            "rate": 0, "wrote": wrote, "per_op": wrote / counts["idle"],
                            "dev": (dev1[0] - dev0[0]) * 512 if dev0 and dev1 else None,
                            "syscw": after["syscw"] - before["syscw"], "ok": True, "rows": rows,
                            "size": size, "alloc": alloc, "tables": {}})
        phase("slow", f"new PUBLISH at {slow}/s", "io_publish_new.xml", counts["slow"], slow,
              names_file(work, "unused.csv", ["-"]), keys=[("prefix", "s"), ("expires", 3600)])
        counters = server_counters(srv.stop())
    config = EXTRA_CONFIG.strip().replace("\n", "; ") or "defaults"
    on_dev = any(it.get("dev") is not None for it in results)
    lines = [f"Bytes written per operation ({config}; `write_bytes` of /proc/PID/io before and after "
             f"each phase, the flush covering its last operation included"
             + (f"; device: sectors written to the block device under --io-dir {a.io_dir}, file "
                f"system journal and metadata included" if on_dev else "") + "):", "",
             "| operation | ops | rate/s | write_bytes | per op | write syscalls (all fds) | "
             + ("device bytes | device per op | " if on_dev else "")
             + "rows after | db on disk (allocated) | on disk per row |",
             "|---|---|---|---|---|---|" + ("---|---|" if on_dev else "") + "---|---|---|"]
    for it in results:
        devcols = ""
        if on_dev:
            d = it.get("dev")
            devcols = (f"{d:,} | **{d / max(it['n'], 1):,.0f}** | " if d is not None else "— | — | ")
        lines.append(f"| {it['what']} | {it['n']:,} | {it['rate']:,} | {it['wrote']:,} | "
                     f"**{it['per_op']:,.0f}** | {it['syscw']:,} | {devcols}{it['rows']:,} | {it['size']:,} "
                     f"({it['alloc']:,}) | {it['size'] / max(it['rows'], 1):,.0f} |"
                     + ("" if it["ok"] else " NOT clean"))
    if at_100k and presentity_rows:
        lines.append("")
        lines.append(f"After the new PUBLISHes: {at_100k['size']:,} bytes on disk for {presentity_rows:,} "
                     f"presentities = {at_100k['size'] / presentity_rows:,.0f} bytes per presentity "
                     f"(sled's size_on_disk {at_100k['sled_size']}).")
    lines.append(f"Server: {counters}")
    for l in lines:
        log("  " + l)
    out.append("\n".join(lines))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=None,
                    help="seconds of load per run (default 30; 60 for publish_new, subscribe_new and "
                         "the mix window; 30 for each overload phase)")
    ap.add_argument("--quick", action="store_true", help="10 s runs, 10,000 subscriptions")
    ap.add_argument("--only", default="publish,subscribe,fanout,memory",
                    help="measures: publish, subscribe, fanout, memory, publish_new, subscribe_new, "
                         "fanout10k, overload, mix, flood, io")
    ap.add_argument("--config", action="append", default=[], metavar="LINE",
                    help="a line added to every server's presenced.toml, e.g. 'sync = \"always\"'")
    ap.add_argument("--rates", action="append", default=[], metavar="NAME=R1,R2,…",
                    help="SIPp call rates to try, highest first, for publish, subscribe, fanout, "
                         "publish_new, subscribe_new or fanout10k (publish calls are 3 PUBLISHes, "
                         "subscribe calls 2 SUBSCRIBE+NOTIFY, fanout calls 3 PUBLISHes × 10 NOTIFYs, "
                         "publish_new 1 PUBLISH, subscribe_new 1 SUBSCRIBE+NOTIFY); overload=R: the "
                         "sustained PUBLISH rate R (else found by a publish_new rate search)")
    ap.add_argument("--settle", type=int, default=40,
                    help="seconds between the end of a run and its second RSS reading")
    ap.add_argument("--presentities", type=int, default=1000,
                    help="subscribe_new: presentities published before the run")
    ap.add_argument("--phones", type=int, default=20_000, help="mix: phones")
    ap.add_argument("--blf", type=int, default=10, help="mix: BLF subscriptions per phone")
    ap.add_argument("--refresh", type=int, default=600, help="mix: seconds between subscription refreshes")
    ap.add_argument("--change-pct", type=float, default=1.0,
                    help="mix: percent of the phones changing state per second")
    ap.add_argument("--ramp", type=int, default=5000,
                    help="mix: phones and subscriptions set up per second before the window")
    ap.add_argument("--io", action="append", default=[], metavar="NAME=N,…",
                    help="io: operations per phase (publish_new, refresh, modify, subscribe_new, idle (seconds), slow; "
                         "0 skips one); defaults " + ", ".join(f"{k}={v}" for k, v in IO_PHASES.items()))
    ap.add_argument("--io-rate", type=int, default=1000, help="io: operations per second in each phase")
    ap.add_argument("--io-slow-rate", type=int, default=10, help="io: new PUBLISHes per second, slow phase")
    ap.add_argument("--io-dir", default=None,
                    help="io: put the database under this directory and also count the sectors written "
                         "to its block device (exact on a file system nothing else writes to, e.g. a "
                         "loop-mounted image; the SIPp and log files stay in the temporary directory)")
    a = ap.parse_args()
    global EXTRA_CONFIG
    EXTRA_CONFIG = "".join(line + "\n" for line in a.config)
    rates = {"publish": [7000, 6000, 5000, 4000, 3000, 2000, 1000],
             "subscribe": [6000, 5000, 4000, 3000, 2000, 1000],
             "fanout": [1500, 1200, 1000, 800, 600, 400, 200],
             "fanout10k": [1500, 1200, 1000, 800, 600, 400, 200],
             "publish_new": [20000, 18000, 16000, 14000, 12000, 10000, 8000, 6000],
             "subscribe_new": [12000, 10000, 8000, 6000, 4000, 2000],
             "overload": [],
             "flood": [60000]}
    for r in a.rates:
        name, _, values = r.partition("=")
        if name not in rates:
            raise SystemExit(f"--rates: unknown measure {name!r}")
        rates[name] = [int(v) for v in values.split(",")]
    only = a.only.split(",")
    unknown = set(only) - {"publish", "subscribe", "fanout", "memory", "publish_new", "subscribe_new",
                           "fanout10k", "overload", "mix", "flood", "io"}
    if unknown:
        raise SystemExit(f"--only: unknown {', '.join(sorted(unknown))}")

    def seconds(default):
        return a.duration if a.duration is not None else (10 if a.quick else default)

    results, details = [], []
    try:
        measure(a, only, rates, seconds, results, details)
    finally:
        stop_all(LIVE)


def measure(a, only, rates, seconds, results, details):
    if "publish" in only:
        run_rate_search("PUBLISH/s", "publish.xml", 3, rates["publish"], seconds(30), results, a.settle)
    if "subscribe" in only:
        run_rate_search("SUBSCRIBE+NOTIFY/s", "subscribe.xml", 2, rates["subscribe"], seconds(30), results,
                        a.settle)
    if "fanout" in only:
        fanout("fan-out NOTIFY/s", seconds(30), rates["fanout"], results, a.settle)
    if "fanout10k" in only:
        fanout("fan-out NOTIFY/s, 10k watchers", seconds(30), rates["fanout10k"], results, a.settle,
               watchers=10_000, presentities=1_000, sub_rate=1000)
    if "publish_new" in only:
        publish_new(rates["publish_new"], seconds(60), results, a.settle)
    if "subscribe_new" in only:
        subscribe_new(rates["subscribe_new"], seconds(60), results, a.settle, a.presentities)
    if "overload" in only:
        r = rates["overload"][0] if rates["overload"] else None
        if r is None:
            log("overload: finding a sustained publish_new rate R first")
            r = publish_new(rates["publish_new"], seconds(30), results, a.settle)
        if r is None:
            results.append(no_clean_row("overload", "no sustained rate R found"))
        else:
            overload(r, seconds(30), seconds(30), results, a.settle, details)
    if "mix" in only:
        mix(a, seconds(60), results, a.settle, details)
    if "flood" in only:
        flood(rates["flood"][0], seconds(30), results, details)
    if "io" in only:
        io_per_op(a, details)
    if results:
        print("| measure | sustained | p50 ms | p99 ms | run s | CPU µs/op | RSS MiB: end / +settle / peak "
              "| server counters | notes |")
        print("|---|---|---|---|---|---|---|---|---|")
        for r in results:
            cpu = f"{r['cpu_us']:.1f}" if r["cpu_us"] is not None else "—"
            mem = " / ".join(f"{m / 1024:.1f}" for m in r["mem"]) if r["mem"] else "—"
            print(f"| {r['name']} | {r['rate']:,.0f} | {r['p50']:.2f} | {r['p99']:.2f} | {r['secs']:.0f} | {cpu} "
                  f"| {mem} | {r['counters']} | {r['notes']} |")
    for line in details:
        print(f"\n{line}")
    if "memory" in only:
        subs = 10_000 if a.quick else 100_000
        before, loaded, rss, hwm, ok, failed = memory(subs)
        print(f"\nRSS: {before / 1024:.1f} MiB idle; {loaded / 1024:.1f} MiB right after {ok:,} subscriptions "
              f"({failed} failed), {rss / 1024:.1f} MiB 40 s later; peak {hwm / 1024:.1f} MiB")
    if FAILED:
        print(f"\nFAILED: {', '.join(FAILED)}")
        sys.exit(1)


if __name__ == "__main__":
    main()
