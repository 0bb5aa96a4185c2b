#!/usr/bin/env python3
"""SIPp load benchmark for presenced: sustained PUBLISH/s, SUBSCRIBE+NOTIFY/s, fan-out
NOTIFY/s (1,000 watchers on 100 presentities) and RSS with 100,000 subscriptions.

Everything runs on 127.0.0.1, every SIPp run is bounded by -m and -timeout, and the
daemon is stopped at the end. Usage (after `cargo build --release`):

    python3 benches/sipp/bench.py [--duration 30] [--quick] [--config 'sync = "always"']

Prints a Markdown table for BENCHMARKS.md. A run counts only with 0 failed calls and 0
retransmissions; the rate search steps down until that holds.
"""

import argparse
import csv
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
    def __init__(self, work, extra_config=""):
        self.work = work
        self.port = free_port()
        cfg = os.path.join(work, "presenced.toml")
        with open(cfg, "w") as f:
            f.write("min_expires = 0\nmax_expires = 3600\n" + EXTRA_CONFIG + extra_config)
        self.log = open(os.path.join(work, "presenced.log"), "w")
        env = dict(os.environ, RUST_LOG="warn,presenced::daemon=info")
        self.proc = subprocess.Popen(
            [BIN, "run", "--config", cfg, "--db", os.path.join(work, "db"),
             "--listen", f"udp:127.0.0.1:{self.port}", "--listen", f"tcp:127.0.0.1:{self.port}"],
            stdout=self.log, stderr=self.log, env=env)
        deadline = time.time() + 10
        while time.time() < deadline:
            with open(os.path.join(work, "presenced.log")) as f:
                if "listening on" in f.read():
                    return
            time.sleep(0.05)
        raise RuntimeError("presenced did not start")

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            fields = dict(l.split(":", 1) for l in f if ":" in l)
        return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()
        with open(os.path.join(self.work, "presenced.log")) as f:
            return f.read()


def injection(work, n=100):
    path = os.path.join(work, "presentities.csv")
    with open(path, "w") as f:
        f.write("SEQUENTIAL\n")
        for i in range(n):
            f.write(f"user{i}\n")
    return path


def sipp(work, label, scenario, port, calls, rate, limit, inf, timeout_s, background=False, keys=()):
    """Runs one SIPp instance; returns (stats dict, rtt list ms) or the Popen."""
    d = os.path.join(work, label)
    os.makedirs(d, exist_ok=True)
    args = ["sipp", "-sf", os.path.join(HERE, scenario), "-inf", inf, "-i", "127.0.0.1",
            "-p", "0", "-m", str(calls), "-r", str(rate), "-rp", "1000", "-l", str(limit),
            "-timeout", f"{timeout_s}s", "-timeout_error", "-nostdin",
            "-trace_stat", "-stf", os.path.join(d, "stats.csv"), "-fd", "1",
            "-trace_rtt", "-rtt_freq", "1", "-max_socket", "2000", "-nd",
            # SIPp's default 64 KiB socket buffers drop bursts of NOTIFYs on its side;
            # the load generator must not be what loses messages.
            "-buff_size", str(4 * 1024 * 1024),
            *[x for k, v in keys for x in ("-key", k, str(v))],
            f"127.0.0.1:{port}"]
    p = subprocess.Popen(args, cwd=d, stdout=subprocess.DEVNULL, stderr=open(os.path.join(d, "err"), "w"),
                         stdin=subprocess.DEVNULL)
    if background:
        return p, d
    p.wait(timeout=timeout_s + 30)
    return read_results(d)


def read_results(d):
    with open(os.path.join(d, "stats.csv")) as f:
        rows = list(csv.reader(f, delimiter=";"))
    header, last = rows[0], rows[-1]
    stats = dict(zip(header, last))
    rtts = []
    for name in os.listdir(d):
        if name.endswith("_rtt.csv"):
            with open(os.path.join(d, name)) as f:
                for row in csv.reader(f, delimiter=";"):
                    try:
                        rtts.append(float(row[1]))
                    except (ValueError, IndexError):
                        pass
    return stats, rtts


def pct(values, p):
    if not values:
        return float("nan")
    v = sorted(values)
    return v[min(len(v) - 1, int(len(v) * p / 100))]


def elapsed_s(stats):
    t = stats.get("ElapsedTime(C)", "0:0:0")
    h, m, s = t.split(":")[:3]
    return int(h) * 3600 + int(m) * 60 + float(s)


def clean(stats):
    return int(stats.get("FailedCall(C)", 1)) == 0 and int(stats.get("Retransmissions(C)", 1)) == 0


def server_counters(log):
    m = re.findall(r"stats: (.*)", log)
    return m[-1] if m else ""


def run_rate_search(name, scenario, per_call, rates, duration, results):
    """Steps down through `rates` (calls/s) until a run is clean; records the result."""
    for rate in rates:
        with tempfile.TemporaryDirectory(prefix="presenced-bench-") as work:
            srv = Server(work)
            inf = injection(work)
            calls = int(rate * duration)
            stats, rtts = sipp(work, "run", scenario, srv.port, calls, rate, rate * 2, inf, duration + 30)
            log = srv.stop()
            ok = clean(stats) and int(stats.get("SuccessfulCall(C)", 0)) == calls
            secs = elapsed_s(stats)
            achieved = int(stats.get("SuccessfulCall(C)", 0)) * per_call / max(secs, 1e-9)
            print(f"  {name}: {rate} calls/s → {achieved:.0f} ops/s, failed={stats.get('FailedCall(C)')}, "
                  f"retrans={stats.get('Retransmissions(C)')}, {secs:.1f}s, clean={ok}", file=sys.stderr)
            if ok:
                results.append((name, achieved, pct(rtts, 50), pct(rtts, 99), secs, server_counters(log)))
                return
    results.append((name, 0.0, float("nan"), float("nan"), 0, "no clean run"))


def fanout(duration, rates, results):
    for rate in rates:
        with tempfile.TemporaryDirectory(prefix="presenced-bench-fanout-") as work:
            # The sweep ends every watcher's subscription shortly after the publishers stop.
            srv = Server(work, "clean_period = 1\n")
            inf = injection(work)
            watchers, wdir = sipp(work, "watchers", "watchers.xml", srv.port, 1000, 500, 1000, inf,
                                  duration + 60, background=True, keys=[("expires", duration + 12)])
            time.sleep(4)  # 1,000 subscriptions at 500/s, then their first NOTIFYs
            calls = int(rate * duration)
            stats, rtts = sipp(work, "fanout-pub", "publish.xml", srv.port, calls, rate, rate * 2, inf,
                               duration + 30)
            watchers.wait(timeout=duration + 90)
            wstats, _ = read_results(wdir)
            log = srv.stop()
            secs = elapsed_s(stats)
            # Each PUBLISH changes state once and each presentity has 10 watchers, but a
            # dialog with a NOTIFY in flight only gets the newest state after it, so count
            # what the server really sent, less each watcher's first and last NOTIFY.
            sent = re.search(r"notifies_sent: (\d+)", server_counters(log))
            notifies = int(sent.group(1)) - 2 * 1000 if sent else 0
            ok = clean(stats) and clean(wstats) and "client_retransmissions: 0," in log
            print(f"  fan-out: {rate} publish calls/s → {notifies / max(secs, 1e-9):.0f} NOTIFY/s, "
                  f"pub failed={stats.get('FailedCall(C)')}, watchers failed={wstats.get('FailedCall(C)')}, "
                  f"server: {server_counters(log)}, clean={ok}", file=sys.stderr)
            if ok:
                results.append(("fan-out NOTIFY/s", notifies / secs, pct(rtts, 50), pct(rtts, 99), secs,
                                server_counters(log)))
                return
    results.append(("fan-out NOTIFY/s", 0.0, float("nan"), float("nan"), 0, "no clean run"))


def memory(subs):
    with tempfile.TemporaryDirectory(prefix="presenced-bench-rss-") as work:
        srv = Server(work)
        inf = injection(work)
        before, _ = srv.rss_kib()
        stats, _ = sipp(work, "rss", "subscribe_keep.xml", srv.port, subs, 2000, 4000, inf, 300)
        loaded, _ = srv.rss_kib()
        # Completed server transactions linger for Timer J (64·T1 = 32 s) holding their
        # responses; measure again once they are gone.
        time.sleep(40)
        rss, hwm = srv.rss_kib()
        srv.stop()
        return before, loaded, rss, hwm, int(stats.get("SuccessfulCall(C)", 0)), int(stats.get("FailedCall(C)", 0))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=30)
    ap.add_argument("--quick", action="store_true", help="10 s runs, 10,000 subscriptions")
    ap.add_argument("--only", default="publish,subscribe,fanout,memory")
    ap.add_argument("--config", action="append", default=[], metavar="LINE",
                    help="a line added to every server's presenced.toml, e.g. 'sync = \"always\"'")
    ap.add_argument("--rates", action="append", default=[], metavar="NAME=R1,R2,…",
                    help="SIPp call rates to try, highest first, for publish, subscribe or fanout "
                         "(publish calls are 3 PUBLISHes, subscribe calls 2 SUBSCRIBE+NOTIFY, "
                         "fanout calls 3 PUBLISHes × 10 NOTIFYs)")
    a = ap.parse_args()
    global EXTRA_CONFIG
    EXTRA_CONFIG = "".join(line + "\n" for line in a.config)
    rates = {"publish": [7000, 6000, 5000, 4000, 3000, 2000, 1000],
             "subscribe": [6000, 5000, 4000, 3000, 2000, 1000],
             "fanout": [1500, 1200, 1000, 800, 600, 400, 200]}
    for r in a.rates:
        name, _, values = r.partition("=")
        rates[name] = [int(v) for v in values.split(",")]
    duration = 10 if a.quick else a.duration
    only = a.only.split(",")
    results = []
    if "publish" in only:
        run_rate_search("PUBLISH/s", "publish.xml", 3, rates["publish"], duration, results)
    if "subscribe" in only:
        run_rate_search("SUBSCRIBE+NOTIFY/s", "subscribe.xml", 2, rates["subscribe"], duration, results)
    if "fanout" in only:
        fanout(duration, rates["fanout"], results)
    print("| measure | sustained | p50 ms | p99 ms | run s | server counters |")
    print("|---|---|---|---|---|---|")
    for name, rate, p50, p99, secs, counters in results:
        print(f"| {name} | {rate:,.0f} | {p50:.2f} | {p99:.2f} | {secs:.0f} | {counters} |")
    if "memory" in only:
        subs = 10_000 if a.quick else 100_000
        before, loaded, rss, hwm, ok, failed = memory(subs)
        print(f"\nRSS: {before / 1024:.1f} MiB idle; {loaded / 1024:.1f} MiB right after {ok:,} subscriptions "
              f"({failed} failed), {rss / 1024:.1f} MiB 40 s later; peak {hwm / 1024:.1f} MiB")


if __name__ == "__main__":
    main()
