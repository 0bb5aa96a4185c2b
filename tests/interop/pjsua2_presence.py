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

import pjsua2 as pj
from pjsua2_session import Session, add_arguments, status, subscribed_as


class Watched(pj.Buddy):
    """A buddy whose state changes are only read by polling getInfo()."""

    def onBuddyState(self):
        pass

    def onBuddyEvSubState(self, prm):
        pass


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(ap)
    ap.add_argument("--tag", help="names the accounts pj-pub-TAG and pj-watch-TAG "
                    "(default: PID-TRANSPORT)")
    ap.add_argument("--password", help="digest password of both accounts (presenced runs "
                    "auth = digest); read from the environment variable it names")
    args = ap.parse_args()
    password = os.environ.get(args.password) if args.password else None

    tag = args.tag or f"{os.getpid()}-{args.transport}"
    label = f"pjsua2-{'digest-' if password else ''}{args.transport}"
    pub_uri = f"sip:pj-pub-{tag}@example.com"
    watch_uri = f"sip:pj-watch-{tag}@example.com"
    s = Session(args, label)
    s.password = password

    buddy = None
    try:
        # pjsua picks the account of a buddy's SUBSCRIBE by the buddy's domain, and both
        # accounts share example.com: the watcher exists alone when it subscribes, so the
        # SUBSCRIBE is its own (checked in the log at the end).
        watcher = s.account(watch_uri, publish=False)
        bcfg = pj.BuddyConfig()
        bcfg.uri = pub_uri
        bcfg.subscribe = True
        buddy = Watched()
        buddy.create(watcher, bcfg)
        note1, note2, note3 = (f"pjsua2 {n} {tag}" for n in ("first", "second", "third"))
        publisher = None

        def start_publishing():
            nonlocal publisher
            publisher = s.account(pub_uri, publish=True)
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
            if not s.expect(step, pred, seen):
                break
        watcher.shutdown()
        s.pump(0.3)
    except pj.Error as e:
        s.fail(f"pjsua2 error {e.info()}")
    finally:
        buddy = None
        s.destroy()
    if not subscribed_as(args.log, pub_uri, watch_uri):
        s.fail(f"no SUBSCRIBE for {pub_uri} from {watch_uri} in {args.log}")
    return 1 if s.failures else 0


if __name__ == "__main__":
    sys.exit(main())
