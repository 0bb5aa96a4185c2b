#!/usr/bin/env python3
"""pjsua2 (pjsip's own SIMPLE stack) against presenced: presence end to end.

Why it exists: pjsip is what many softphones embed, so its PUBLISH (RFC 3903 with PIDF +
RPID bodies) and its buddy SUBSCRIBE (RFC 6665) must work through presenced unchanged.
Nothing here talks to anything but presenced on 127.0.0.1: no registrar, presenced is the
outbound proxy of both accounts.

One endpoint holds two accounts: the publisher sip:pj-pub-PID@example.com publishes its
status, the watcher sip:pj-watch-PID@example.com has it as a buddy with subscribe on. The
watcher must see, in order: online with note 1; online with note 2 (a PUBLISH modify);
offline (status set offline); online with note 3; offline again when the publisher's
account is deleted (pjsua removes its publication, PUBLISH Expires: 0); and finally its own
subscription terminated after it unsubscribes. Each step has a deadline; the whole run is
bounded by --timeout. Exit 0 when every step was seen, 1 otherwise (the failing step is
printed, pjsip's log is in --log).
"""

import argparse
import os
import sys
import time

import pjsua2 as pj


class Watched(pj.Buddy):
    """A buddy whose state changes are only read by polling getInfo()."""

    def onBuddyState(self):
        pass

    def onBuddyEvSubState(self, prm):
        pass


class Quiet(pj.Account):
    """An account with no callbacks of interest (no calls, no IM)."""


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True, help="presenced's port on 127.0.0.1")
    ap.add_argument("--transport", choices=["udp", "tcp", "tls"], default="udp")
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds for the whole run")
    ap.add_argument("--log", default="pjsua2.log", help="pjsip log file")
    ap.add_argument("--tag", help="names the accounts pj-pub-TAG and pj-watch-TAG "
                    "(default: PID-TRANSPORT)")
    ap.add_argument("--password", help="digest password of both accounts (presenced runs "
                    "auth = digest); read from the environment variable it names")
    args = ap.parse_args()
    password = os.environ.get(args.password) if args.password else None

    deadline = time.monotonic() + args.timeout
    tag = args.tag or f"{os.getpid()}-{args.transport}"
    label = f"pjsua2-{'digest-' if password else ''}{args.transport}"
    pub_uri = f"sip:pj-pub-{tag}@example.com"
    watch_uri = f"sip:pj-watch-{tag}@example.com"
    proxy = f"sip:127.0.0.1:{args.port};lr;transport={args.transport}"

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

    def pump(seconds):
        end = min(time.monotonic() + seconds, deadline)
        while time.monotonic() < end:
            ep.libHandleEvents(20)

    def account(uri, publish):
        acfg = pj.AccountConfig()
        acfg.idUri = uri
        acfg.regConfig.registrarUri = ""
        acfg.regConfig.registerOnAdd = False
        acfg.sipConfig.proxies.append(proxy)
        acfg.presConfig.publishEnabled = publish
        if password is not None:
            user = uri.split(":", 1)[1].split("@", 1)[0]
            # Realm "*": answer whatever realm presenced challenges with.
            acfg.sipConfig.authCreds.append(pj.AuthCredInfo("digest", "*", user, 0, password))
        acc = Quiet()
        acc.create(acfg)
        return acc

    def status(online, note):
        ps = pj.PresenceStatus()
        ps.status = pj.PJSUA_BUDDY_STATUS_ONLINE if online else pj.PJSUA_BUDDY_STATUS_OFFLINE
        ps.activity = pj.PJRPID_ACTIVITY_UNKNOWN
        ps.note = note
        return ps

    failures = []

    def expect(step, pred, describe):
        while time.monotonic() < deadline:
            if pred():
                print(f"ok   {label}: {step}")
                return True
            ep.libHandleEvents(20)
        print(f"FAIL {label}: {step}; last seen: {describe()}")
        failures.append(step)
        return False

    buddy = None
    try:
        # pjsua picks the account of a buddy's SUBSCRIBE by the buddy's domain, and both
        # accounts share example.com: the watcher exists alone when it subscribes, so the
        # SUBSCRIBE is its own (checked in the log at the end).
        watcher = account(watch_uri, publish=False)
        bcfg = pj.BuddyConfig()
        bcfg.uri = pub_uri
        bcfg.subscribe = True
        buddy = Watched()
        buddy.create(watcher, bcfg)
        note1, note2, note3 = (f"pjsua2 {n} {tag}" for n in ("first", "second", "third"))
        publisher = None

        def start_publishing():
            nonlocal publisher
            publisher = account(pub_uri, publish=True)
            publisher.setOnlineStatus(status(True, note1))

        def info():
            return buddy.getInfo()

        def seen():
            i = info()
            return (f"status={i.presStatus.status} text={i.presStatus.statusText!r} "
                    f"note={i.presStatus.note!r} subState={i.subStateName} "
                    f"reason={i.subTermReason!r} code={i.subTermCode}")

        def shows(online, note=None):
            want = pj.PJSUA_BUDDY_STATUS_ONLINE if online else pj.PJSUA_BUDDY_STATUS_OFFLINE

            def pred():
                i = info()  # keep it alive: presStatus points into it
                ps = i.presStatus
                return ps.status == want and (note is None or ps.note == note)
            return pred

        steps = [
            ("watcher's subscription is active", lambda: None,
             lambda: info().subState == pj.PJSIP_EVSUB_STATE_ACTIVE),
            ("watcher sees offline before anything is published", lambda: None, shows(False)),
            ("watcher sees online with the first note", start_publishing, shows(True, note1)),
            ("watcher sees the note change", lambda: publisher.setOnlineStatus(status(True, note2)),
             shows(True, note2)),
            ("watcher sees offline", lambda: publisher.setOnlineStatus(status(False, "gone")),
             shows(False)),
            ("watcher sees online again with a third note",
             lambda: publisher.setOnlineStatus(status(True, note3)), shows(True, note3)),
            ("watcher sees offline when the publisher unpublishes", lambda: publisher.shutdown(),
             shows(False)),
            # pjsua drops the ended subscription at once (state NULL); the reason it keeps
            # comes from the final NOTIFY's "terminated;reason=timeout".
            ("watcher's unsubscribe ends its subscription with reason timeout",
             lambda: buddy.subscribePresence(False),
             lambda: info().subState in (pj.PJSIP_EVSUB_STATE_TERMINATED, pj.PJSIP_EVSUB_STATE_NULL)
             and info().subTermReason == "timeout"),
        ]
        for step, act, pred in steps:
            act()
            if not expect(step, pred, seen):
                break
        watcher.shutdown()
        pump(0.3)
    except pj.Error as e:
        print(f"FAIL {label}: pjsua2 error {e.info()}")
        failures.append("pjsua2 error")
    finally:
        buddy = None
        ep.libDestroy()
    if not subscribed_as(args.log, pub_uri, watch_uri):
        print(f"FAIL {label}: no SUBSCRIBE for {pub_uri} from {watch_uri} in {args.log}")
        failures.append("subscriber identity")
    return 1 if failures else 0


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


if __name__ == "__main__":
    sys.exit(main())
