#!/usr/bin/env python3
"""Writes seed inputs for the fuzz targets into fuzz/corpus/<target>/ (kept out of git):
well-formed requests, documents and dumps that take each target past its first checks,
so the fuzzer starts from the code that matters. Usage: python3 fuzz/seeds.py"""
import os

HERE = os.path.dirname(os.path.abspath(__file__))

PIDF = ('<?xml version="1.0" encoding="UTF-8"?>\n<presence xmlns="urn:ietf:params:xml:ns:pidf" '
        'xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model" xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid" '
        'entity="sip:alice@example.com"><tuple id="t1"><status><basic>open</basic></status>'
        '<contact priority="0.8">sip:alice@10.0.0.1</contact><note xml:lang="en">at work</note></tuple>'
        '<dm:person id="p1"><rpid:activities><rpid:busy/></rpid:activities><rpid:sphere>work</rpid:sphere>'
        '</dm:person><dm:device id="d1"><dm:deviceID>urn:x-mac:0003ba4811e3</dm:deviceID></dm:device></presence>')

DIALOG = ('<?xml version="1.0"?>\n<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="3" '
          'state="full" entity="sip:alice@example.com"><dialog id="d1" call-id="c1" local-tag="l" '
          'remote-tag="r" direction="initiator"><state>confirmed</state><remote><identity>sip:bob@example.com'
          '</identity></remote></dialog></dialog-info>')

MWI = 'Messages-Waiting: yes\r\nMessage-Account: sip:alice@example.com\r\nVoice-Message: 2/8 (0/2)\r\n'

RULES = ('<?xml version="1.0"?>\n<cr:ruleset xmlns="urn:ietf:params:xml:ns:pres-rules" '
         'xmlns:cr="urn:ietf:params:xml:ns:common-policy"><cr:rule id="a"><cr:conditions><cr:identity>'
         '<cr:one id="sip:bob@example.com"/><cr:many domain="example.org"/></cr:identity>'
         '<cr:sphere value="work"/><cr:validity><cr:from>2020-01-01T00:00:00Z</cr:from>'
         '<cr:until>2030-01-01T00:00:00Z</cr:until></cr:validity></cr:conditions><cr:actions>'
         '<sub-handling>allow</sub-handling></cr:actions><cr:transformations><provide-services>'
         '<all-services/></provide-services><provide-persons><all-persons/></provide-persons>'
         '<provide-activities>true</provide-activities><provide-note>false</provide-note>'
         '<provide-user-input>bare</provide-user-input></cr:transformations></cr:rule>'
         '<cr:rule id="b"><cr:conditions><other-identity/></cr:conditions><cr:actions>'
         '<sub-handling>polite-block</sub-handling></cr:actions></cr:rule></cr:ruleset>')


def request(method, uri, n, port, extra, body='', ctype=None, frm=None, dialog=None, to_tag=None):
    """One request; `dialog` reuses request number `dialog`'s Call-ID and From tag, and
    `to_tag` (e.g. the target's `$TAG` placeholder) makes it in-dialog."""
    frm = frm or f'sip:w{port}@example.com'
    d = dialog if dialog is not None else n
    to = f'<{uri}>' + (f';tag={to_tag}' if to_tag else '')
    head = (f'{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{method[:2]}{n};rport\r\n'
            f'Max-Forwards: 70\r\nFrom: <{frm}>;tag=f{d}\r\nTo: {to}\r\n'
            f'Call-ID: {method[:2]}{d}@fuzz\r\nCSeq: {n} {method}\r\nContact: <sip:w{port}@127.0.0.1:{port}>\r\n')
    head += ''.join(f'{h}\r\n' for h in extra)
    if ctype:
        head += f'Content-Type: {ctype}\r\n'
    return (head + f'Content-Length: {len(body.encode())}\r\n\r\n' + body).encode()


def step(op, payload=b''):
    return bytes([op]) + payload


SEP = b'\0\0'
ALICE = 'sip:alice@example.com'
# peers: op 0 -> peer 0 (UDP 5070), op 4 -> peer 1 (TCP 5071), op 8 -> peer 2 (UDP 5072)
server = {
    # First byte with its top bit set: auth = "digest"; $AUTH answers the last challenge.
    'digest': [
        step(0x80, request('PUBLISH', ALICE, 1, 5070, ['Event: presence', 'Expires: 60'], PIDF, 'application/pidf+xml')),
        step(0, request('PUBLISH', ALICE, 2, 5070, ['Event: presence', 'Expires: 60', 'Authorization: $AUTH'],
                        PIDF, 'application/pidf+xml', frm=ALICE)),
        step(0, request('PUBLISH', ALICE, 3, 5070, ['Event: presence', 'Expires: 60', 'Authorization: $AUTH',
                                                    'SIP-If-Match: $ETAG'], frm=ALICE)),
        step(4, request('SUBSCRIBE', 'sip:bob@example.com', 4, 5071, ['Event: presence.winfo', 'Expires: 60'])),
        step(4, request('SUBSCRIBE', ALICE, 5, 5071, ['Event: presence.winfo', 'Expires: 60', 'Authorization: $AUTH'],
                        frm=ALICE)),
        step(3, b'\x01'),
        step(0, request('PUBLISH', 'sip:bob@example.com', 6, 5070,
                        ['Event: presence', 'Expires: 60',
                         'Authorization: Digest username="alice", realm="example.com", nonce="$NONCE", '
                         'uri="sip:bob@example.com", response="00000000000000000000000000000000", qop=auth, '
                         'nc=00000009, cnonce="x"'], PIDF, 'application/pidf+xml')),
        step(2, b'\x30'),
        step(0, request('PUBLISH', ALICE, 7, 5070, ['Event: presence', 'Expires: 60', 'Authorization: $AUTH'],
                        PIDF, 'application/pidf+xml', frm=ALICE)),
    ],
    'publish-subscribe': [
        step(0, request('PUBLISH', ALICE, 1, 5070, ['Event: presence', 'Expires: 60'], PIDF, 'application/pidf+xml')),
        step(4, request('SUBSCRIBE', ALICE, 2, 5071, ['Event: presence', 'Expires: 120', 'Accept: application/pidf+xml'])),
        step(3, b'\x01'),
        step(0, request('PUBLISH', ALICE, 3, 5070, ['Event: presence', 'Expires: 60', 'SIP-If-Match: $ETAG'])),
        step(0, request('PUBLISH', ALICE, 4, 5070, ['Event: presence', 'Expires: 60', 'SIP-If-Match: $ETAG'],
                        PIDF.replace('open', 'closed'), 'application/pidf+xml')),
        step(4, request('SUBSCRIBE', ALICE, 5, 5071, ['Event: presence', 'Expires: 120'], dialog=2, to_tag='$TAG')),
        step(2, b'\x05'),
        step(3, b'\x04'),
        step(4, request('SUBSCRIBE', ALICE, 6, 5071, ['Event: presence', 'Expires: 0'], dialog=2, to_tag='$TAG')),
        step(0, request('PUBLISH', ALICE, 7, 5070, ['Event: presence', 'Expires: 0', 'SIP-If-Match: $ETAG'])),
        step(2, b'\x20'),
    ],
    'winfo-mwi-dialog': [
        step(0, request('SUBSCRIBE', ALICE, 1, 5070, ['Event: presence.winfo', 'Expires: 300'], frm=ALICE)),
        step(4, request('SUBSCRIBE', ALICE, 6, 5071, ['Event: presence', 'Expires: 300'])),
        step(8, request('SUBSCRIBE', ALICE, 2, 5072, ['Event: dialog', 'Expires: 300'])),
        step(0, request('PUBLISH', ALICE, 3, 5070, ['Event: dialog', 'Expires: 60'], DIALOG, 'application/dialog-info+xml')),
        step(4, request('PUBLISH', ALICE, 4, 5071, ['Event: message-summary', 'Expires: 60'], MWI, 'application/simple-message-summary')),
        step(8, request('SUBSCRIBE', ALICE, 5, 5072, ['Event: message-summary', 'Expires: 0'], frm=ALICE)),
        step(3, b'\x07'),
        step(2, b'\xff'),
    ],
    'options-and-garbage': [
        step(0, request('OPTIONS', ALICE, 1, 5070, [])),
        step(0, b'SUBSCRIBE sip:x SIP/2.0\r\nVia: nonsense\r\n\r\n'),
        step(4, request('NOTIFY', ALICE, 2, 5071, ['Event: presence', 'Subscription-State: active'])),
    ],
}

dump_mysql = (
    "-- presenced dump (format 1), dialect mysql\nSET NAMES utf8mb4;\nSTART TRANSACTION;\n"
    "INSERT INTO `presentity` (`username`,`domain`,`event`,`etag`,`expires`,`received_time`,`body`,`extra_hdrs`,"
    "`sender`,`presentity_uri`,`content_type`,`priority`) VALUES\n"
    "('alice','example.com','presence','e1',2000000000,1700000000,'<presence xmlns=\\'urn:ietf:params:xml:ns:pidf\\'"
    " entity=\\'sip:alice@example.com\\'/>\\n','',NULL,NULL,'application/pidf+xml',0),\n"
    "('bob','example.com','presence','e2',2000000000,1700000000,_binary 0x3c2f3e,'',NULL,NULL,NULL,0);\n"
    "INSERT INTO `active_watchers` (`presentity_uri`,`watcher_username`,`watcher_domain`,`to_user`,`to_domain`,`event`,"
    "`event_id`,`to_tag`,`from_tag`,`callid`,`local_cseq`,`remote_cseq`,`contact`,`record_route`,`expires`,`status`,"
    "`reason`,`version`,`socket_info`,`local_contact`) VALUES\n"
    "('sip:alice@example.com','w','example.org','alice','example.com','presence',NULL,'t1','f1','c1',1,2,"
    "'sip:w@10.0.0.2',NULL,2000000000,1,NULL,1,'udp:127.0.0.1:5060','<sip:127.0.0.1:5060>');\n"
    "INSERT INTO `watchers` VALUES (1,'sip:alice@example.com','w','example.org','presence',1,NULL,1700000000);\n"
    "INSERT INTO `xcap` (`username`,`domain`,`doc`,`doc_type`,`etag`,`source`,`doc_uri`,`port`) VALUES\n"
    "('alice','example.com','<ruleset/>',2,'x1',1,'/pres-rules/users/sip:alice@example.com/index',8080);\n"
    "COMMIT;\n-- presenced dump complete\n")
dump_pg = (
    "--\n-- PostgreSQL database dump\n--\nSET statement_timeout = 0;\n"
    "INSERT INTO public.presentity (id, username, domain, event, etag, expires, received_time, body, sender, priority) "
    "VALUES (1, 'carol', 'example.com', 'presence', 'e9', 2000000000, 1700000000, '\\x3c3f786d6c3f3e', 'sip:x', 0);\n"
    "INSERT INTO public.watchers VALUES (1, 'sip:carol@example.com', 'd', 'example.com', 'presence', 2, E'it''s', 1);\n"
    "--\n-- PostgreSQL database dump complete\n--\n")
dump_sqlite = (
    "PRAGMA foreign_keys=OFF;\nBEGIN TRANSACTION;\n"
    "INSERT INTO watchers VALUES(1,'sip:dave@example.com','e','example.com','presence',1,NULL,1700000000,NULL);\n"
    "INSERT INTO \"presentity\" VALUES(2,'dave','example.com','presence','e3',2000000000,1700000000,X'3c2f3e',"
    "NULL,'sip:x',NULL,NULL,0);\n"
    "COMMIT;\n")

xcap = [
    (f'PUT /xcap-root/pres-rules/users/sip:alice@example.com/index HTTP/1.1\r\nHost: x\r\n'
     f'Content-Type: application/auth-policy+xml\r\nContent-Length: {len(RULES)}\r\n\r\n{RULES}'
     'GET /xcap-root/pres-rules/users/sip:alice@example.com/index HTTP/1.1\r\nHost: x\r\n\r\n'
     'GET /xcap-root/pres-rules/users/sip:alice@example.com/index/~~/cr:ruleset/cr:rule%5b@id=%22a%22%5d HTTP/1.1\r\n'
     'Host: x\r\nIf-Match: *\r\n\r\n'
     'DELETE /xcap-root/pres-rules/users/sip:alice@example.com/index HTTP/1.1\r\nHost: x\r\n\r\n'),
    'GET /xcap-root/xcap-caps/global/index HTTP/1.1\r\nHost: x\r\n\r\n',
]

def ws_frame(payload, opcode=1, key=b'\x11\x22\x33\x44'):
    """A masked client frame (RFC 6455 §5.2) carrying payload."""
    head = bytes([0x80 | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + n.to_bytes(2, 'big')
    else:
        head += bytes([0x80 | 127]) + n.to_bytes(8, 'big')
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


WS_SUBSCRIBE = request('SUBSCRIBE', ALICE, 3, 5070, ['Event: presence', 'Expires: 60'])

seeds = {
    'parse': [ws_frame(WS_SUBSCRIBE) + ws_frame(b'ping', opcode=9) + ws_frame(WS_SUBSCRIBE, opcode=2),
              request('SUBSCRIBE', ALICE, 1, 5070, ['Event: presence', 'Expires: 60']),
              request('PUBLISH', ALICE, 2, 5070, [
                  'Authorization: Digest username="alice", realm="example.com", nonce="abc", '
                  'uri="sip:alice@example.com", response="6629fae49393a05397450978507c4ef1", '
                  'algorithm=SHA-256, qop=auth, nc=00000001, cnonce="0a4f113b", opaque="x"',
                  'WWW-Authenticate: Digest realm="example.com", nonce="n", algorithm=MD5, qop="auth", stale=true',
                  'Proxy-Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=='])],
    'server': [SEP.join(steps) for steps in server.values()],
    # first byte: options (0x80 keep expired, 0x40 merge onto existing rows, rest: dialect)
    'restore': [bytes([0]) + dump_mysql.encode(), bytes([0x81]) + dump_pg.encode(), bytes([2]) + dump_sqlite.encode(),
                bytes([0x40]) + dump_mysql.encode()],
    'bodies': [b'bob@example.com\0' + RULES.encode() + b'\0' + PIDF.encode(),
               b'alice@example.com\0' + PIDF.encode() + b'\0' + PIDF.encode(),
               b'/xcap-root/pres-rules/users/sip:alice@example.com/index\0' + DIALOG.encode() + b'\0' + DIALOG.encode(),
               b'alice@example.com\0' + MWI.encode() + b'\0'],
    'xcap': [s.encode() for s in xcap],
}

for target, inputs in seeds.items():
    d = os.path.join(HERE, 'corpus', target)
    os.makedirs(d, exist_ok=True)
    for i, data in enumerate(inputs):
        with open(os.path.join(d, f'seed-{i}'), 'wb') as f:
            f.write(data)
    print(f'{target}: {len(inputs)} seeds in {d}')
