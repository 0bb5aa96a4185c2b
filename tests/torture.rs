//! RFC 4475 torture messages, written out from the RFC's text, checked against what
//! the RFC says a receiving element should do: the §3.1.1 messages parse and pass
//! `Request::check`, the §3.1.2 ones produce the error (and status code) it expects
//! or are accepted where it allows a liberal receiver, and the §3.3 ones that belong
//! to the parser are covered too. Bytes the RFC shows as escapes are built in code.

use presenced::sip::error::ParseError;
use presenced::sip::framing::{Frame, StreamFramer};
use presenced::sip::header::MediaType;
use presenced::sip::message::{Message, Method, Request, Response};
use presenced::sip::uri::{Host, Uri};

/// Joins lines with CRLF, terminating every line (so a final "" gives the empty line).
fn lines(ls: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    for l in ls {
        out.extend_from_slice(l.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn sdp(origin: &str, conn: &str, time: &str) -> Vec<String> {
    vec![
        "v=0".into(),
        format!("o=mhandley 29739 7272939 IN IP4 {origin}"),
        "s=-".into(),
        format!("c=IN IP4 {conn}"),
        format!("t={time}"),
        "m=audio 49217 RTP/AVP 0 12".into(),
        "m=video 3227 RTP/AVP 31".into(),
        "a=rtpmap:31 LPC".into(),
    ]
}

/// Header lines, an empty line, then the body lines.
fn with_body(head: &[&str], body: &[String]) -> Vec<u8> {
    let mut all: Vec<&str> = head.to_vec();
    all.push("");
    all.extend(body.iter().map(String::as_str));
    lines(&all)
}

fn request(bytes: &[u8]) -> Request {
    match Message::parse(bytes) {
        Ok(Message::Request(r)) => r,
        other => panic!("expected a request, got {other:?}"),
    }
}

fn response(bytes: &[u8]) -> Response {
    match Message::parse(bytes) {
        Ok(Message::Response(r)) => r,
        other => panic!("expected a response, got {other:?}"),
    }
}

fn status(e: &ParseError) -> Option<u16> {
    e.response_status().map(|(code, _)| code)
}

/// Serializing and parsing again gives the same message (Content-Length is rewritten
/// at the end, so it is left out of the comparison).
fn assert_round_trips(original: Message) {
    let bytes = original.to_bytes();
    let again = Message::parse(&bytes).unwrap();
    assert_eq!(again.to_bytes(), bytes);
    let strip = |mut m: Message| {
        m.headers_mut().remove("Content-Length");
        m
    };
    assert_eq!(strip(again), strip(original));
}

fn sip_user(uri: &Uri) -> Option<&str> {
    uri.as_sip().and_then(|u| u.user.as_deref())
}

// ---------------------------------------------------------------------------
// §3.1.1 Valid messages

#[test]
fn wsinv_short_tortuous_invite_is_well_formed() {
    let body = sdp("192.0.2.3", "192.0.2.4", "0 0");
    let bytes = with_body(
        &[
            "INVITE sip:vivekg@chair-dnrc.example.com;unknownparam SIP/2.0",
            "TO :",
            " sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n",
            r#"from   : "J Rosenberg \\\""       <sip:jdrosen@example.com>"#,
            "  ;",
            "  tag = 98asjd8",
            "MaX-fOrWaRdS: 0068",
            "Call-ID: wsinv.ndaksdj@192.0.2.1",
            "Content-Length   : 150",
            "cseq: 0009",
            "  INVITE",
            "Via  : SIP  /   2.0",
            " /UDP",
            "    192.0.2.2;branch=390skdjuw",
            "s :",
            "NewFangledHeader:   newfangled value",
            " continued newfangled value",
            "UnknownHeaderWithUnusualValue: ;;,,;;,;",
            "Content-Type: application/sdp",
            "Route:",
            " <sip:services.example.com;lr;unknownwith=value;unknown-no-value>",
            "v:  SIP  / 2.0  / TCP     spindle.example.com   ;",
            "  branch  =   z9hG4bK9ikj8  ,",
            " SIP  /    2.0   / UDP  192.168.255.111   ; branch=",
            " z9hG4bK30239",
            r#"m:"Quoted string \"\"" <sip:jdrosen@example.com> ; newparam ="#,
            "      newvalue ;",
            "  secondparam ; q = 0.33",
        ],
        &body,
    );
    let r = request(&bytes);
    assert_eq!(r.check(), Ok(()));
    assert_eq!(r.method, Method::Invite);
    let ruri = r.uri.as_sip().unwrap();
    assert_eq!(ruri.param("unknownparam"), Some(None));
    assert_eq!(r.body.len(), 150);

    let h = &r.headers;
    let to = h.to().unwrap();
    assert_eq!(to.display, None);
    assert_eq!(to.tag(), Some("1918181833n"));
    assert_eq!(sip_user(&to.uri), Some("vivekg"));
    let from = h.from().unwrap();
    assert_eq!(from.display.as_deref(), Some(r#"J Rosenberg \""#));
    assert_eq!(from.tag(), Some("98asjd8"));
    assert_eq!(h.max_forwards(), Ok(Some(68)));
    assert_eq!(h.call_id(), Ok("wsinv.ndaksdj@192.0.2.1"));
    let cseq = h.cseq().unwrap();
    assert_eq!((cseq.seq, cseq.method), (9, Method::Invite));
    assert_eq!(h.get("Subject"), Some(""));
    assert_eq!(
        h.get("newfangledheader"),
        Some("newfangled value continued newfangled value")
    );
    assert_eq!(h.get("UnknownHeaderWithUnusualValue"), Some(";;,,;;,;"));
    assert_eq!(
        h.content_type().unwrap().unwrap().essence(),
        "application/sdp"
    );

    let vias = h.vias().unwrap();
    let summary: Vec<(String, String, Option<&str>)> = vias
        .iter()
        .map(|v| (v.transport.clone(), v.host.to_string(), v.branch()))
        .collect();
    assert_eq!(
        summary,
        [
            ("UDP".into(), "192.0.2.2".into(), Some("390skdjuw")),
            (
                "TCP".into(),
                "spindle.example.com".into(),
                Some("z9hG4bK9ikj8")
            ),
            ("UDP".into(), "192.168.255.111".into(), Some("z9hG4bK30239")),
        ]
    );

    let routes = h.routes().unwrap();
    assert_eq!(routes.len(), 1);
    let route_uri = routes[0].uri.as_sip().unwrap();
    assert_eq!(route_uri.param("lr"), Some(None));
    assert_eq!(route_uri.param("unknownwith"), Some(Some("value")));
    assert_eq!(route_uri.param("unknown-no-value"), Some(None));

    let contacts = h.contacts().unwrap();
    assert_eq!(contacts.len(), 1);
    assert_eq!(contacts[0].display.as_deref(), Some(r#"Quoted string """#));
    assert_eq!(contacts[0].params.value("newparam"), Some("newvalue"));
    assert_eq!(contacts[0].params.get("secondparam"), Some(None));
    assert_eq!(contacts[0].params.value("q"), Some("0.33"));

    assert_round_trips(Message::Request(r));
}

#[test]
fn intmeth_wide_range_of_valid_characters() {
    let method = "!interesting-Method0123456789_*+`.%indeed'~";
    let mut bytes = Vec::new();
    bytes.extend_from_slice(method.as_bytes());
    bytes.extend_from_slice(
        b" sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com SIP/2.0\r\n",
    );
    bytes.extend_from_slice(b"Via: SIP/2.0/TCP host1.example.com;branch=z9hG4bK-.!%66*_+`'~\r\n");
    // The quoted display name carries quoted-pairs of BEL, NUL and DEL.
    bytes.extend_from_slice(b"To: \"BEL:\\\x07 NUL:\\\x00 DEL:\\\x7F\" <sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*@example.com>\r\n");
    bytes.extend_from_slice(
        "From: token1~` token2'+_ token3*%!.- <sip:mundane@example.com>;fromParam''~+*_!.-%=\"работающий\";tag=_token~1'+`*%!-.\r\n".as_bytes(),
    );
    bytes.extend_from_slice(b"Call-ID: intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{\r\n");
    bytes.extend_from_slice(format!("CSeq: 139122385 {method}\r\n").as_bytes());
    bytes.extend_from_slice(b"Max-Forwards: 255\r\n");
    bytes.extend_from_slice("extensionHeader-!.%*+_`'~:\u{feff}大停電\r\n".as_bytes());
    bytes.extend_from_slice(b"Content-Length: 0\r\n\r\n");

    let r = request(&bytes);
    assert_eq!(r.check(), Ok(()));
    assert_eq!(r.method, Method::Other(method.into()));
    let ruri = r.uri.as_sip().unwrap();
    assert_eq!(
        ruri.user.as_deref(),
        Some("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*")
    );
    assert_eq!(
        ruri.password.as_deref(),
        Some("&it+has=1,weird!*pas$wo~d_too.(doesn't-it)")
    );
    assert_eq!(ruri.host, Host::Domain("example.com".into()));

    let h = &r.headers;
    assert_eq!(h.top_via().unwrap().branch(), Some("z9hG4bK-.!%66*_+`'~"));
    let to = h.to().unwrap();
    assert_eq!(to.display.as_deref(), Some("BEL:\x07 NUL:\x00 DEL:\x7F"));
    assert_eq!(
        sip_user(&to.uri),
        Some("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*")
    );
    let from = h.from().unwrap();
    assert_eq!(
        from.display.as_deref(),
        Some("token1~` token2'+_ token3*%!.-")
    );
    assert_eq!(from.tag(), Some("_token~1'+`*%!-."));
    assert_eq!(
        from.params.value("fromParam''~+*_!.-%"),
        Some("\"работающий\"")
    );
    assert_eq!(
        h.call_id(),
        Ok("intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{")
    );
    assert_eq!(h.max_forwards(), Ok(Some(255)));
    assert_eq!(h.get("extensionHeader-!.%*+_`'~"), Some("\u{feff}大停電"));

    assert_round_trips(Message::Request(r));
}

#[test]
fn esc01_percent_escapes_are_decoded_where_the_grammar_allows() {
    let bytes = with_body(
        &[
            "INVITE sip:sips%3Auser%40example.com@example.net SIP/2.0",
            "To: sip:%75se%72@example.com",
            "From: <sip:I%20have%20spaces@example.net>;tag=938",
            "Max-Forwards: 87",
            "i: esc01.239409asdfakjkn23onasd0-3234",
            "CSeq: 234234 INVITE",
            "Via: SIP/2.0/UDP host5.example.net;branch=z9hG4bKkdjuw",
            "C: application/sdp",
            "Contact:",
            "  <sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31>",
            "Content-Length: 150",
        ],
        &sdp("192.0.2.1", "192.0.2.1", "0 0"),
    );
    let r = request(&bytes);
    assert_eq!(r.check(), Ok(()));
    assert_eq!(sip_user(&r.uri), Some("sips:user@example.com"));
    assert_eq!(
        r.uri.as_sip().unwrap().host,
        Host::Domain("example.net".into())
    );
    let h = &r.headers;
    assert_eq!(sip_user(&h.to().unwrap().uri), Some("user"));
    assert_eq!(sip_user(&h.from().unwrap().uri), Some("I have spaces"));
    assert_eq!(h.call_id(), Ok("esc01.239409asdfakjkn23onasd0-3234"));
    assert_eq!(
        h.content_type().unwrap().unwrap().essence(),
        "application/sdp"
    );
    let contact = h.contacts().unwrap().remove(0);
    let curi = contact.uri.as_sip().unwrap();
    assert_eq!(curi.user.as_deref(), Some("caller"));
    assert_eq!(curi.param("lr"), Some(None));
    // Unescaping is never recursive: %25%34%31 is "%41", not "A".
    assert_eq!(curi.param("name"), Some(Some("value%41")));
    assert_round_trips(Message::Request(r));
}

#[test]
fn escnull_escaped_nulls_do_not_shorten_users() {
    let bytes = lines(&[
        "REGISTER sip:example.com SIP/2.0",
        "To: sip:null-%00-null@example.com",
        "From: sip:null-%00-null@example.com;tag=839923423",
        "Max-Forwards: 70",
        "Call-ID: escnull.39203ndfvkjdasfkq3w4otrq0adsfdfnavd",
        "CSeq: 14398234 REGISTER",
        "Via: SIP/2.0/UDP host5.example.com;branch=z9hG4bKkdjuw",
        "Contact: <sip:%00@host5.example.com>",
        "Contact: <sip:%00%00@host5.example.com>",
        "L:0",
        "",
    ]);
    let r = request(&bytes);
    assert_eq!(r.check(), Ok(()));
    let to = r.headers.to().unwrap();
    assert_eq!(sip_user(&to.uri), Some("null-\0-null"));
    assert_eq!(
        to.uri.as_sip().unwrap().aor(),
        "sip:null-%00-null@example.com"
    );
    let contacts = r.headers.contacts().unwrap();
    let users: Vec<_> = contacts.iter().map(|c| sip_user(&c.uri)).collect();
    assert_eq!(users, [Some("\0"), Some("\0\0")]);
    assert_ne!(contacts[0].uri, contacts[1].uri);
    assert_eq!(r.headers.content_length(), Ok(Some(0)));
    assert_round_trips(Message::Request(r));
}

#[test]
fn esc02_percent_is_not_an_escape_outside_uris() {
    let bytes = lines(&[
        "RE%47IST%45R sip:registrar.example.com SIP/2.0",
        r#"To: "%Z%45" <sip:resource@example.com>"#,
        r#"From: "%Z%45" <sip:resource@example.com>;tag=f232jadfj23"#,
        "Call-ID: esc02.asdfnqwo34rq23i34jrjasdcnl23nrlknsdf",
        "Via: SIP/2.0/TCP host.example.com;branch=z9hG4bK209%fzsnel234",
        "CSeq: 29344 RE%47IST%45R",
        "Max-Forwards: 70",
        "Contact: <sip:alias1@host1.example.com>",
        "C%6Fntact: <sip:alias2@host2.example.com>",
        "Contact: <sip:alias3@host3.example.com>",
        "l: 0",
        "",
    ]);
    let r = request(&bytes);
    assert_eq!(r.check(), Ok(()));
    assert_eq!(r.method, Method::Other("RE%47IST%45R".into()));
    assert_ne!(r.method, Method::Register);
    assert_eq!(r.headers.to().unwrap().display.as_deref(), Some("%Z%45"));
    assert_eq!(
        r.headers.top_via().unwrap().branch(),
        Some("z9hG4bK209%fzsnel234")
    );
    let contacts = r.headers.contacts().unwrap();
    let users: Vec<_> = contacts.iter().map(|c| sip_user(&c.uri)).collect();
    assert_eq!(users, [Some("alias1"), Some("alias3")]);
    assert_eq!(
        r.headers.get("C%6Fntact"),
        Some("<sip:alias2@host2.example.com>")
    );
    assert_round_trips(Message::Request(r));
}

#[test]
fn lwsdisp_display_name_without_space_before_angle_is_accepted() {
    let bytes = lines(&[
        "OPTIONS sip:user@example.com SIP/2.0",
        "To: sip:user@example.com",
        "From: caller<sip:caller@example.com>;tag=323",
        "Max-Forwards: 70",
        "Call-ID: lwsdisp.1234abcd@funky.example.com",
        "CSeq: 60 OPTIONS",
        "Via: SIP/2.0/UDP funky.example.com;branch=z9hG4bKkdjuw",
        "l: 0",
        "",
    ]);
    let r = request(&bytes);
    assert_eq!(r.check(), Ok(()));
    let from = r.headers.from().unwrap();
    assert_eq!(from.display.as_deref(), Some("caller"));
    assert_eq!(from.tag(), Some("323"));
    assert_round_trips(Message::Request(r));
}

#[test]
fn longreq_long_values_and_many_vias() {
    let long = |unit: &str, n: usize| unit.repeat(n);
    let to = format!(
        "To: \"I have a user name of {} proportion\"<sip:user@example.com:6000;unknownparam1=very{}value;longparam{}name=shortvalue;very{}ParameterNameWithNoValue>",
        long("extreme", 10),
        long("long", 20),
        long("name", 25),
        long("long", 25)
    );
    let caller = long("amazinglylongcallername", 5);
    let tag = format!("{}424", long("982", 50));
    let from = format!(
        "F: sip:{caller}@example.net;tag=1{tag};unknownheaderparam{}name=unknowheaderparam{};unknownValueless{}",
        long("name", 20),
        long("value", 15),
        long("paramname", 10)
    );
    let call_id = format!("Call-ID: longreq.one{}longcallid", long("really", 20));
    let unknown = format!(
        "Unknown-{}-Name: unknown-{}-value; unknown-{}-parameter-name = unknown-{}-parameter-value",
        long("Long", 20),
        long("long", 20),
        long("long", 20),
        long("long", 20)
    );
    let mut head = vec![
        "INVITE sip:user@example.com SIP/2.0".to_owned(),
        to,
        from,
        call_id,
        "CSeq: 3882340 INVITE".to_owned(),
        unknown,
    ];
    let spellings = [
        "Via: ", "v: ", "V: ", "Via: ", "ViA: ", "VIa: ", "VIA: ", "via: ", "viA: ", "vIa: ",
        "vIA: ", "V :  ", "v :  ", "V  : ", "v  : ", "Via : ", "Via  : ",
    ];
    for n in (1..=33).rev() {
        let spelled = spellings.get(33 - n).copied().unwrap_or("Via: ");
        head.push(format!("{spelled}SIP/2.0/TCP sip{n}.example.com"));
    }
    head.push(format!(
        "Via: SIP/2.0/TCP host.example.com;received=192.0.2.5;branch=very{}branchvalue",
        long("long", 50)
    ));
    head.push("Max-Forwards: 70".to_owned());
    head.push(format!("Contact: <sip:{caller}@host5.example.net>"));
    head.push("Content-Type: application/sdp".to_owned());
    head.push("l: 150".to_owned());
    let head: Vec<&str> = head.iter().map(String::as_str).collect();
    let bytes = with_body(&head, &sdp("192.0.2.1", "192.0.2.1", "0 0"));

    let r = request(&bytes);
    assert_eq!(r.check(), Ok(()));
    let h = &r.headers;
    let to = h.to().unwrap();
    assert!(
        to.display
            .as_deref()
            .unwrap()
            .starts_with("I have a user name of extremeextreme")
    );
    let to_uri = to.uri.as_sip().unwrap();
    assert_eq!(to_uri.port, Some(6000));
    assert_eq!(to_uri.params.len(), 3);
    assert_eq!(
        to_uri.param(&format!("longparam{}name", long("name", 25))),
        Some(Some("shortvalue"))
    );
    let from = h.from().unwrap();
    assert_eq!(from.tag(), Some(format!("1{tag}").as_str()));
    assert_eq!(from.params.0.len(), 3);
    assert_eq!(sip_user(&from.uri), Some(caller.as_str()));
    let vias = h.vias().unwrap();
    assert_eq!(vias.len(), 34);
    assert_eq!(vias[0].host, Host::Domain("sip33.example.com".into()));
    assert_eq!(vias[32].host, Host::Domain("sip1.example.com".into()));
    assert_eq!(vias[33].received(), Some("192.0.2.5"));
    assert_eq!(h.content_length(), Ok(Some(150)));
    assert_round_trips(Message::Request(r));
}

#[test]
fn dblreq_extra_octets_after_the_body_are_ignored() {
    let mut bytes = lines(&[
        "REGISTER sip:example.com SIP/2.0",
        "To: sip:j.user@example.com",
        "From: sip:j.user@example.com;tag=43251j3j324",
        "Max-Forwards: 8",
        "I: dblreq.0ha0isndaksdj99sdfafnl3lk233412",
        "Contact: sip:j.user@host.example.com",
        "CSeq: 8 REGISTER",
        "Via: SIP/2.0/UDP 192.0.2.125;branch=z9hG4bKkdjuw23492",
        "Content-Length: 0",
        "",
        "",
    ]);
    bytes.extend(with_body(
        &[
            "INVITE sip:joe@example.com SIP/2.0",
            "t: sip:joe@example.com",
            "From: sip:caller@example.net;tag=141334",
            "Max-Forwards: 8",
            "Call-ID: dblreq.0ha0isnda977644900765@192.0.2.15",
            "CSeq: 8 INVITE",
            "Via: SIP/2.0/UDP 192.0.2.15;branch=z9hG4bKkdjuw380234",
            "Content-Type: application/sdp",
            "Content-Length: 150",
        ],
        &sdp("192.0.2.15", "192.0.2.15", "0 0"),
    ));
    let r = request(&bytes);
    assert_eq!(r.check(), Ok(()));
    assert_eq!(r.method, Method::Register);
    assert!(r.body.is_empty());
    assert_eq!(
        r.headers.call_id(),
        Ok("dblreq.0ha0isndaksdj99sdfafnl3lk233412")
    );
    assert_eq!(r.headers.count("Via"), 1);
    assert!(!String::from_utf8_lossy(&r.to_bytes()).contains("INVITE"));
}

#[test]
fn semiuri_user_part_holds_an_escaped_at() {
    let bytes = lines(&[
        "OPTIONS sip:user;par=u%40example.net@example.com SIP/2.0",
        "To: sip:j_user@example.com",
        "From: sip:caller@example.org;tag=33242",
        "Max-Forwards: 3",
        "Call-ID: semiuri.0ha0isndaksdj",
        "CSeq: 8 OPTIONS",
        "Accept: application/sdp, application/pkcs7-mime,",
        "        multipart/mixed, multipart/signed,",
        "        message/sip, message/sipfrag",
        "Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKkdjuw",
        "l: 0",
        "",
    ]);
    let r = request(&bytes);
    assert_eq!(r.check(), Ok(()));
    let ruri = r.uri.as_sip().unwrap();
    assert_eq!(ruri.user.as_deref(), Some("user;par=u@example.net"));
    assert_eq!(ruri.host, Host::Domain("example.com".into()));
    assert!(ruri.params.is_empty());
    let accept: Vec<String> = r
        .headers
        .accept()
        .unwrap()
        .iter()
        .map(MediaType::essence)
        .collect();
    assert_eq!(
        accept,
        [
            "application/sdp",
            "application/pkcs7-mime",
            "multipart/mixed",
            "multipart/signed",
            "message/sip",
            "message/sipfrag"
        ]
    );
    assert_round_trips(Message::Request(r));
}

#[test]
fn transports_unknown_via_transports_are_accepted() {
    let bytes = lines(&[
        "OPTIONS sip:user@example.com SIP/2.0",
        "To: sip:user@example.com",
        "From: <sip:caller@example.com>;tag=323",
        "Max-Forwards: 70",
        "Call-ID:  transports.kijh4akdnaqjkwendsasfdj",
        "Accept: application/sdp",
        "CSeq: 60 OPTIONS",
        "Via: SIP/2.0/UDP t1.example.com;branch=z9hG4bKkdjuw",
        "Via: SIP/2.0/SCTP t2.example.com;branch=z9hG4bKklasjdhf",
        "Via: SIP/2.0/TLS t3.example.com;branch=z9hG4bK2980unddj",
        "Via: SIP/2.0/UNKNOWN t4.example.com;branch=z9hG4bKasd0f3en",
        "Via: SIP/2.0/TCP t5.example.com;branch=z9hG4bK0a9idfnee",
        "l: 0",
        "",
    ]);
    let r = request(&bytes);
    assert_eq!(r.check(), Ok(()));
    assert_eq!(
        r.headers.call_id(),
        Ok("transports.kijh4akdnaqjkwendsasfdj")
    );
    let transports: Vec<String> = r
        .headers
        .vias()
        .unwrap()
        .into_iter()
        .map(|v| v.transport)
        .collect();
    assert_eq!(transports, ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]);
    assert_round_trips(Message::Request(r));
}

#[test]
fn mpart01_binary_multipart_body_is_framed_by_content_length() {
    let mut body = Vec::new();
    body.extend_from_slice(
        b"--7a9cbec02ceef655\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: binary\r\n\r\nHello\r\n",
    );
    body.extend_from_slice(
        b"--7a9cbec02ceef655\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\n",
    );
    // A DER-ish blob with NULs, CRLFs and non-UTF-8 octets.
    body.extend_from_slice(
        b"0\x82\x02R\x06\t*\x86H\x86\xf7\r\n\x01\x07\x02\xa0\x82\x02C0\x00\x00\x00\r\n\r\n\xff\xfe",
    );
    body.extend((0u8..=255).cycle().take(300));
    body.extend_from_slice(b"\r\n--7a9cbec02ceef655--\r\n");

    let mut bytes = lines(&[
        "MESSAGE sip:kumiko@example.org SIP/2.0",
        "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-d87543-4dade06d0bdb11ee-1--d87543-;rport",
        "Max-Forwards: 70",
        "Route: <sip:127.0.0.1:5080>",
        "Identity: r5mwreLuyDRYBi/0TiPwEsY3rEVsk/G2WxhgTV1PF7hHuLIK0YWVKZhKv9Mj8UeXqkMVbnVq37CD+813gvYjcBUaZngQmXc9WNZSDNGCzA+fWl9MEUHWIZo1CeJebdY/XlgKeTa0Olvq0rt70Q5jiSfbqMJmQFteeivUhkMWYUA=",
        "Contact: <sip:fluffy@127.0.0.1:5070>",
        "To: <sip:kumiko@example.org>",
        "From: <sip:fluffy@example.com>;tag=2fb0dcc9",
        "Call-ID: 3d9485ad0c49859b@Zmx1ZmZ5LW1hYy0xNi5sb2NhbA..",
        "CSeq: 1 MESSAGE",
        "Content-Transfer-Encoding: binary",
        "Content-Type: multipart/mixed;boundary=7a9cbec02ceef655",
        "Date: Sat, 15 Oct 2005 04:44:56 GMT",
        "User-Agent: SIPimp.org/0.2.5 (curses)",
    ]);
    bytes.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    bytes.extend_from_slice(&body);

    let r = request(&bytes);
    assert_eq!(r.check(), Ok(()));
    assert_eq!(r.body, body);
    let via = r.headers.top_via().unwrap();
    assert_eq!((via.port, via.rport()), (Some(5070), Some(None)));
    let ct = r.headers.content_type().unwrap().unwrap();
    assert_eq!(ct.essence(), "multipart/mixed");
    assert_eq!(ct.params.value("boundary"), Some("7a9cbec02ceef655"));
    assert_eq!(r.headers.get("Date"), Some("Sat, 15 Oct 2005 04:44:56 GMT"));
    assert_eq!(
        r.headers.routes().unwrap()[0].uri.as_sip().unwrap().port,
        Some(5080)
    );

    // Over a stream the same bytes come out as exactly one frame.
    let mut framer = StreamFramer::new(64 * 1024);
    framer.push(&bytes);
    assert_eq!(framer.next_frame(), Ok(Some(Frame::Message(bytes.clone()))));
    assert_round_trips(Message::Request(r));
}

#[test]
fn unreason_reason_phrase_may_be_utf8() {
    let reason = "= 2**3 * 5**2 но сто девяносто девять - простое";
    let status_line = format!("SIP/2.0 200 {reason}");
    let bytes = with_body(
        &[
            &status_line,
            "Via: SIP/2.0/UDP 192.0.2.198;branch=z9hG4bK1324923",
            "Call-ID: unreason.1234ksdfak3j2erwedfsASdf",
            "CSeq: 35 INVITE",
            "From: sip:user@example.com;tag=11141343",
            "To: sip:user@example.edu;tag=2229",
            "Content-Length: 154",
            "Content-Type: application/sdp",
            "Contact: <sip:user@host198.example.com>",
        ],
        &sdp("192.0.2.198", "192.0.2.198", "0 0"),
    );
    let r = response(&bytes);
    assert_eq!((r.status, r.reason.as_str()), (200, reason));
    assert_eq!(r.headers.to().unwrap().tag(), Some("2229"));
    assert_eq!(r.body.len(), 154);
    assert_round_trips(Message::Response(r));
}

#[test]
fn noreason_empty_reason_phrase_is_accepted() {
    let bytes = lines(&[
        "SIP/2.0 100 ",
        "Via: SIP/2.0/UDP 192.0.2.105;branch=z9hG4bK2398ndaoe",
        "Call-ID: noreason.asndj203insdf99223ndf",
        "CSeq: 35 INVITE",
        "From: <sip:user@example.com>;tag=39ansfi3",
        "To: <sip:user@example.edu>;tag=902jndnke3",
        "Content-Length: 0",
        "Contact: <sip:user@host105.example.com>",
        "",
    ]);
    let r = response(&bytes);
    assert_eq!((r.status, r.reason.as_str()), (100, ""));
    assert_eq!(r.headers.cseq().unwrap().seq, 35);
    assert_round_trips(Message::Response(r));
}

// ---------------------------------------------------------------------------
// §3.1.2 Invalid messages

/// Parses a request that is syntactically framed but must fail `check()`.
fn check_error(bytes: &[u8]) -> ParseError {
    let r = request(bytes);
    let err = r.check().expect_err("check() should fail");
    // Whatever failed, the response can still be built from the raw headers.
    let code = status(&err).expect("answerable");
    let resp = Response::for_request(&r, code, None);
    assert!(resp.headers.get("Call-ID").is_some());
    err
}

#[test]
fn badinv01_extraneous_separators_get_400() {
    let bytes = with_body(
        &[
            "INVITE sip:user@example.com SIP/2.0",
            "To: sip:j.user@example.com",
            "From: sip:caller@example.net;tag=134161461246",
            "Max-Forwards: 7",
            "Call-ID: badinv01.0ha0isndaksdjasdf3234nas",
            "CSeq: 8 INVITE",
            "Via: SIP/2.0/UDP 192.0.2.15;;,;,,",
            r#"Contact: "Joe" <sip:joe@example.org>;;;;"#,
            "Content-Length: 152",
            "Content-Type: application/sdp",
        ],
        &sdp("192.0.2.15", "192.0.2.15", "0 0"),
    );
    let err = check_error(&bytes);
    assert_eq!(err, ParseError::BadHeader("Via"));
    assert_eq!(status(&err), Some(400));
    assert_eq!(
        request(&bytes).headers.contacts(),
        Err(ParseError::BadHeader("Contact"))
    );
}

fn clerr_bytes() -> Vec<u8> {
    with_body(
        &[
            "INVITE sip:user@example.com SIP/2.0",
            "Max-Forwards: 80",
            "To: sip:j.user@example.com",
            "From: sip:caller@example.net;tag=93942939o2",
            "Contact: <sip:caller@hungry.example.net>",
            "Call-ID: clerr.0ha0isndaksdjweiafasdk3",
            "CSeq: 8 INVITE",
            "Via: SIP/2.0/UDP host5.example.com;branch=z9hG4bK-39234-23523",
            "Content-Type: application/sdp",
            "Content-Length: 9999",
        ],
        &sdp("192.0.2.155", "192.0.2.155", "0 0"),
    )
}

#[test]
fn clerr_content_length_beyond_the_datagram_gets_400() {
    let bytes = clerr_bytes();
    let err = Message::parse(&bytes).unwrap_err();
    assert_eq!(err, ParseError::BadContentLength);
    assert_eq!(status(&err), Some(400));
    // The request can still be answered from what was received.
    let salvaged = Request::salvage(&bytes).unwrap();
    assert_eq!(
        salvaged.headers.call_id(),
        Ok("clerr.0ha0isndaksdjweiafasdk3")
    );
}

#[test]
fn clerr_over_a_stream_waits_for_more_bytes() {
    let mut framer = StreamFramer::new(64 * 1024);
    framer.push(&clerr_bytes());
    assert_eq!(framer.next_frame(), Ok(None));
}

#[test]
fn ncl_negative_content_length_is_rejected() {
    let bytes = with_body(
        &[
            "INVITE sip:user@example.com SIP/2.0",
            "Max-Forwards: 254",
            "To: sip:j.user@example.com",
            "From: sip:caller@example.net;tag=32394234",
            "Call-ID: ncl.0ha0isndaksdj2193423r542w35",
            "CSeq: 0 INVITE",
            "Via: SIP/2.0/UDP 192.0.2.53;branch=z9hG4bKkdjuw",
            "Contact: <sip:caller@example53.example.net>",
            "Content-Type: application/sdp",
            "Content-Length: -999",
        ],
        &sdp("192.0.2.53", "192.0.2.53", "0 0"),
    );
    let err = Message::parse(&bytes).unwrap_err();
    assert_eq!(
        (err.clone(), status(&err)),
        (ParseError::BadContentLength, Some(400))
    );
    let mut framer = StreamFramer::new(64 * 1024);
    framer.push(&bytes);
    assert_eq!(framer.next_frame(), Err(ParseError::BadContentLength));
}

#[test]
fn scalar02_out_of_range_scalars_get_400_for_cseq() {
    let bytes = lines(&[
        "REGISTER sip:example.com SIP/2.0",
        "Via: SIP/2.0/TCP host129.example.com;branch=z9hG4bK342sdfoi3",
        "To: <sip:user@example.com>",
        "From: <sip:user@example.com>;tag=239232jh3",
        "CSeq: 36893488147419103232 REGISTER",
        "Call-ID: scalar02.23o0pd9vanlq3wnrlnewofjas9ui32",
        "Max-Forwards: 300",
        &format!("Expires: 1{}", "0".repeat(100)),
        "Contact: <sip:user@host129.example.com>",
        "  ;expires=280297596632815",
        "Content-Length: 0",
        "",
    ]);
    let err = check_error(&bytes);
    assert_eq!(err, ParseError::BadHeader("CSeq"));
    assert_eq!(
        err.response_status(),
        Some((400, "Bad Request - Malformed CSeq".to_owned()))
    );
    let r = request(&bytes);
    assert_eq!(
        r.headers.max_forwards(),
        Err(ParseError::BadHeader("Max-Forwards"))
    );
    assert_eq!(r.headers.expires(), Err(ParseError::BadHeader("Expires")));
    let contact_expires = r.headers.contacts().unwrap()[0]
        .params
        .value("expires")
        .map(str::parse::<u32>);
    assert!(matches!(contact_expires, Some(Err(_))));
}

#[test]
fn scalarlg_response_with_huge_cseq_is_parsed_but_cseq_is_unusable() {
    let bytes = lines(&[
        "SIP/2.0 503 Service Unavailable",
        "Via: SIP/2.0/TCP host129.example.com;branch=z9hG4bKzzxdiwo34sw;received=192.0.2.129",
        "To: <sip:user@example.com>",
        "From: <sip:other@example.net>;tag=2easdjfejw",
        "CSeq: 9292394834772304023312 OPTIONS",
        "Call-ID: scalarlg.noase0of0234hn2qofoaf0232aewf2394r",
        "Retry-After: 949302838503028349304023988",
        r#"Warning: 1812 overture "In Progress""#,
        "Content-Length: 0",
        "",
    ]);
    let r = response(&bytes);
    assert_eq!(r.status, 503);
    // The transaction layer cannot match this response, so it is discarded.
    assert_eq!(r.headers.cseq(), Err(ParseError::BadHeader("CSeq")));
}

#[test]
fn quotbal_unterminated_quote_gets_400() {
    let bytes = with_body(
        &[
            "INVITE sip:user@example.com SIP/2.0",
            r#"To: "Mr. J. User <sip:j.user@example.com>"#,
            "From: sip:caller@example.net;tag=93334",
            "Max-Forwards: 10",
            "Call-ID: quotbal.aksdj",
            "Contact: <sip:caller@host59.example.net>",
            "CSeq: 8 INVITE",
            "Via: SIP/2.0/UDP 192.0.2.59:5050;branch=z9hG4bKkdjuw39234",
            "Content-Type: application/sdp",
            "Content-Length: 152",
        ],
        &sdp("192.0.2.15", "192.0.2.15", "0 0"),
    );
    let err = check_error(&bytes);
    assert_eq!(
        (err.clone(), status(&err)),
        (ParseError::BadHeader("To"), Some(400))
    );
}

#[test]
fn ltgtruri_bracketed_request_uri_gets_400() {
    let bytes = with_body(
        &[
            "INVITE <sip:user@example.com> SIP/2.0",
            "To: sip:user@example.com",
            "From: sip:caller@example.net;tag=39291",
            "Max-Forwards: 23",
            "Call-ID: ltgtruri.1@192.0.2.5",
            "CSeq: 1 INVITE",
            "Via: SIP/2.0/UDP 192.0.2.5",
            "Contact: <sip:caller@host5.example.net>",
            "Content-Type: application/sdp",
            "Content-Length: 159",
        ],
        &sdp("192.0.2.5", "192.0.2.5", "3149328700 0"),
    );
    let err = check_error(&bytes);
    assert_eq!(
        (err.clone(), status(&err)),
        (ParseError::BadRequestUri, Some(400))
    );
}

#[test]
fn lwsruri_whitespace_inside_request_uri_gets_400() {
    let bytes = with_body(
        &[
            "INVITE sip:user@example.com; lr SIP/2.0",
            "To: sip:user@example.com;tag=3xfe-9921883-z9f",
            "From: sip:caller@example.net;tag=231413434",
            "Max-Forwards: 5",
            "Call-ID: lwsruri.asdfasdoeoi2323-asdfwrn23-asd834rk423",
            "CSeq: 2130706432 INVITE",
            "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKkdjuw2395",
            "Contact: <sip:caller@host1.example.net>",
            "Content-Type: application/sdp",
            "Content-Length: 159",
        ],
        &sdp("192.0.2.1", "192.0.2.1", "3149328700 0"),
    );
    let err = check_error(&bytes);
    assert_eq!(
        (err.clone(), status(&err)),
        (ParseError::BadRequestUri, Some(400))
    );
}

#[test]
fn lwsstart_extra_spaces_in_request_line_are_tolerated_and_not_forwarded() {
    let bytes = with_body(
        &[
            "INVITE  sip:user@example.com  SIP/2.0",
            "Max-Forwards: 8",
            "To: sip:user@example.com",
            "From: sip:caller@example.net;tag=8814",
            "Call-ID: lwsstart.dfknq234oi243099adsdfnawe3@example.com",
            "CSeq: 1893884 INVITE",
            "Via: SIP/2.0/UDP host1.example.com;branch=z9hG4bKkdjuw3923",
            "Contact: <sip:caller@host1.example.net>",
            "Content-Type: application/sdp",
            "Content-Length: 150",
        ],
        &sdp("192.0.2.1", "192.0.2.1", "0 0"),
    );
    let r = request(&bytes);
    assert_eq!(r.check(), Ok(()));
    assert!(
        r.to_bytes()
            .starts_with(b"INVITE sip:user@example.com SIP/2.0\r\n")
    );
}

#[test]
fn trws_trailing_spaces_after_version_are_tolerated_and_not_forwarded() {
    let bytes = lines(&[
        "OPTIONS sip:remote-target@example.com SIP/2.0  ",
        "Via: SIP/2.0/TCP host1.examle.com;branch=z9hG4bK299342093",
        "To: <sip:remote-target@example.com>",
        "From: <sip:local-resource@example.com>;tag=329429089",
        "Call-ID: trws.oicu34958239neffasdhr2345r",
        "Accept: application/sdp",
        "CSeq: 238923 OPTIONS",
        "Max-Forwards: 70",
        "Content-Length: 0",
        "",
    ]);
    let r = request(&bytes);
    assert_eq!(r.check(), Ok(()));
    assert!(
        r.to_bytes()
            .starts_with(b"OPTIONS sip:remote-target@example.com SIP/2.0\r\n")
    );
}

#[test]
fn escruri_escaped_headers_in_request_uri_get_400() {
    let bytes = with_body(
        &[
            "INVITE sip:user@example.com?Route=%3Csip:example.com%3E SIP/2.0",
            "To: sip:user@example.com",
            "From: sip:caller@example.net;tag=341518",
            "Max-Forwards: 7",
            "Contact: <sip:caller@host39923.example.net>",
            "Call-ID: escruri.23940-asdfhj-aje3br-234q098w-fawerh2q-h4n5",
            "CSeq: 149209342 INVITE",
            "Via: SIP/2.0/UDP host-of-the-hour.example.com;branch=z9hG4bKkdjuw",
            "Content-Type: application/sdp",
            "Content-Length: 150",
        ],
        &sdp("192.0.2.1", "192.0.2.1", "0 0"),
    );
    let err = check_error(&bytes);
    assert_eq!(
        (err.clone(), status(&err)),
        (ParseError::BadRequestUri, Some(400))
    );
}

#[test]
fn baddate_non_gmt_date_is_ignored_by_the_parser() {
    let bytes = with_body(
        &[
            "INVITE sip:user@example.com SIP/2.0",
            "To: sip:user@example.com",
            "From: sip:caller@example.net;tag=2234923",
            "Max-Forwards: 70",
            "Call-ID: baddate.239423mnsadf3j23lj42--sedfnm234",
            "CSeq: 1392934 INVITE",
            "Via: SIP/2.0/UDP host.example.com;branch=z9hG4bKkdjuw",
            "Date: Fri, 01 Jan 2010 16:00:00 EST",
            "Contact: <sip:caller@host5.example.net>",
            "Content-Type: application/sdp",
            "Content-Length: 150",
        ],
        &sdp("192.0.2.5", "192.0.2.5", "0 0"),
    );
    let r = request(&bytes);
    assert_eq!(r.check(), Ok(()));
    assert_eq!(r.headers.values("Date"), ["Fri, 01 Jan 2010 16:00:00 EST"]);
}

#[test]
fn regbadct_contact_with_escaped_header_outside_brackets_gets_400() {
    let bytes = lines(&[
        "REGISTER sip:example.com SIP/2.0",
        "To: sip:user@example.com",
        "From: sip:user@example.com;tag=998332",
        "Max-Forwards: 70",
        "Call-ID: regbadct.k345asrl3fdbv@10.0.0.1",
        "CSeq: 1 REGISTER",
        "Via: SIP/2.0/UDP 135.180.130.133:5060;branch=z9hG4bKkdjuw",
        "Contact: sip:user@example.com?Route=%3Csip:sip.example.com%3E",
        "l: 0",
        "",
    ]);
    let r = request(&bytes);
    let err = r.headers.contacts().unwrap_err();
    assert_eq!(
        (err.clone(), status(&err)),
        (ParseError::BadHeader("Contact"), Some(400))
    );
}

#[test]
fn badaspec_spaces_inside_angle_brackets_get_400() {
    let bytes = lines(&[
        "OPTIONS sip:user@example.org SIP/2.0",
        "Via: SIP/2.0/UDP host4.example.com:5060;branch=z9hG4bKkdju43234",
        "Max-Forwards: 70",
        r#"From: "Bell, Alexander" <sip:a.g.bell@example.com>;tag=433423"#,
        r#"To: "Watson, Thomas" < sip:t.watson@example.org >"#,
        "Call-ID: badaspec.sdf0234n2nds0a099u23h3hnnw009cdkne3",
        "Accept: application/sdp",
        "CSeq: 3923239 OPTIONS",
        "l: 0",
        "",
    ]);
    let err = check_error(&bytes);
    assert_eq!(
        (err.clone(), status(&err)),
        (ParseError::BadHeader("To"), Some(400))
    );
    // The quoted comma in From is fine.
    let from = request(&bytes).headers.from().unwrap();
    assert_eq!(from.display.as_deref(), Some("Bell, Alexander"));
}

#[test]
fn baddn_unquoted_display_names_with_commas_get_400() {
    let bytes = lines(&[
        "OPTIONS sip:t.watson@example.org SIP/2.0",
        "Via:     SIP/2.0/UDP c.example.com:5060;branch=z9hG4bKkdjuw",
        "Max-Forwards:      70",
        "From:    Bell, Alexander <sip:a.g.bell@example.com>;tag=43",
        "To:      Watson, Thomas <sip:t.watson@example.org>",
        "Call-ID: baddn.31415@c.example.com",
        "Accept: application/sdp",
        "CSeq:    3923239 OPTIONS",
        "l: 0",
        "",
    ]);
    let err = check_error(&bytes);
    assert_eq!(
        (err.clone(), status(&err)),
        (ParseError::BadHeader("From"), Some(400))
    );
    assert!(request(&bytes).headers.to().is_err());
}

#[test]
fn badvers_gets_505_built_from_salvaged_headers() {
    let bytes = lines(&[
        "OPTIONS sip:t.watson@example.org SIP/7.0",
        "Via:     SIP/7.0/UDP c.example.com;branch=z9hG4bKkdjuw",
        "Max-Forwards:     70",
        "From:    A. Bell <sip:a.g.bell@example.com>;tag=qweoiqpe",
        "To:      T. Watson <sip:t.watson@example.org>",
        "Call-ID: badvers.31417@c.example.com",
        "CSeq:    1 OPTIONS",
        "l: 0",
        "",
    ]);
    let err = Message::parse(&bytes).unwrap_err();
    assert_eq!(err, ParseError::UnsupportedVersion);
    let (code, reason) = err.response_status().unwrap();
    assert_eq!(code, 505);
    let req = Request::salvage(&bytes).unwrap();
    let resp = Response::for_request(&req, code, Some(&reason));
    assert_eq!(resp.headers.call_id(), Ok("badvers.31417@c.example.com"));
    assert_eq!(
        resp.headers.get("Via"),
        Some("SIP/7.0/UDP c.example.com;branch=z9hG4bKkdjuw")
    );
}

#[test]
fn mismatch01_cseq_method_differs_gets_400() {
    let bytes = lines(&[
        "OPTIONS sip:user@example.com SIP/2.0",
        "To: sip:j.user@example.com",
        "From: sip:caller@example.net;tag=34525",
        "Max-Forwards: 6",
        "Call-ID: mismatch01.dj0234sxdfl3",
        "CSeq: 8 INVITE",
        "Via: SIP/2.0/UDP host.example.com;branch=z9hG4bKkdjuw",
        "l: 0",
        "",
    ]);
    let err = check_error(&bytes);
    assert_eq!(
        (err.clone(), status(&err)),
        (ParseError::CSeqMethodMismatch, Some(400))
    );
}

#[test]
fn mismatch02_unknown_method_with_other_cseq_method_gets_400() {
    let bytes = with_body(
        &[
            "NEWMETHOD sip:user@example.com SIP/2.0",
            "To: sip:j.user@example.com",
            "From: sip:caller@example.net;tag=34525",
            "Max-Forwards: 6",
            "Call-ID: mismatch02.dj0234sxdfl3",
            "CSeq: 8 INVITE",
            "Contact: <sip:caller@host.example.net>",
            "Via: SIP/2.0/UDP host.example.net;branch=z9hG4bKkdjuw",
            "Content-Type: application/sdp",
            "l: 138",
        ],
        &[
            "v=0".into(),
            "o=mhandley 29739 7272939 IN IP4 192.0.2.1".into(),
            "c=IN IP4 192.0.2.1".into(),
            "m=audio 49217 RTP/AVP 0 12".into(),
            "m=video 3227 RTP/AVP 31".into(),
            "a=rtpmap:31 LPC".into(),
        ],
    );
    assert_eq!(request(&bytes).method, Method::Other("NEWMETHOD".into()));
    let err = check_error(&bytes);
    assert_eq!(
        (err.clone(), status(&err)),
        (ParseError::CSeqMethodMismatch, Some(400))
    );
}

#[test]
fn bigcode_status_code_over_699_is_dropped() {
    let bytes = lines(&[
        "SIP/2.0 4294967301 better not break the receiver",
        "Via: SIP/2.0/UDP 192.0.2.105;branch=z9hG4bK2398ndaoe",
        "Call-ID: bigcode.asdof3uj203asdnf3429uasdhfas3ehjasdfas9i",
        "CSeq: 353494 INVITE",
        "From: <sip:user@example.com>;tag=39ansfi3",
        "To: <sip:user@example.edu>;tag=902jndnke3",
        "Content-Length: 0",
        "Contact: <sip:user@host105.example.com>",
        "",
    ]);
    let err = Message::parse(&bytes).unwrap_err();
    assert_eq!(err, ParseError::BadStartLine);
    assert_eq!(err.response_status(), None);
}

// ---------------------------------------------------------------------------
// §3.3 and friends: messages the parser must accept (or reject) so that the
// transaction and application layers can take the decision the RFC describes.

#[test]
fn badbranch_bare_magic_cookie_parses() {
    let bytes = lines(&[
        "OPTIONS sip:user@example.com SIP/2.0",
        "To: sip:user@example.com",
        "From: sip:caller@example.org;tag=33242",
        "Max-Forwards: 3",
        "Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK",
        "Accept: application/sdp",
        "Call-ID: badbranch.sadonfo23i420jv0as0derf3j3n",
        "CSeq: 8 OPTIONS",
        "l: 0",
        "",
    ]);
    let r = request(&bytes);
    assert_eq!(r.check(), Ok(()));
    assert_eq!(r.headers.top_via().unwrap().branch(), Some("z9hG4bK"));
}

#[test]
fn insuf_missing_mandatory_headers_get_400_naming_the_first() {
    let bytes = with_body(
        &[
            "INVITE sip:user@example.com SIP/2.0",
            "CSeq: 193942 INVITE",
            "Via: SIP/2.0/UDP 192.0.2.95;branch=z9hG4bKkdj.insuf",
            "Content-Type: application/sdp",
            "l: 152",
        ],
        &sdp("192.0.2.95", "192.0.2.95", "0 0"),
    );
    let r = request(&bytes);
    let err = r.check().unwrap_err();
    assert_eq!(
        err.response_status(),
        Some((400, "Bad Request - Missing From".to_owned()))
    );
}

#[test]
fn unkscm_and_novelsc_unknown_request_uri_schemes_get_416() {
    for ruri in [
        "nobodyKnowsThisScheme:totallyopaquecontent",
        "soap.beep://192.0.2.103:3002",
    ] {
        let start = format!("OPTIONS {ruri} SIP/2.0");
        let bytes = lines(&[
            &start,
            "To: sip:user@example.com",
            "From: sip:caller@example.net;tag=384",
            "Max-Forwards: 3",
            "Call-ID: unkscm.nasdfasser0q239nwsdfasdkl34",
            "CSeq: 3923423 OPTIONS",
            "Via: SIP/2.0/TCP host9.example.com;branch=z9hG4bKkdjuw39234",
            "Content-Length: 0",
            "",
        ]);
        let r = request(&bytes);
        assert_eq!(r.uri, Uri::Other(ruri.into()));
        let err = r.check().unwrap_err();
        assert_eq!(
            (err.clone(), status(&err)),
            (ParseError::UnsupportedUriScheme, Some(416))
        );
    }
}

#[test]
fn unksm2_unknown_schemes_in_to_from_contact_parse_opaquely() {
    let bytes = lines(&[
        "REGISTER sip:example.com SIP/2.0",
        "To: isbn:2983792873",
        "From: <http://www.example.com>;tag=3234233",
        "Call-ID: unksm2.daksdj@hyphenated-host.example.com",
        "CSeq: 234902 REGISTER",
        "Max-Forwards: 70",
        "Via: SIP/2.0/UDP 192.0.2.21:5060;branch=z9hG4bKkdjuw",
        "Contact: <name:John_Smith>",
        "l: 0",
        "",
    ]);
    let r = request(&bytes);
    assert_eq!(r.check(), Ok(()));
    assert_eq!(
        r.headers.to().unwrap().uri,
        Uri::Other("isbn:2983792873".into())
    );
    assert_eq!(
        r.headers.from().unwrap().uri.to_string(),
        "http://www.example.com"
    );
    assert_eq!(r.headers.contacts().unwrap()[0].uri.scheme(), "name");
}

#[test]
fn multi01_repeated_single_value_headers_get_400() {
    let bytes = with_body(
        &[
            "INVITE sip:user@company.com SIP/2.0",
            "Contact: <sip:caller@host25.example.net>",
            "Via: SIP/2.0/UDP 192.0.2.25;branch=z9hG4bKkdjuw",
            "Max-Forwards: 70",
            "CSeq: 5 INVITE",
            "Call-ID: multi01.98asdh@192.0.2.1",
            "CSeq: 59 INVITE",
            "Call-ID: multi01.98asdh@192.0.2.2",
            "From: sip:caller@example.com;tag=3413415",
            "To: sip:user@example.com",
            "To: sip:other@example.net",
            "From: sip:caller@example.net;tag=2923420123",
            "Content-Type: application/sdp",
            "l: 154",
            "Contact: <sip:caller@host36.example.net>",
            "Max-Forwards: 5",
        ],
        &[sdp("192.0.2.25", "192.0.2.25", "0 0"), vec![String::new()]].concat(),
    );
    let err = check_error(&bytes);
    assert!(matches!(err, ParseError::DuplicateHeader(_)), "{err:?}");
    assert_eq!(status(&err), Some(400));
}

#[test]
fn mcl01_conflicting_content_lengths_get_400_or_close_the_stream() {
    let bytes = lines(&[
        "OPTIONS sip:user@example.com SIP/2.0",
        "Via: SIP/2.0/UDP host5.example.net;branch=z9hG4bK293423",
        "To: sip:user@example.com",
        "From: sip:other@example.net;tag=3923942",
        "Call-ID: mcl01.fhn2323orihawfdoa3o4r52o3irsdf",
        "CSeq: 15932 OPTIONS",
        "Content-Length: 13",
        "Max-Forwards: 60",
        "Content-Length: 5",
        "Content-Type: text/plain",
        "",
        "There's no way to know how many octets are supposed to be here.",
    ]);
    let err = Message::parse(&bytes).unwrap_err();
    assert_eq!(status(&err), Some(400));
    let mut framer = StreamFramer::new(64 * 1024);
    framer.push(&bytes);
    assert!(framer.next_frame().is_err());
}

#[test]
fn bcast_broadcast_via_in_response_parses() {
    let bytes = with_body(
        &[
            "SIP/2.0 200 OK",
            "Via: SIP/2.0/UDP 192.0.2.198;branch=z9hG4bK1324923",
            "Via: SIP/2.0/UDP 255.255.255.255;branch=z9hG4bK1saber23",
            "Call-ID: bcast.0384840201234ksdfak3j2erwedfsASdf",
            "CSeq: 35 INVITE",
            "From: sip:user@example.com;tag=11141343",
            "To: sip:user@example.edu;tag=2229",
            "Content-Length: 154",
            "Content-Type: application/sdp",
            "Contact: <sip:user@host28.example.com>",
        ],
        &sdp("192.0.2.198", "192.0.2.198", "0 0"),
    );
    let r = response(&bytes);
    let vias = r.headers.vias().unwrap();
    assert_eq!(vias[1].host, Host::V4(std::net::Ipv4Addr::BROADCAST));
}

#[test]
fn bext01_unknown_required_extensions_are_exposed_for_420() {
    let bytes = lines(&[
        "OPTIONS sip:user@example.com SIP/2.0",
        "To: sip:j_user@example.com",
        "From: sip:caller@example.net;tag=242etr",
        "Max-Forwards: 6",
        "Call-ID: bext01.0ha0isndaksdj",
        "Require: nothingSupportsThis, nothingSupportsThisEither",
        "Proxy-Require: noProxiesSupportThis, norDoAnyProxiesSupportThis",
        "CSeq: 8 OPTIONS",
        "Via: SIP/2.0/TLS fold-and-staple.example.com;branch=z9hG4bKkdjuw",
        "Content-Length: 0",
        "",
    ]);
    let r = request(&bytes);
    assert_eq!(r.check(), Ok(()));
    assert_eq!(
        r.headers.require(),
        ["nothingSupportsThis", "nothingSupportsThisEither"]
    );
    assert_eq!(r.headers.values("Proxy-Require").len(), 2);
}

#[test]
fn sdp01_body_type_outside_accept_is_detectable_for_415() {
    let bytes = with_body(
        &[
            "INVITE sip:user@example.com SIP/2.0",
            "To: sip:j_user@example.com",
            "Contact: <sip:caller@host15.example.net>",
            "From: sip:caller@example.net;tag=234",
            "Max-Forwards: 5",
            "Call-ID: sdp01.ndaksdj9342dasdd",
            "Accept: text/nobodyKnowsThis",
            "CSeq: 8 INVITE",
            "Via: SIP/2.0/UDP 192.0.2.15;branch=z9hG4bKkdjuw",
            "Content-Length: 150",
            "Content-Type: application/sdp",
        ],
        &sdp("192.0.2.5", "192.0.2.5", "0 0"),
    );
    let r = request(&bytes);
    assert_eq!(r.check(), Ok(()));
    let ct = r.headers.content_type().unwrap().unwrap();
    let accept = r.headers.accept().unwrap();
    assert_eq!(accept[0].essence(), "text/nobodyknowsthis");
    assert!(!accept.iter().any(|a| ct.matches(a)));
}

#[test]
fn inv2543_rfc2543_style_request_is_accepted() {
    let bytes = with_body(
        &[
            "INVITE sip:UserB@example.com SIP/2.0",
            "Via: SIP/2.0/UDP iftgw.example.com",
            "From: <sip:+13035551111@ift.client.example.net;user=phone>",
            "Record-Route: <sip:UserB@example.com;maddr=ss1.example.com>",
            "To: sip:+16505552222@ss1.example.net;user=phone",
            "Call-ID: inv2543.1717@ift.client.example.com",
            "CSeq: 56 INVITE",
            "Content-Type: application/sdp",
        ],
        &[
            "v=0".into(),
            "o=mhandley 29739 7272939 IN IP4 192.0.2.5".into(),
            "s=-".into(),
            "c=IN IP4 192.0.2.5".into(),
            "t=0 0".into(),
            "m=audio 49217 RTP/AVP 0".into(),
        ],
    );
    let r = request(&bytes);
    assert_eq!(r.check(), Ok(()));
    assert_eq!(r.headers.top_via().unwrap().branch(), None);
    assert_eq!(r.headers.from().unwrap().tag(), None);
    assert_eq!(r.headers.max_forwards(), Ok(None));
    // No Content-Length over UDP: the body is the rest of the datagram.
    assert!(r.body.ends_with(b"m=audio 49217 RTP/AVP 0\r\n"));
    // In the bare To form, ;user=phone is a header parameter (RFC 3261 §20.10).
    assert_eq!(r.headers.to().unwrap().params.value("user"), Some("phone"));
}

#[test]
fn regescrt_and_cparam_contacts_parse() {
    let base = |contact: &str| {
        lines(&[
            "REGISTER sip:example.com SIP/2.0",
            "To: sip:user@example.com",
            "From: sip:user@example.com;tag=8",
            "Max-Forwards: 70",
            "Call-ID: regescrt.k345asrl3fdbv@192.0.2.1",
            "CSeq: 14398234 REGISTER",
            "Via: SIP/2.0/UDP host5.example.com;branch=z9hG4bKkdjuw",
            contact,
            "L:0",
            "",
        ])
    };
    let r = request(&base(
        "M: <sip:user@example.com?Route=%3Csip:sip.example.com%3E>",
    ));
    let c = r.headers.contacts().unwrap().remove(0);
    let u = c.uri.as_sip().unwrap();
    assert_eq!(
        u.headers,
        [("Route".to_owned(), "<sip:sip.example.com>".to_owned())]
    );

    let bare = request(&base(
        "Contact: sip:+19725552222@gw1.example.net;unknownparam",
    ));
    let c = bare.headers.contacts().unwrap().remove(0);
    assert_eq!(c.params.get("unknownparam"), Some(None));
    let bracketed = request(&base(
        "Contact: <sip:+19725552222@gw1.example.net;unknownparam>",
    ));
    let c = bracketed.headers.contacts().unwrap().remove(0);
    assert_eq!(c.uri.as_sip().unwrap().param("unknownparam"), Some(None));
}

#[test]
fn regaut01_unknown_auth_scheme_parses() {
    let bytes = lines(&[
        "REGISTER sip:example.com SIP/2.0",
        "To: sip:j.user@example.com",
        "From: sip:j.user@example.com;tag=87321hj23128",
        "Max-Forwards: 8",
        "Call-ID: regaut01.0ha0isndaksdj",
        "CSeq: 9338 REGISTER",
        "Via: SIP/2.0/TCP 192.0.2.253;branch=z9hG4bKkdjuw",
        "Authorization: NoOneKnowsThisScheme opaque-data=here",
        "Content-Length:0",
        "",
    ]);
    let r = request(&bytes);
    assert_eq!(r.check(), Ok(()));
    let auth = r.headers.authorization().unwrap().unwrap();
    assert_eq!(auth.scheme, "NoOneKnowsThisScheme");
    assert_eq!(auth.param("opaque-data"), Some("here"));
}

#[test]
fn zeromf_zero_max_forwards_is_valid() {
    let bytes = lines(&[
        "OPTIONS sip:user@example.com SIP/2.0",
        "To: sip:user@example.com",
        "From: sip:caller@example.net;tag=3ghsd41",
        "Call-ID: zeromf.jfasdlfnm2o2l43r5u0asdfas",
        "CSeq: 39234321 OPTIONS",
        "Via: SIP/2.0/UDP host1.example.com;branch=z9hG4bKkdjuw2349i",
        "Max-Forwards: 0",
        "Content-Length: 0",
        "",
    ]);
    let r = request(&bytes);
    assert_eq!(r.check(), Ok(()));
    assert_eq!(r.headers.max_forwards(), Ok(Some(0)));
}
