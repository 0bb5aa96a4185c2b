#!/usr/bin/env python3
"""TLS handshake flood: does the `tls:` listener keep serving a second client?

Starts presenced itself (fresh database and self-signed certificate in a temporary
directory, `udp:` and `tls:` listeners on ports the kernel picks), then for --duration
seconds:

  flood   --flood N TCP connections from --flood-source (127.0.0.2) to the TLS port,
          held open at once, that never complete a handshake: `--mode silent` sends
          nothing, `--mode partial` sends the first --partial-bytes (10) bytes of a real
          ClientHello and stalls. Each connection is opened again as soon as the server
          closes it. The flooder runs in a process of its own (so it does not share a
          GIL with the client being measured) and counts connects attempted, connects
          completed or failed, and connections closed by the server, by how long they
          lived: closed at once (a handshake cap) or after about tls_handshake_timeout_ms.
  client  from 127.0.0.1, every --interval (0.2) s: TCP connect, a full TLS handshake
          (no certificate check, no session resumption), one OPTIONS, its 200 OK, close;
          the handshake time (connect included), the OPTIONS round trip, and failures
          by stage.
  server  VmRSS (and open descriptors) of presenced before the flood, its peak during
          it (sampled every 0.5 s) and --settle (5) s after it; CPU time (utime+stime
          from /proc/PID/stat) during the run and during the settle; the handshake
          failures it logged, by reason. Also the kernel's listen queue overflows over
          the run (TcpExt ListenOverflows, box-wide): a connect whose SYN meets a full
          accept queue is retried by the client's kernel 1 s later.

`--flood 0` is the baseline: the same client on a quiet server. Usage:

    python3 benches/tls_flood.py [--bin target/release/presenced] [--duration 20]
                                 [--flood 500] [--mode silent|partial] [--config 'KEY = V']

Needs `openssl` (for the certificate) and Linux (/proc, 127.0.0.2 on loopback). Every
step is bounded in time and presenced and the flooder are always stopped at the end.
Prints a summary; --json PATH writes the same figures as JSON. The exit status is 1
when a client attempt failed.
"""

import argparse
import errno
import json
import os
import resource
import selectors
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLK_TCK = os.sysconf("SC_CLK_TCK")
# Linux: bind(addr, 0) without reserving the port until connect, so a flood's ports are
# picked per destination like an unbound connect's.
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def raise_nofile(wanted):
    """Raises the soft limit on open files to `wanted` (up to the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return soft
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target < wanted:
        log(f"warning: open files limited to {target} (hard limit), {wanted} wanted")
    return target


def client_context():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def client_hello():
    """The bytes a real client sends first (one TLS record holding its ClientHello)."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = client_context().wrap_bio(incoming, outgoing)
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def listen_drops():
    """The kernel's counts of connections a full listen queue turned away (TcpExt
    ListenOverflows, ListenDrops: the whole box's, not only presenced's)."""
    try:
        with open("/proc/net/netstat") as f:
            lines = [l.split() for l in f if l.startswith("TcpExt:")]
        fields = dict(zip(lines[0][1:], (int(v) for v in lines[1][1:])))
        return {k: fields.get(k, 0) for k in ("ListenOverflows", "ListenDrops")}
    except (OSError, IndexError, ValueError):
        return {}


def pct(values, p):
    """Nearest-rank percentile (None for no values)."""
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, -(-len(s) * p // 100) - 1))
    return s[int(k)]


# ---------------------------------------------------------------- the flooder (child)


def flood_main(args):
    """Holds args.flood connections from args.flood_source to the target, reopening each
    as soon as it ends, for args.duration seconds; prints one JSON line of counts."""
    raise_nofile(args.flood + 256)
    host, port = args.target.rsplit(":", 1)
    target = (host, int(port))
    payload = client_hello()[: args.partial_bytes] if args.mode == "partial" else b""
    parent = os.getppid()
    sel = selectors.DefaultSelector()
    c = {
        "attempted": 0,          # connect() calls
        "established": 0,        # connects that completed
        "connect_failed": {},    # errno name -> count (at connect() or after it)
        "closed_eof": 0,         # server closed (FIN)
        "closed_rst": 0,         # server reset (RST)
        "server_bytes": 0,       # anything the server sent (a TLS alert, say)
        "lifetime": {"<0.1s": 0, "0.1-1s": 0, "1-4s": 0, ">=4s": 0},
        "max_lifetime_s": 0.0,
        "slow_connects": 0,      # connects that took 1 s or more (SYN retransmitted)
        "max_connect_s": 0.0,
    }
    per_second = []              # [attempted, established, closed] per second
    retry = []                   # times at which to open a replacement (after a local error)
    state = {}                   # socket -> (phase, started, established_at)

    def bump(key, name):
        c[key][name] = c[key].get(name, 0) + 1

    def tick(i):
        sec = int(time.monotonic() - t0)
        while len(per_second) <= sec:
            per_second.append([0, 0, 0])
        per_second[sec][i] += 1

    def open_one():
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        try:
            s.setsockopt(socket.SOL_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        except OSError:
            pass
        try:
            s.bind((args.flood_source, 0))
            err = s.connect_ex(target)
        except OSError as e:
            err = e.errno
        c["attempted"] += 1
        tick(0)
        if err not in (0, errno.EINPROGRESS):
            bump("connect_failed", errno.errorcode.get(err, str(err)))
            s.close()
            retry.append(time.monotonic() + 0.01)
            return
        state[s] = ("connecting", time.monotonic(), None)
        sel.register(s, selectors.EVENT_WRITE)

    def finish(s, reopen=True):
        sel.unregister(s)
        del state[s]
        s.close()
        if reopen:
            open_one()

    t0 = time.monotonic()
    for _ in range(args.flood):
        open_one()
    print("ready", flush=True)
    end = t0 + args.duration
    while True:
        now = time.monotonic()
        if now >= end or os.getppid() != parent:
            break
        while retry and retry[0] <= now:
            retry.pop(0)
            open_one()
        for key, _ in sel.select(timeout=0.05):
            s = key.fileobj
            phase, started, est = state[s]
            now = time.monotonic()
            if phase == "connecting":
                err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                took = now - started
                c["max_connect_s"] = max(c["max_connect_s"], took)
                if err:
                    bump("connect_failed", errno.errorcode.get(err, str(err)))
                    finish(s)
                    continue
                if took >= 1.0:
                    c["slow_connects"] += 1
                c["established"] += 1
                tick(1)
                if payload:
                    try:
                        s.send(payload)
                    except OSError:
                        pass
                state[s] = ("open", started, now)
                sel.modify(s, selectors.EVENT_READ)
                continue
            try:
                data = s.recv(65536)
            except (ConnectionResetError, BrokenPipeError):
                data, how = None, "closed_rst"
            except BlockingIOError:
                continue
            else:
                how = "closed_eof"
            if data:
                c["server_bytes"] += len(data)
                continue
            c[how] += 1
            tick(2)
            life = now - est
            c["max_lifetime_s"] = max(c["max_lifetime_s"], life)
            bucket = ("<0.1s" if life < 0.1 else "0.1-1s" if life < 1 else
                      "1-4s" if life < 4 else ">=4s")
            c["lifetime"][bucket] += 1
            finish(s)
    elapsed = time.monotonic() - t0
    c["open_at_end"] = sum(1 for p, _, _ in state.values() if p == "open")
    c["connecting_at_end"] = sum(1 for p, _, _ in state.values() if p == "connecting")
    for s in list(state):
        finish(s, reopen=False)
    c["elapsed_s"] = elapsed
    ru = resource.getrusage(resource.RUSAGE_SELF)
    c["cpu_s"] = ru.ru_utime + ru.ru_stime
    c["per_second"] = per_second
    print(json.dumps(c), flush=True)


# ---------------------------------------------------------------- the measured client


class Client(threading.Thread):
    """One full TLS handshake and one OPTIONS every `interval` seconds from 127.0.0.1."""

    def __init__(self, target, interval, duration, timeout):
        super().__init__(daemon=True)
        self.target, self.interval, self.duration, self.timeout = target, interval, duration, timeout
        self.ctx = client_context()
        self.attempted = 0
        self.succeeded = 0
        self.connect_ms, self.handshake_ms, self.options_ms = [], [], []
        self.failures = {}       # "stage: error" -> count
        self.versions = set()

    def fail(self, stage, e):
        key = f"{stage}: {type(e).__name__}: {e}"[:160]
        self.failures[key] = self.failures.get(key, 0) + 1

    def once(self, n):
        stage = "connect"
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        tls = None
        try:
            raw.settimeout(self.timeout)
            raw.bind(("127.0.0.1", 0))
            t0 = time.perf_counter()
            raw.connect(self.target)
            t1 = time.perf_counter()
            stage = "handshake"
            tls = self.ctx.wrap_socket(raw, do_handshake_on_connect=False)
            tls.do_handshake()
            t2 = time.perf_counter()
            self.versions.add(tls.version())
            stage = "options"
            port = tls.getsockname()[1]
            tls.sendall((
                "OPTIONS sip:presence@127.0.0.1 SIP/2.0\r\n"
                f"Via: SIP/2.0/TLS 127.0.0.1:{port};branch=z9hG4bK-tlsflood-{n};rport\r\n"
                "Max-Forwards: 70\r\n"
                f"From: <sip:bench@127.0.0.1>;tag=tf{n}\r\n"
                "To: <sip:presence@127.0.0.1>\r\n"
                f"Call-ID: tlsflood-{n}@127.0.0.1\r\n"
                "CSeq: 1 OPTIONS\r\n"
                "Content-Length: 0\r\n\r\n").encode())
            buf = b""
            while b"\r\n\r\n" not in buf:
                chunk = tls.recv(65536)
                if not chunk:
                    raise ConnectionError(f"closed after {len(buf)} bytes")
                buf += chunk
            head, body = buf.split(b"\r\n\r\n", 1)
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() in (b"content-length", b"l"):
                    length = int(value.strip())
            while len(body) < length:
                chunk = tls.recv(65536)
                if not chunk:
                    raise ConnectionError("closed inside the body")
                body += chunk
            t3 = time.perf_counter()
            status = head.split(b"\r\n", 1)[0].decode(errors="replace")
            if not status.startswith("SIP/2.0 200"):
                raise ValueError(f"answered {status!r}")
        except Exception as e:  # noqa: BLE001 (every failure is a figure)
            self.fail(stage, e)
            return
        finally:
            (tls or raw).close()
        self.succeeded += 1
        self.connect_ms.append((t1 - t0) * 1000)
        self.handshake_ms.append((t2 - t0) * 1000)
        self.options_ms.append((t3 - t2) * 1000)

    def run(self):
        start = time.monotonic()
        end = start + self.duration
        next_at = start
        while True:
            now = time.monotonic()
            if now >= end:
                return
            if next_at > now:
                time.sleep(next_at - now)
            self.attempted += 1
            self.once(self.attempted)
            # A late attempt does not make the next ones bunch up.
            next_at = max(next_at + self.interval, time.monotonic())


# ---------------------------------------------------------------- presenced


class Daemon:
    def __init__(self, binary, work, extra_config):
        self.work = work
        cert, key = os.path.join(work, "cert.pem"), os.path.join(work, "key.pem")
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
             "-keyout", key, "-out", cert],
            check=True, capture_output=True, timeout=60)
        cfg = os.path.join(work, "presenced.toml")
        with open(cfg, "w") as f:
            f.write(f'tls_certificate = "{cert}"\ntls_private_key = "{key}"\n')
            for line in extra_config:
                f.write(line + "\n")
        self.log_path = os.path.join(work, "presenced.log")
        self.log_file = open(self.log_path, "w")
        env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "info"))
        self.proc = subprocess.Popen(
            [binary, "run", "--db", os.path.join(work, "db"), "--config", cfg,
             "--listen", "udp:127.0.0.1:0", "--listen", "tls:127.0.0.1:0"],
            stdout=self.log_file, stderr=subprocess.STDOUT, env=env)
        self.pid = self.proc.pid
        self.tls = None
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and self.proc.poll() is None:
            for line in self.text().splitlines():
                if "presenced listening on" in line:
                    for addr in line.split("listening on", 1)[1].split(","):
                        kind, host, port = addr.strip().rsplit(":", 2)
                        if kind == "tls":
                            self.tls = (host, int(port))
            if self.tls:
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"presenced did not start; its log:\n{self.text()}")

    def text(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def status(self):
        with open(f"/proc/{self.pid}/status") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
        return int(fields["VmRSS"].split()[0])

    def fds(self):
        try:
            return len(os.listdir(f"/proc/{self.pid}/fd"))
        except OSError:
            return None

    def cpu_s(self):
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def stop(self):
        """SIGTERM, SIGKILL after 10 s. Safe to call twice."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if not self.log_file.closed:
            self.log_file.close()


class Sampler(threading.Thread):
    """VmRSS and open descriptors of presenced, and the kernel's listen queue overflows,
    every `period` seconds."""

    def __init__(self, daemon, period=0.5):
        super().__init__(daemon=True)
        self.d, self.period = daemon, period
        self.rss, self.fds, self.overflows = [], [], []
        self.halt = threading.Event()

    def run(self):
        start = time.monotonic()
        while not self.halt.is_set():
            try:
                self.rss.append(self.d.status())
                self.fds.append(self.d.fds())
            except (OSError, KeyError):
                return
            self.overflows.append((round(time.monotonic() - start, 2),
                                   listen_drops().get("ListenOverflows", 0)))
            self.halt.wait(self.period)


# ---------------------------------------------------------------- the run


def run(args):
    raise_nofile(args.flood + 1024)
    work = tempfile.mkdtemp(prefix="presenced-tlsflood.")
    daemon = flooder = None
    try:
        daemon = Daemon(args.bin, work, args.config)
        log(f"presenced pid {daemon.pid}, tls {daemon.tls[0]}:{daemon.tls[1]}, work {work}")
        # One handshake that must work before anything is measured.
        warm = Client(daemon.tls, args.interval, 0, 5)
        warm.once(0)
        if warm.failures:
            raise RuntimeError(f"the first handshake failed: {warm.failures}")
        time.sleep(1)
        rss_before, fds_before = daemon.status(), daemon.fds()
        cpu0 = daemon.cpu_s()
        drops0 = listen_drops()
        sampler = Sampler(daemon)
        sampler.start()
        t_start = time.monotonic()
        if args.flood:
            flooder = subprocess.Popen(
                [sys.executable, os.path.abspath(__file__), "--role", "flood",
                 "--target", f"{daemon.tls[0]}:{daemon.tls[1]}",
                 "--flood", str(args.flood), "--flood-source", args.flood_source,
                 "--mode", args.mode, "--partial-bytes", str(args.partial_bytes),
                 "--duration", str(args.duration)],
                stdout=subprocess.PIPE, text=True)
            ready = flooder.stdout.readline().strip()
            if ready != "ready":
                raise RuntimeError(f"the flooder did not start ({ready!r})")
        client = Client(daemon.tls, args.interval, args.duration, args.timeout)
        client.start()
        client.join(args.duration + args.timeout + 5)
        flood = None
        if flooder:
            try:
                left = args.duration + 10 - (time.monotonic() - t_start)
                out, _ = flooder.communicate(timeout=max(5.0, left))
                flood = json.loads(out.strip().splitlines()[-1])
            except (subprocess.TimeoutExpired, ValueError, IndexError) as e:
                raise RuntimeError(f"the flooder gave no figures: {e}")
        t_end = time.monotonic()
        cpu1 = daemon.cpu_s()
        drops1 = listen_drops()
        load = os.getloadavg()
        sampler.halt.set()
        sampler.join(2)
        rss_peak = max(sampler.rss + [rss_before])
        fds_peak = max([f for f in sampler.fds if f is not None] + [fds_before])
        # Overflows once the flood's first burst of connects is over.
        later = [n for t, n in sampler.overflows if t >= 2.0]
        overflows_after_2s = later[-1] - later[0] if len(later) > 1 else None
        time.sleep(args.settle)
        rss_after, fds_after = daemon.status(), daemon.fds()
        cpu2 = daemon.cpu_s()
        alive = daemon.proc.poll() is None
        daemon.stop()
        text = daemon.text()
        # "tls: handshake with ADDR failed: WHY", by WHY (the flooder's own closes at
        # its end show up as "tls handshake eof").
        handshake_failures = {}
        for line in text.splitlines():
            if "handshake with" in line and "failed: " in line:
                why = line.split("failed: ", 1)[1].strip()
                handshake_failures[why] = handshake_failures.get(why, 0) + 1
        res = {
            "command": " ".join(["python3", os.path.relpath(os.path.abspath(__file__), ROOT)] + sys.argv[1:]),
            "flood": args.flood, "mode": args.mode if args.flood else None,
            "duration_s": args.duration, "window_s": t_end - t_start,
            "client": {
                "attempted": client.attempted, "succeeded": client.succeeded,
                "failures": client.failures, "tls_versions": sorted(client.versions),
                "connects_over_1s": sum(1 for ms in client.connect_ms if ms >= 1000),
                "connect_ms": summary(client.connect_ms),
                "handshake_ms": summary(client.handshake_ms),
                "options_ms": summary(client.options_ms),
            },
            "flooder": flood,
            "server": {
                "alive_at_end": alive,
                "rss_kib": {"before": rss_before, "peak": rss_peak, "after": rss_after},
                "fds": {"before": fds_before, "peak": fds_peak, "after": fds_after},
                "cpu_s": {"window": cpu1 - cpu0, "settle": cpu2 - cpu1},
                "handshake_failures_logged": handshake_failures,
                "listen_queue": {k: drops1[k] - drops0.get(k, 0) for k in drops1},
                "listen_overflows_after_2s": overflows_after_2s,
                "listen_overflows_series": [(t, n - drops0.get("ListenOverflows", 0))
                                            for t, n in sampler.overflows],
                "loadavg_at_end": load,
                "warnings_logged": sum(1 for l in text.splitlines() if " WARN " in l or " ERROR " in l),
            },
        }
        return res, work
    finally:
        if flooder and flooder.poll() is None:
            flooder.kill()
            flooder.wait(timeout=10)
        if daemon:
            daemon.stop()
            if args.keep:
                log(f"kept {work} (presenced.log inside)")
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def summary(ms):
    return {"n": len(ms), "p50": pct(ms, 50), "p99": pct(ms, 99),
            "max": max(ms) if ms else None}


def fmt_ms(s):
    if not s["n"]:
        return "no samples"
    return f"p50 {s['p50']:.2f} / p99 {s['p99']:.2f} / max {s['max']:.2f} ms (n={s['n']})"


def report(r):
    c, s, f = r["client"], r["server"], r["flooder"]
    w = r["window_s"]
    lines = [f"$ {r['command']}"]
    if f:
        held = f["lifetime"]
        closed = f["closed_eof"] + f["closed_rst"]
        lines += [
            f"flood: {r['flood']} connections ({r['mode']}) from one source for {f['elapsed_s']:.1f} s",
            f"  connects attempted {f['attempted']:,} ({f['attempted'] / f['elapsed_s']:,.0f}/s), "
            f"established {f['established']:,} ({f['established'] / f['elapsed_s']:,.0f}/s), "
            f"failed {sum(f['connect_failed'].values()):,} {f['connect_failed'] or ''}",
            f"  closed by the server {closed:,} ({closed / f['elapsed_s']:,.0f}/s; "
            f"FIN {f['closed_eof']:,}, RST {f['closed_rst']:,}), "
            f"lived <0.1 s {held['<0.1s']:,}, 0.1-1 s {held['0.1-1s']:,}, 1-4 s {held['1-4s']:,}, "
            f">=4 s {held['>=4s']:,} (longest {f['max_lifetime_s']:.2f} s)",
            f"  connects taking >= 1 s {f['slow_connects']:,} (longest {f['max_connect_s']:.2f} s); "
            f"open at the end {f['open_at_end']}, still connecting {f['connecting_at_end']}; "
            f"bytes from the server {f['server_bytes']}; flooder CPU {f['cpu_s']:.1f} s",
        ]
    else:
        lines.append("flood: none (baseline)")
    lines += [
        f"client (127.0.0.1, every {r.get('interval', 0.2)} s): {c['succeeded']}/{c['attempted']} "
        f"handshake + OPTIONS succeeded; failures: {c['failures'] or 'none'}; {', '.join(c['tls_versions'])}",
        f"  TCP connect   {fmt_ms(c['connect_ms'])}; {c['connects_over_1s']} took >= 1 s",
        f"  handshake     {fmt_ms(c['handshake_ms'])}  (connect + TLS)",
        f"  OPTIONS → 200 {fmt_ms(c['options_ms'])}",
        f"presenced: RSS {s['rss_kib']['before'] / 1024:.1f} MiB before, {s['rss_kib']['peak'] / 1024:.1f} "
        f"peak during, {s['rss_kib']['after'] / 1024:.1f} {r['settle_s']:g} s after; descriptors "
        f"{s['fds']['before']} / {s['fds']['peak']} / {s['fds']['after']}",
        f"  CPU {s['cpu_s']['window']:.2f} s in the {w:.1f} s window ({100 * s['cpu_s']['window'] / w:.0f} % "
        f"of a core), {s['cpu_s']['settle']:.2f} s in the settle; running at the end: {s['alive_at_end']}",
        f"  kernel: listen queue overflows {s['listen_queue'].get('ListenOverflows')}, "
        f"drops {s['listen_queue'].get('ListenDrops')} (box-wide), overflows after the first 2 s "
        f"{s['listen_overflows_after_2s']}; load average at the end "
        f"{' '.join(f'{x:.2f}' for x in s['loadavg_at_end'])}",
        f"  handshake failures logged: {s['handshake_failures_logged'] or 'none'}; "
        f"warnings/errors logged: {s['warnings_logged']}",
    ]
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "presenced"))
    p.add_argument("--duration", type=float, default=20.0, help="seconds of flood and client (20)")
    p.add_argument("--flood", type=int, default=500, help="flood connections held at once; 0: baseline")
    p.add_argument("--mode", choices=("silent", "partial"), default="silent",
                   help="silent: send nothing; partial: the first --partial-bytes of a ClientHello")
    p.add_argument("--partial-bytes", type=int, default=10)
    p.add_argument("--flood-source", default="127.0.0.2")
    p.add_argument("--interval", type=float, default=0.2, help="seconds between client attempts")
    p.add_argument("--timeout", type=float, default=10.0, help="bound on each client step (s)")
    p.add_argument("--settle", type=float, default=5.0, help="seconds after the flood before RSS")
    p.add_argument("--config", action="append", default=[], metavar="LINE",
                   help="a line added to presenced's configuration (repeatable)")
    p.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    p.add_argument("--keep", action="store_true", help="keep the work directory and the log")
    p.add_argument("--role", choices=("main", "flood"), default="main", help=argparse.SUPPRESS)
    p.add_argument("--target", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.role == "flood":
        flood_main(args)
        return 0
    # SIGTERM/SIGINT end the run through the finally blocks, which stop presenced.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if not os.access(args.bin, os.X_OK):
        log(f"{args.bin}: not an executable (cargo build --release)")
        return 2
    res, _ = run(args)
    res["interval"], res["settle_s"] = args.interval, args.settle
    print(report(res))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    ok = not res["client"]["failures"] and res["server"]["alive_at_end"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
