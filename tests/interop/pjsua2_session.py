"""What the pjsua2 interop scripts share: one pjsua2 endpoint on 127.0.0.1 whose accounts
use presenced as their outbound proxy (no registrar), and the step runner that prints the
"ok   STEP" / "FAIL STEP; last seen: ..." lines tests/interop/lib.sh counts.

Everything runs on the calling thread (threadCnt 0, mainThreadOnly): callbacks fire only
inside pump() and expect(), so the scripts need no locks. Every wait is bounded by the
run's deadline.
"""

import time

import pjsua2 as pj


def add_arguments(ap):
    """The arguments every pjsua2 script takes."""
    ap.add_argument("--port", type=int, required=True, help="presenced's port on 127.0.0.1")
    ap.add_argument("--transport", choices=["udp", "tcp", "tls"], default="udp")
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds for the whole run")
    ap.add_argument("--log", default="pjsua2.log", help="pjsip log file")


class Quiet(pj.Account):
    """An account with no callbacks of interest (no calls, no IM)."""


class Session:
    """One pjsua2 endpoint, its deadline and the steps that failed so far."""

    def __init__(self, args, label):
        self.label = label
        self.deadline = time.monotonic() + args.timeout
        self.failures = []
        self.password = None
        self.proxy = f"sip:127.0.0.1:{args.port};lr;transport={args.transport}"
        ep = pj.Endpoint()
        ep.libCreate()
        cfg = pj.EpConfig()
        cfg.uaConfig.threadCnt = 0
        cfg.uaConfig.mainThreadOnly = True
        cfg.logConfig.level = 5
        cfg.logConfig.consoleLevel = 0
        cfg.logConfig.filename = args.log
        ep.libInit(cfg)
        tcfg = pj.TransportConfig()
        tcfg.boundAddress = "127.0.0.1"
        tcfg.publicAddress = "127.0.0.1"
        tcfg.port = 0
        kind = {
            "udp": pj.PJSIP_TRANSPORT_UDP,
            "tcp": pj.PJSIP_TRANSPORT_TCP,
            "tls": pj.PJSIP_TRANSPORT_TLS,
        }[args.transport]
        if args.transport == "tls":
            # A client of presenced's test certificate: not checked (self-signed); pjsip's
            # bundled OpenSSL speaks TLS 1.2 at most, which presenced must accept.
            tcfg.tlsConfig.verifyServer = False
            tcfg.tlsConfig.verifyClient = False
        ep.transportCreate(kind, tcfg)
        ep.libStart()
        ep.audDevManager().setNullDev()
        self.ep = ep

    def pump(self, seconds):
        """Runs pjsip's events for this long (never past the deadline)."""
        end = min(time.monotonic() + seconds, self.deadline)
        while time.monotonic() < end:
            self.ep.libHandleEvents(20)

    def account(self, uri, publish, headers=()):
        """An account for uri, presenced as its proxy; headers (name, value) go on its
        SUBSCRIBEs and PUBLISHes."""
        acfg = pj.AccountConfig()
        acfg.idUri = uri
        acfg.regConfig.registrarUri = ""
        acfg.regConfig.registerOnAdd = False
        acfg.sipConfig.proxies.append(self.proxy)
        acfg.presConfig.publishEnabled = publish
        for name, value in headers:
            h = pj.SipHeader()
            h.hName = name
            h.hValue = value
            acfg.presConfig.headers.append(h)
        if self.password is not None:
            user = uri.split(":", 1)[1].split("@", 1)[0]
            # Realm "*": answer whatever realm presenced challenges with.
            acfg.sipConfig.authCreds.append(
                pj.AuthCredInfo("digest", "*", user, 0, self.password))
        acc = Quiet()
        acc.create(acfg)
        return acc

    def expect(self, step, pred, describe):
        """Pumps events until pred() holds (prints ok) or the deadline (prints FAIL with
        describe()); returns whether it held."""
        while time.monotonic() < self.deadline:
            if pred():
                print(f"ok   {self.label}: {step}")
                return True
            self.ep.libHandleEvents(20)
        print(f"FAIL {self.label}: {step}; last seen: {describe()}")
        self.failures.append(step)
        return False

    def fail(self, why):
        print(f"FAIL {self.label}: {why}")
        self.failures.append(why)

    def destroy(self):
        self.ep.libDestroy()


def status(online, note):
    """A pjsua presence status: online or offline, with a note."""
    ps = pj.PresenceStatus()
    ps.status = pj.PJSUA_BUDDY_STATUS_ONLINE if online else pj.PJSUA_BUDDY_STATUS_OFFLINE
    ps.activity = pj.PJRPID_ACTIVITY_UNKNOWN
    ps.note = note
    return ps


def subscribed_as(log, target, watcher):
    """True when pjsip's message log shows a SUBSCRIBE for target sent from watcher."""
    try:
        lines = open(log, encoding="utf-8", errors="replace").read().splitlines()
    except OSError:
        return False
    for n, line in enumerate(lines):
        if line.startswith(f"SUBSCRIBE {target} SIP/2.0"):
            for header in lines[n + 1:n + 15]:
                if header.lower().startswith("from:"):
                    if watcher in header:
                        return True
                    break
    return False
