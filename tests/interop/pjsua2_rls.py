#!/usr/bin/env python3
"""pjsua2 subscribing to a buddy list (RFC 4662) at presenced, its members publishing
with pjsua2 too.

Why it exists: a softphone built on pjsip subscribes to its owner's list URI once instead
of once per buddy. pjsip carries the list subscription (the SUBSCRIBE with
`Supported: eventlist`, the dialog, every NOTIFY answered, refreshes, the unsubscribe),
but its presence code reads only the first PIDF part of a list NOTIFY and knows nothing
of RLMI. So, as a pjsip application would, this script takes each NOTIFY pjsip received
on the list subscription (the buddy's event callback carries the whole message) and reads
the RLMI document and its parts with rlmi_check.read: version, fullState, each member's
instance state and PIDF.

The list (LIST, owned by OWNER, members M1 M2 M3) is made over XCAP beforehand. Steps,
each with a deadline, the whole run bounded by --timeout:
  the list subscription is active; its first NOTIFY is full state naming the three
  members; then, one at a time, a member's change must show in the list: m1 online with
  a note, m2 online with a note, m1's note changes (m2 still shown as before), m1
  offline, m3 online, m2 unpublishes (pjsua removes its publication); finally the
  watcher unsubscribes and the subscription ends. At the end every NOTIFY must have
  parsed, with versions 0, 1, 2, ..., fullState on the first and on the one answering
  the unsubscribe, partial state in between.
Prints "ok   STEP" / "FAIL STEP; ..." lines; exit 0 when every step held, 1 otherwise.
"""

import argparse
import os
import sys
import xml.etree.ElementTree as ET

import pjsua2 as pj
from pjsua2_session import Session, add_arguments, status, subscribed_as
from rlmi_check import PIDF, read

ACCEPT = "multipart/related, application/rlmi+xml, application/pidf+xml"


class ListBuddy(pj.Buddy):
    """The list URI as a pjsua2 buddy: each NOTIFY pjsip took in on its subscription is
    read as RLMI, and the members' latest states are kept."""

    def __init__(self, list_uri):
        pj.Buddy.__init__(self)
        self.list_uri = list_uri
        self.versions = []
        self.full = []
        self.members = {}
        self.errors = []
        self.cseqs = set()
        # fullState of the NOTIFY that ended the subscription (None: none seen yet).
        self.final_full = None

    def onBuddyState(self):
        pass

    def onBuddyEvSubState(self, prm):
        e = prm.e
        if e.type != pj.PJSIP_EVENT_TSX_STATE:
            return
        ts = e.body.tsxState
        if ts.type != pj.PJSIP_EVENT_RX_MSG:
            return
        msg = ts.src.rdata.wholeMsg
        if not msg.startswith("NOTIFY "):
            return
        head = msg.split("\r\n\r\n", 1)[0].lower()
        cseq = next((line for line in head.split("\r\n") if line.startswith("cseq:")), "")
        if cseq in self.cseqs:
            return  # a retransmission pjsip passed on again: already read
        self.cseqs.add(cseq)
        if "\r\ncontent-type:" not in head and "\r\nc:" not in head:
            return  # the final NOTIFY of an ended subscription may carry no body
        try:
            version, full, resources = read(msg, self.list_uri)
        except (ValueError, ET.ParseError, AttributeError, TypeError) as err:
            self.errors.append(f"NOTIFY {len(self.versions)}: {err}")
            return
        self.versions.append(version)
        self.full.append(full)
        state = next((line for line in head.split("\r\n")
                      if line.startswith("subscription-state:")), "")
        if "terminated" in state:
            self.final_full = full
        if full:
            self.members = {}
        self.members.update(resources)


def shown(doc):
    """(basic, notes) of a member's PIDF: basic of its first tuple (None without one) and
    every note anywhere in it."""
    if doc is None:
        return None, []
    basic = doc.find(f"{PIDF}tuple/{PIDF}status/{PIDF}basic")
    notes = [n.text or "" for n in doc.iter(f"{PIDF}note")]
    return (basic.text if basic is not None else None), notes


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(ap)
    ap.add_argument("--list", required=True, help="the list's service URI")
    ap.add_argument("--owner", required=True, help="the list's owner, who subscribes")
    ap.add_argument("members", nargs=3, help="the list's three members")
    args = ap.parse_args()
    label = f"pjsua2-rls-{args.transport}"
    tag = f"{os.getpid()}-{args.transport}"
    s = Session(args, label)
    m1, m2, m3 = args.members
    buddy = None
    try:
        # The owner's account exists alone when the buddy is made: pjsua picks a buddy's
        # account by domain, and the members share it.
        owner = s.account(args.owner, publish=False,
                          headers=[("Supported", "eventlist"), ("Accept", ACCEPT)])
        bcfg = pj.BuddyConfig()
        bcfg.uri = args.list
        bcfg.subscribe = True
        buddy = ListBuddy(args.list)
        buddy.create(owner, bcfg)
        publishers = {}

        def publish(member, online, note):
            def act():
                if member not in publishers:
                    publishers[member] = s.account(member, publish=True)
                publishers[member].setOnlineStatus(status(online, note))
            return act

        def unpublish(member):
            def act():
                publishers.pop(member).shutdown()
            return act

        def shows(member, basic, note=None):
            def pred():
                state, doc = buddy.members.get(member, (None, None))
                b, notes = shown(doc)
                return state == "active" and b == basic and (note is None or note in notes)
            return pred

        def both(*preds):
            return lambda: all(p() for p in preds)

        def seen():
            return {u: (st, *shown(d)) for u, (st, d) in buddy.members.items()}

        n = {k: f"{k} {tag}" for k in ("m1 first", "m2 first", "m1 second", "m3 first")}
        steps = [
            ("list subscription is active", lambda: None,
             lambda: buddy.getInfo().subState == pj.PJSIP_EVSUB_STATE_ACTIVE),
            ("first list NOTIFY is full state naming the three members", lambda: None,
             lambda: bool(buddy.full) and buddy.full[0]
             and sorted(buddy.members) == sorted(args.members)),
            ("m1 shows online with its note", publish(m1, True, n["m1 first"]),
             shows(m1, "open", n["m1 first"])),
            ("m2 shows online with its note", publish(m2, True, n["m2 first"]),
             shows(m2, "open", n["m2 first"])),
            ("m1's note change shows, m2 as before", publish(m1, True, n["m1 second"]),
             both(shows(m1, "open", n["m1 second"]), shows(m2, "open", n["m2 first"]))),
            ("m1 shows offline", publish(m1, False, "away"), shows(m1, "closed")),
            ("m3 shows online with its note", publish(m3, True, n["m3 first"]),
             shows(m3, "open", n["m3 first"])),
            ("m2's unpublish shows (no longer online)", unpublish(m2),
             lambda: shown(buddy.members.get(m2, (None, None))[1])[0] != "open"
             and n["m2 first"] not in shown(buddy.members.get(m2, (None, None))[1])[1]),
            ("unsubscribing ends the list subscription", lambda: buddy.subscribePresence(False),
             lambda: buddy.getInfo().subState in (pj.PJSIP_EVSUB_STATE_TERMINATED,
                                                  pj.PJSIP_EVSUB_STATE_NULL)),
        ]
        for step, act, pred in steps:
            act()
            if not s.expect(step, pred, seen):
                break
        for acc in list(publishers.values()) + [owner]:
            acc.shutdown()
        s.pump(0.3)
        if buddy.errors:
            s.fail(f"list NOTIFYs that did not parse: {buddy.errors}")
        elif buddy.versions != list(range(len(buddy.versions))) or len(buddy.versions) < 7:
            s.fail(f"RLMI versions {buddy.versions}, expected 0, 1, 2, ... (at least 7)")
        elif (buddy.full[0] is not True or any(buddy.full[1:-1])
              or buddy.final_full is not True or buddy.full[-1] is not True):
            # The last NOTIFY answers the unsubscribe, a SUBSCRIBE: full state there too
            # (RFC 4662 §5.2, like a refresh's), and it says terminated.
            s.fail(f"fullState {buddy.full} (terminated one: {buddy.final_full}), expected "
                   "true on the first NOTIFY and on the unsubscribe's only")
        else:
            print(f"ok   {label}: {len(buddy.versions)} list NOTIFYs parsed, versions "
                  "consecutive from 0, full state first, partial for each change")
    except pj.Error as e:
        s.fail(f"pjsua2 error {e.info()}")
    finally:
        buddy = None
        s.destroy()
    if not subscribed_as(args.log, args.list, args.owner):
        s.fail(f"no SUBSCRIBE for {args.list} from {args.owner} in {args.log}")
    return 1 if s.failures else 0


if __name__ == "__main__":
    sys.exit(main())
