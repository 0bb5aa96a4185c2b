#!/usr/bin/env python3
"""Checks the list NOTIFYs a SIPp list watcher logged (rls_watcher.xml): each one is a
multipart/related body whose first part is an RLMI document (RFC 4662 §5) and whose
other parts are the documents its instances' Content-IDs point at.

Usage: rlmi_check.py LOG LIST_URI MEMBER... -- CHANGED...
  LOG       SIPp's -log_file, with NOTIFY-BEGIN / NOTIFY-END around each NOTIFY
  LIST_URI  the service URI the RLMI documents must name
  MEMBER    the list's members, all in the first (full-state) NOTIFY, active there;
            URI=STATE expects another instance state there (a member served by another
            server is pending until its back-end subscription answers)
  CHANGED   the members that published afterwards, one partial NOTIFY each, in order

Prints "ok   NAME" / "FAIL NAME: why" lines (tests/interop/lib.sh report_checks);
exits 1 on any failure.
"""

import re
import sys
import xml.etree.ElementTree as ET

RLMI = "{urn:ietf:params:xml:ns:rlmi}"
PIDF = "{urn:ietf:params:xml:ns:pidf}"

failed = False


def check(name, ok, why=""):
    global failed
    if ok:
        print(f"ok   {name}")
    else:
        failed = True
        print(f"FAIL {name}: {why}")


def notifies(text):
    # SIPp writes the scenario's "&#10;" as it is or as a newline, depending on version.
    sep = r"(?:&#10;|\r?\n)"
    return [m.group(1) for m in re.finditer(
        rf"NOTIFY-BEGIN{sep}(.*?){sep}NOTIFY-END", text, re.S)]


def split(message):
    """(headers dict lower-case, body) of one SIP message."""
    head, _, body = message.replace("\r\n", "\n").partition("\n\n")
    headers = {}
    for line in head.split("\n")[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return headers, body


def parts(ctype, body):
    """[(headers, content)] of a multipart body, the boundary read from ctype."""
    m = re.search(r'boundary="?([^";]+)"?', ctype)
    if not m:
        raise ValueError(f"no boundary in {ctype}")
    delimiter = "--" + m.group(1)
    sections = body.split(delimiter)
    if sections[0].strip() != "":
        raise ValueError("text before the first part")
    if not sections[-1].startswith("--"):
        raise ValueError("no closing delimiter")
    out = []
    for s in sections[1:-1]:
        head, _, content = s.lstrip("\n").partition("\n\n")
        headers = {}
        for line in head.split("\n"):
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        out.append((headers, content.rstrip("\n")))
    return out


def read(message, list_uri):
    """(version, fullState, {uri: (state, document or None)}) of one list NOTIFY."""
    headers, body = split(message)
    ctype = headers.get("content-type", "")
    if not ctype.startswith("multipart/related") or "application/rlmi+xml" not in ctype:
        raise ValueError(f"Content-Type {ctype}")
    ps = parts(ctype, body)
    root_headers, root = ps[0]
    if not root_headers.get("content-type", "").startswith("application/rlmi+xml"):
        raise ValueError("the first part is not RLMI")
    by_cid = {}
    for h, content in ps[1:]:
        cid = h.get("content-id", "").strip("<>")
        if not cid:
            raise ValueError("a part without Content-ID")
        doc = ET.fromstring(content.encode())
        if doc.tag != PIDF + "presence":
            raise ValueError(f"part {cid} is {doc.tag}, not PIDF")
        by_cid[cid] = doc
    lst = ET.fromstring(root.encode())
    if lst.tag != RLMI + "list" or lst.get("uri") != list_uri:
        raise ValueError(f"RLMI root {lst.tag} uri={lst.get('uri')}")
    resources = {}
    for r in lst.findall(RLMI + "resource"):
        inst = r.find(RLMI + "instance")
        cid = inst.get("cid")
        doc = None
        if cid is not None:
            if cid not in by_cid:
                raise ValueError(f"cid {cid} has no part")
            doc = by_cid.pop(cid)
        resources[r.get("uri")] = (inst.get("state"), doc)
    if by_cid:
        raise ValueError(f"parts no instance refers to: {sorted(by_cid)}")
    return int(lst.get("version")), lst.get("fullState") == "true", resources


def main():
    args = sys.argv[1:]
    sep = args.index("--")
    log, list_uri, changed = args[0], args[1], args[sep + 1:]
    expected = dict((m.split("=", 1) + ["active"])[:2] for m in args[2:sep])
    members = list(expected)
    with open(log, encoding="utf-8", errors="replace") as f:
        found = notifies(f.read())
    check("rlmi-notify-count", len(found) == 1 + len(changed),
          f"{len(found)} NOTIFYs logged, expected {1 + len(changed)}")
    read_ok = []
    for i, n in enumerate(found):
        try:
            read_ok.append(read(n, list_uri))
            check(f"rlmi-notify-{i}-well-formed", True)
        except (ValueError, ET.ParseError, AttributeError, TypeError) as e:
            check(f"rlmi-notify-{i}-well-formed", False, str(e))
    if len(read_ok) != len(found) or not read_ok:
        sys.exit(1)
    version, full, resources = read_ok[0]
    check("rlmi-first-is-full-state", full and version == 0, f"version {version} fullState {full}")
    check("rlmi-first-names-every-member", sorted(resources) == sorted(members),
          f"{sorted(resources)} != {sorted(members)}")
    check("rlmi-first-states", all(s == expected.get(u) for u, (s, _) in resources.items()),
          f"{ {u: s for u, (s, _) in resources.items()} } != {expected}")
    for i, (member, (version, full, resources)) in enumerate(zip(changed, read_ok[1:]), 1):
        check(f"rlmi-partial-{i}-version", version == i and not full,
              f"version {version} fullState {full}, expected {i} partial")
        check(f"rlmi-partial-{i}-names-{member}", list(resources) == [member],
              f"{list(resources)}")
        state, doc = resources.get(member, (None, None))
        check(f"rlmi-partial-{i}-pidf", state == "active" and doc is not None
              and doc.get("entity") == member, f"state {state}, document {doc}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
