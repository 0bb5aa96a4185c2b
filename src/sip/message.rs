//! SIP requests and responses (RFC 3261 §7): parsing from bytes, typed access to the
//! headers the server needs, canonical serialization, and building responses per §8.2.6.

use std::fmt;
use std::io::Write as _;

use crate::sip::error::ParseError;
use crate::sip::header::{Headers, is_token, known_name, parse_content_length};
use crate::sip::uri::{Uri, scheme_of};

/// Request methods; unknown methods are kept by name (case-sensitive, §7.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    Ack,
    Bye,
    Cancel,
    Info,
    Invite,
    Message,
    Notify,
    Options,
    Prack,
    Publish,
    Refer,
    Register,
    Subscribe,
    Update,
    Other(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    pub uri: Uri,
    pub headers: Headers,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub reason: String,
    pub headers: Headers,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Request(Request),
    Response(Response),
}

impl Method {
    /// Methods are case-sensitive (RFC 3261 §7.1): `invite` is an unknown method.
    pub fn from_token(s: &str) -> Method {
        match s {
            "ACK" => Method::Ack,
            "BYE" => Method::Bye,
            "CANCEL" => Method::Cancel,
            "INFO" => Method::Info,
            "INVITE" => Method::Invite,
            "MESSAGE" => Method::Message,
            "NOTIFY" => Method::Notify,
            "OPTIONS" => Method::Options,
            "PRACK" => Method::Prack,
            "PUBLISH" => Method::Publish,
            "REFER" => Method::Refer,
            "REGISTER" => Method::Register,
            "SUBSCRIBE" => Method::Subscribe,
            "UPDATE" => Method::Update,
            other => Method::Other(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Info => "INFO",
            Method::Invite => "INVITE",
            Method::Message => "MESSAGE",
            Method::Notify => "NOTIFY",
            Method::Options => "OPTIONS",
            Method::Prack => "PRACK",
            Method::Publish => "PUBLISH",
            Method::Refer => "REFER",
            Method::Register => "REGISTER",
            Method::Subscribe => "SUBSCRIBE",
            Method::Update => "UPDATE",
            Method::Other(s) => s,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The default reason phrase for a status code (RFC 3261 §21, RFC 3903, RFC 6665).
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Trying",
        180 => "Ringing",
        181 => "Call Is Being Forwarded",
        182 => "Queued",
        183 => "Session Progress",
        200 => "OK",
        202 => "Accepted",
        204 => "No Notification",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Moved Temporarily",
        305 => "Use Proxy",
        380 => "Alternative Service",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        410 => "Gone",
        412 => "Conditional Request Failed",
        413 => "Request Entity Too Large",
        414 => "Request-URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        420 => "Bad Extension",
        421 => "Extension Required",
        423 => "Interval Too Brief",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        484 => "Address Incomplete",
        485 => "Ambiguous",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        489 => "Bad Event",
        491 => "Request Pending",
        493 => "Undecipherable",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        505 => "Version Not Supported",
        513 => "Message Too Large",
        600 => "Busy Everywhere",
        603 => "Decline",
        604 => "Does Not Exist Anywhere",
        606 => "Not Acceptable",
        _ => match status / 100 {
            1 => "Provisional",
            2 => "Success",
            3 => "Redirection",
            4 => "Client Error",
            5 => "Server Error",
            _ => "Global Failure",
        },
    }
}

// ---------------------------------------------------------------------------
// Parsing

/// One line of the header section: `[start, end)` without the line terminator.
struct Line {
    start: usize,
    end: usize,
}

/// Iterates over CRLF- (or bare LF-) terminated lines; `None` at the end of input.
fn next_line(buf: &[u8], from: usize) -> Option<(Line, usize)> {
    let rel = buf.get(from..)?.iter().position(|&b| b == b'\n')?;
    let nl = from + rel;
    let end = if nl > from && buf[nl - 1] == b'\r' {
        nl - 1
    } else {
        nl
    };
    Some((Line { start: from, end }, nl + 1))
}

fn is_wsp(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn trim_wsp(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if is_wsp(*first) {
            s = rest;
        } else {
            break;
        }
    }
    while let [rest @ .., last] = s {
        if is_wsp(*last) {
            s = rest;
        } else {
            break;
        }
    }
    s
}

/// Where the message starts after leading CRLFs (RFC 3261 §7.5 allows ignoring them).
fn skip_leading_crlf(buf: &[u8]) -> usize {
    buf.iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(buf.len())
}

enum StartLine {
    Request { method: Method, uri: Uri },
    Response { status: u16, reason: String },
}

/// `SIP/2.0` compared case-insensitively; another `SIP/x` is UnsupportedVersion and
/// anything else is not SIP at all.
fn check_version(v: &str) -> Result<(), ParseError> {
    if v.eq_ignore_ascii_case("SIP/2.0") {
        Ok(())
    } else if v
        .as_bytes()
        .get(..4)
        .is_some_and(|p| p.eq_ignore_ascii_case(b"SIP/"))
    {
        Err(ParseError::UnsupportedVersion)
    } else {
        Err(ParseError::BadStartLine)
    }
}

/// The Request-URI as sent. A URI that does not parse is kept as `Uri::Other` with
/// its raw text so that the request can still be answered; `Request::check` rejects it.
fn lenient_request_uri(text: &str) -> Uri {
    Uri::parse(text).unwrap_or_else(|_| Uri::Other(text.to_owned()))
}

fn parse_start_line(line: &[u8], lenient_version: bool) -> Result<StartLine, ParseError> {
    if line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"SIP/") {
        // Status-Line = SIP-Version SP Status-Code SP Reason-Phrase
        let (version, rest) = match line.iter().position(|&b| b == b' ') {
            Some(sp) => (&line[..sp], &line[sp + 1..]),
            None => return Err(ParseError::BadStartLine),
        };
        let version = std::str::from_utf8(version).map_err(|_| ParseError::BadStartLine)?;
        check_version(version)?;
        // Exactly three digits; "4294967301" and friends are dropped (RFC 4475 bigcode).
        let (code, reason) = match rest {
            [a, b, c] => ([*a, *b, *c], &[][..]),
            [a, b, c, b' ', reason @ ..] => ([*a, *b, *c], reason),
            _ => return Err(ParseError::BadStartLine),
        };
        if !code.iter().all(u8::is_ascii_digit) {
            return Err(ParseError::BadStartLine);
        }
        let status = code
            .iter()
            .fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0'));
        if !(100..=699).contains(&status) {
            return Err(ParseError::BadStartLine);
        }
        let reason = std::str::from_utf8(reason)
            .map_err(|_| ParseError::NotUtf8("Reason-Phrase"))?
            .to_owned();
        return Ok(StartLine::Response { status, reason });
    }
    // Request-Line = Method SP Request-URI SP SIP-Version. Extra SP between the parts
    // and trailing SP are tolerated (RFC 4475 lwsstart, trws).
    let text = std::str::from_utf8(line).map_err(|_| ParseError::BadStartLine)?;
    let text = text.trim_end_matches([' ', '\t']);
    let (method, rest) = text.split_once(' ').ok_or(ParseError::BadStartLine)?;
    let (uri, version) = rest.rsplit_once(' ').ok_or(ParseError::BadStartLine)?;
    let uri = uri.trim_matches(' ');
    if !is_token(method) || uri.is_empty() {
        return Err(ParseError::BadStartLine);
    }
    match check_version(version) {
        Ok(()) => {}
        Err(_) if lenient_version => {}
        Err(e) => return Err(e),
    }
    Ok(StartLine::Request {
        method: Method::from_token(method),
        uri: lenient_request_uri(uri),
    })
}

/// Parses the header section starting at `pos`; returns the headers and the index
/// just after the empty line. With `lossy`, undecodable text is replaced and broken
/// lines skipped instead of failing (used only to salvage enough to answer).
fn parse_header_section(
    buf: &[u8],
    mut pos: usize,
    lossy: bool,
) -> Result<(Headers, usize), ParseError> {
    let mut headers = Headers::with_capacity(16);
    loop {
        let (line, next) = next_line(buf, pos).ok_or(ParseError::Incomplete)?;
        let bytes = &buf[line.start..line.end];
        if bytes.is_empty() {
            return Ok((headers, next));
        }
        pos = next;
        let Some(colon) = bytes.iter().position(|&b| b == b':') else {
            if lossy {
                continue;
            }
            return Err(ParseError::BadHeaderLine);
        };
        let name = trim_wsp(&bytes[..colon]);
        // A header cannot start with whitespace: that is a continuation line, and
        // there is nothing to continue before the first header.
        let name = match std::str::from_utf8(name) {
            Ok(n) if is_token(n) && !is_wsp(bytes[0]) => n,
            _ if lossy => continue,
            _ => return Err(ParseError::BadHeaderLine),
        };
        let known = known_name(name);
        let place = known.unwrap_or("extension header");

        // Undo folding: following lines that start with SP/HT continue this one
        // (RFC 3261 §7.3.1), each fold becoming a single space.
        let first = trim_wsp(&bytes[colon + 1..]);
        let mut folded: Option<Vec<u8>> = None;
        while let Some((cont, after)) = next_line(buf, pos) {
            let cbytes = &buf[cont.start..cont.end];
            if cbytes.first().is_none_or(|b| !is_wsp(*b)) {
                break;
            }
            let piece = trim_wsp(cbytes);
            let acc = folded.get_or_insert_with(|| first.to_vec());
            if !piece.is_empty() {
                if !acc.is_empty() {
                    acc.push(b' ');
                }
                acc.extend_from_slice(piece);
            }
            pos = after;
        }
        let value = match folded {
            None => match std::str::from_utf8(first) {
                Ok(s) => s.to_owned(),
                Err(_) if lossy => String::from_utf8_lossy(first).into_owned(),
                Err(_) => return Err(ParseError::NotUtf8(place)),
            },
            Some(v) => match String::from_utf8(v) {
                Ok(s) => s,
                Err(e) if lossy => String::from_utf8_lossy(e.as_bytes()).into_owned(),
                Err(_) => return Err(ParseError::NotUtf8(place)),
            },
        };
        let name = known.map_or_else(|| name.to_owned(), str::to_owned);
        headers.push_canonical(name, value);
    }
}

/// The Content-Length declared by the headers; several lines must agree
/// (RFC 4475 mcl01).
fn declared_content_length(headers: &Headers) -> Result<Option<usize>, ParseError> {
    let mut declared = None;
    for v in headers.get_all("Content-Length") {
        let n = parse_content_length(v).ok_or(ParseError::BadContentLength)?;
        match declared {
            Some(d) if d != n => return Err(ParseError::DuplicateHeader("Content-Length")),
            _ => declared = Some(n),
        }
    }
    Ok(declared)
}

impl Message {
    /// Parses one complete message (a UDP datagram or a frame cut by `StreamFramer`).
    pub fn parse(buf: &[u8]) -> Result<Message, ParseError> {
        let start = skip_leading_crlf(buf);
        let (line, after_start) = next_line(buf, start).ok_or(ParseError::Incomplete)?;
        let start_line = parse_start_line(&buf[line.start..line.end], false)?;
        let (headers, body_start) = parse_header_section(buf, after_start, false)?;
        let rest = &buf[body_start..];
        // RFC 3261 §18.3: a datagram shorter than Content-Length is an error; extra
        // octets after the body are discarded (RFC 4475 dblreq).
        let body = match declared_content_length(&headers)? {
            Some(n) => rest.get(..n).ok_or(ParseError::BadContentLength)?,
            None => rest,
        };
        let body = body.to_vec();
        Ok(match start_line {
            StartLine::Request { method, uri } => Message::Request(Request {
                method,
                uri,
                headers,
                body,
            }),
            StartLine::Response { status, reason } => Message::Response(Response {
                status,
                reason,
                headers,
                body,
            }),
        })
    }

    pub fn headers(&self) -> &Headers {
        match self {
            Message::Request(r) => &r.headers,
            Message::Response(r) => &r.headers,
        }
    }

    pub fn headers_mut(&mut self) -> &mut Headers {
        match self {
            Message::Request(r) => &mut r.headers,
            Message::Response(r) => &mut r.headers,
        }
    }

    pub fn body(&self) -> &[u8] {
        match self {
            Message::Request(r) => &r.body,
            Message::Response(r) => &r.body,
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Message::Request(r) => r.to_bytes(),
            Message::Response(r) => r.to_bytes(),
        }
    }
}

// ---------------------------------------------------------------------------
// Serialization

/// Writes the header lines and the body; Content-Length always comes from the body.
fn write_headers_and_body(out: &mut Vec<u8>, headers: &Headers, body: &[u8]) {
    for h in headers.iter() {
        if h.name == "Content-Length" {
            continue;
        }
        out.extend_from_slice(h.name.as_bytes());
        out.extend_from_slice(b": ");
        // A CR or LF would end or inject lines (a stray CR can also arrive inside a
        // received line): flatten to spaces and re-trim, as a parse would.
        if h.value.bytes().any(|b| b == b'\r' || b == b'\n') {
            let flat = h.value.replace(['\r', '\n'], " ");
            out.extend_from_slice(flat.trim_matches([' ', '\t']).as_bytes());
        } else {
            out.extend_from_slice(h.value.as_bytes());
        }
        out.extend_from_slice(b"\r\n");
    }
    // Writing into a Vec cannot fail.
    let _ = write!(out, "Content-Length: {}\r\n\r\n", body.len());
    out.extend_from_slice(body);
}

fn estimated_size(headers: &Headers, body: &[u8]) -> usize {
    128 + body.len()
        + headers
            .iter()
            .map(|h| h.name.len() + h.value.len() + 4)
            .sum::<usize>()
}

// ---------------------------------------------------------------------------
// Request

/// Headers that RFC 3261 §7.3.1 / §20 allow only once; duplicates make the request
/// ambiguous (RFC 4475 multi01).
const SINGLE_HEADERS: [&str; 11] = [
    "From",
    "To",
    "Call-ID",
    "CSeq",
    "Max-Forwards",
    "Content-Length",
    "Content-Type",
    "Expires",
    "Event",
    "Subscription-State",
    "SIP-If-Match",
];

impl Request {
    pub fn new(method: Method, uri: Uri) -> Request {
        Request {
            method,
            uri,
            headers: Headers::new(),
            body: Vec::new(),
        }
    }

    /// Validates what a UAS needs before it can answer anything but 400/416
    /// (RFC 3261 §8.1.1, §8.2.2.1): the mandatory headers exist once and parse, the
    /// CSeq method matches, and the Request-URI is a well-formed sip/sips/tel URI.
    pub fn check(&self) -> Result<(), ParseError> {
        let h = &self.headers;
        for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
            if h.get(name).is_none() {
                return Err(ParseError::MissingHeader(name));
            }
        }
        for name in SINGLE_HEADERS {
            if h.count(name) > 1 {
                return Err(ParseError::DuplicateHeader(name));
            }
        }
        h.vias()?;
        h.from()?;
        h.to()?;
        h.call_id()?;
        let cseq = h.cseq()?;
        h.max_forwards()?;
        h.content_type()?;
        // RFC 3261 §8.1.1.5: the CSeq method matches the request (RFC 4475 mismatch01).
        if cseq.method != self.method {
            return Err(ParseError::CSeqMethodMismatch);
        }
        self.check_request_uri()
    }

    fn check_request_uri(&self) -> Result<(), ParseError> {
        match &self.uri {
            // RFC 3261 §19.1.1: headers are not allowed in a Request-URI (RFC 4475 escruri).
            Uri::Sip(u) if !u.headers.is_empty() => Err(ParseError::BadRequestUri),
            Uri::Sip(_) | Uri::Tel(_) => Ok(()),
            Uri::Other(text) => {
                let scheme = scheme_of(text).ok_or(ParseError::BadRequestUri)?;
                // An `Other` sip/sips/tel URI is one that failed to parse.
                if ["sip", "sips", "tel"]
                    .iter()
                    .any(|s| s.eq_ignore_ascii_case(scheme))
                    || Uri::parse(text).is_err()
                {
                    Err(ParseError::BadRequestUri)
                } else {
                    Err(ParseError::UnsupportedUriScheme)
                }
            }
        }
    }

    /// Best-effort parse of a request that `Message::parse` rejected, keeping only
    /// what is needed to answer it (RFC 3261 §8.2.6): a lenient start line (any
    /// version), headers decoded lossily, broken lines skipped, no body. `None` when
    /// the bytes are not a request at all.
    pub fn salvage(buf: &[u8]) -> Option<Request> {
        let start = skip_leading_crlf(buf);
        let (line, after) = next_line(buf, start)?;
        let StartLine::Request { method, uri } =
            parse_start_line(&buf[line.start..line.end], true).ok()?
        else {
            return None;
        };
        let headers = match parse_header_section(buf, after, true) {
            Ok((h, _)) => h,
            // Even an unterminated header section is enough to answer.
            Err(_) => {
                let mut end = buf.len();
                while end > after && buf[end - 1] != b'\n' {
                    end -= 1;
                }
                let mut owned = buf.get(..end)?.to_vec();
                owned.extend_from_slice(b"\r\n");
                parse_header_section(&owned, after, true).ok()?.0
            }
        };
        Some(Request {
            method,
            uri,
            headers,
            body: Vec::new(),
        })
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(estimated_size(&self.headers, &self.body));
        let _ = write!(out, "{} {} SIP/2.0\r\n", self.method, self.uri);
        write_headers_and_body(&mut out, &self.headers, &self.body);
        out
    }
}

// ---------------------------------------------------------------------------
// Response

impl Response {
    /// A response with the default reason phrase and no headers.
    pub fn new(status: u16) -> Response {
        Response {
            status,
            reason: reason_phrase(status).to_owned(),
            headers: Headers::new(),
            body: Vec::new(),
        }
    }

    /// A response to `req` carrying its Via, From, To, Call-ID and CSeq values as
    /// received (RFC 3261 §8.2.6.2); works on requests that failed `check()`.
    pub fn for_request(req: &Request, status: u16, reason: Option<&str>) -> Response {
        let mut resp = Response::new(status);
        if let Some(r) = reason {
            resp.reason = r.replace(['\r', '\n'], " ");
        }
        for h in req.headers.iter() {
            if matches!(h.name.as_str(), "Via" | "From" | "To" | "Call-ID" | "CSeq") {
                resp.headers.push_canonical(h.name.clone(), h.value.clone());
            }
        }
        resp
    }

    /// Adds `;tag=` to To when it has none (RFC 3261 §8.2.6.2). A To that does not
    /// parse is left alone.
    pub fn set_to_tag(&mut self, tag: &str) {
        let needs_tag = matches!(self.headers.to(), Ok(to) if to.tag().is_none());
        if needs_tag && let Some(h) = self.headers.first_mut("To") {
            h.value.push_str(";tag=");
            h.value.push_str(tag);
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(estimated_size(&self.headers, &self.body));
        let reason = if self.reason.contains(['\r', '\n']) {
            self.reason.replace(['\r', '\n'], " ")
        } else {
            self.reason.clone()
        };
        let _ = write!(out, "SIP/2.0 {} {}\r\n", self.status, reason);
        write_headers_and_body(&mut out, &self.headers, &self.body);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUBSCRIBE: &str = "SUBSCRIBE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bKabc\r\n\
Max-Forwards: 70\r\n\
From: <sip:alice@example.com>;tag=a1\r\n\
To: <sip:bob@example.com>\r\n\
Call-ID: c1@192.0.2.1\r\n\
CSeq: 1 SUBSCRIBE\r\n\
Event: presence\r\n\
Expires: 600\r\n\
Contact: <sip:alice@192.0.2.1:5060;transport=tcp>\r\n\
Content-Length: 0\r\n\
\r\n";

    fn request(text: &str) -> Request {
        match Message::parse(text.as_bytes()) {
            Ok(Message::Request(r)) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn methods_are_case_sensitive() {
        assert_eq!(Method::from_token("PUBLISH"), Method::Publish);
        assert_eq!(
            Method::from_token("publish"),
            Method::Other("publish".into())
        );
        assert_eq!(Method::from_token("RE%47IST%45R").as_str(), "RE%47IST%45R");
        assert_eq!(Method::Notify.to_string(), "NOTIFY");
    }

    #[test]
    fn parses_a_subscribe_and_checks_it() {
        let r = request(SUBSCRIBE);
        assert_eq!(r.method, Method::Subscribe);
        assert_eq!(r.uri.to_string(), "sip:bob@example.com");
        assert_eq!(r.headers.len(), 10);
        assert_eq!(r.headers.expires(), Ok(Some(600)));
        assert_eq!(r.check(), Ok(()));
        assert!(r.body.is_empty());
    }

    #[test]
    fn folding_is_undone_and_compact_names_expand() {
        let r = request(
            "OPTIONS sip:a@b SIP/2.0\r\nv: SIP/2.0/UDP h\r\n ;branch=z9hG4bK1\r\nSubject: one\r\n\ttwo \r\n  three\r\ni: x@y\r\n\r\n",
        );
        assert_eq!(r.headers.get("Via"), Some("SIP/2.0/UDP h ;branch=z9hG4bK1"));
        assert_eq!(r.headers.get("subject"), Some("one two three"));
        assert_eq!(
            r.headers.iter().nth(2).map(|h| h.name.as_str()),
            Some("Call-ID")
        );
    }

    #[test]
    fn leading_crlf_is_skipped_and_bare_lf_accepted() {
        let r = request("\r\n\r\nOPTIONS sip:a@b SIP/2.0\nCall-ID: x\n\n");
        assert_eq!(r.headers.call_id(), Ok("x"));
    }

    #[test]
    fn content_length_frames_the_body() {
        let base = "MESSAGE sip:a@b SIP/2.0\r\nContent-Length: 5\r\n\r\nhello world";
        assert_eq!(request(base).body, b"hello");
        let short = "MESSAGE sip:a@b SIP/2.0\r\nl: 50\r\n\r\nhello";
        assert_eq!(
            Message::parse(short.as_bytes()),
            Err(ParseError::BadContentLength)
        );
        let none = "MESSAGE sip:a@b SIP/2.0\r\nX: y\r\n\r\nrest\r\n";
        assert_eq!(request(none).body, b"rest\r\n");
        let bad = "MESSAGE sip:a@b SIP/2.0\r\nContent-Length: five\r\n\r\n";
        assert_eq!(
            Message::parse(bad.as_bytes()),
            Err(ParseError::BadContentLength)
        );
        let two = "MESSAGE sip:a@b SIP/2.0\r\nContent-Length: 1\r\nl: 2\r\n\r\nab";
        assert_eq!(
            Message::parse(two.as_bytes()),
            Err(ParseError::DuplicateHeader("Content-Length"))
        );
    }

    #[test]
    fn non_utf8_header_value_is_named_but_body_may_be_binary() {
        let mut bad = b"MESSAGE sip:a@b SIP/2.0\r\nSubject: \xff\xfe\r\n\r\n".to_vec();
        assert_eq!(Message::parse(&bad), Err(ParseError::NotUtf8("Subject")));
        bad = b"MESSAGE sip:a@b SIP/2.0\r\nl: 3\r\n\r\n\xff\x00\xfe".to_vec();
        assert_eq!(Message::parse(&bad).unwrap().body(), b"\xff\x00\xfe");
    }

    #[test]
    fn start_line_errors() {
        let p = |s: &str| Message::parse(s.as_bytes()).err();
        assert_eq!(
            p("OPTIONS sip:a@b SIP/3.0\r\n\r\n"),
            Some(ParseError::UnsupportedVersion)
        );
        assert_eq!(
            p("SIP/1.0 200 OK\r\n\r\n"),
            Some(ParseError::UnsupportedVersion)
        );
        assert_eq!(p("GET / HTTP/1.1\r\n\r\n"), Some(ParseError::BadStartLine));
        assert_eq!(
            p("OPTIONS sip:a@b SIé/2.0\r\n\r\n"),
            Some(ParseError::BadStartLine)
        );
        assert_eq!(p("SIP/2.0 20 OK\r\n\r\n"), Some(ParseError::BadStartLine));
        assert_eq!(p("SIP/2.0 099 x\r\n\r\n"), Some(ParseError::BadStartLine));
        assert_eq!(p("OPTIONS\r\n\r\n"), Some(ParseError::BadStartLine));
        assert_eq!(
            p("OPTIONS sip:a@b SIP/2.0\r\nX: y\r\n"),
            Some(ParseError::Incomplete)
        );
        assert_eq!(p(""), Some(ParseError::Incomplete));
        assert_eq!(
            p("OPTIONS sip:a@b SIP/2.0\r\n no-header\r\n\r\n"),
            Some(ParseError::BadHeaderLine)
        );
        assert_eq!(
            p("OPTIONS sip:a@b SIP/2.0\r\nbad line\r\n\r\n"),
            Some(ParseError::BadHeaderLine)
        );
    }

    #[test]
    fn responses_keep_reason_and_allow_empty_one() {
        let Ok(Message::Response(r)) = Message::parse(b"SIP/2.0 100 \r\nCall-ID: x\r\n\r\n") else {
            panic!()
        };
        assert_eq!((r.status, r.reason.as_str()), (100, ""));
        let Ok(Message::Response(r)) = Message::parse(b"SIP/2.0 489 Bad Event\r\n\r\n") else {
            panic!()
        };
        assert_eq!((r.status, r.reason.as_str()), (489, "Bad Event"));
    }

    #[test]
    fn check_reports_missing_duplicate_and_mismatch() {
        let without = |name: &str| {
            let mut r = request(SUBSCRIBE);
            r.headers.remove(name);
            r.check()
        };
        for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
            assert_eq!(without(name), Err(ParseError::MissingHeader(name)));
        }
        let mut r = request(SUBSCRIBE);
        r.headers.push("t", "<sip:carol@example.com>");
        assert_eq!(r.check(), Err(ParseError::DuplicateHeader("To")));

        let mut r = request(SUBSCRIBE);
        r.method = Method::Publish;
        assert_eq!(r.check(), Err(ParseError::CSeqMethodMismatch));

        let mut r = request(SUBSCRIBE);
        r.headers.set("Max-Forwards", "256");
        assert_eq!(r.check(), Err(ParseError::BadHeader("Max-Forwards")));
    }

    #[test]
    fn check_classifies_request_uris() {
        let with_uri = |uri: &str| {
            let text = SUBSCRIBE.replacen("sip:bob@example.com", uri, 1);
            request(&text).check()
        };
        assert_eq!(with_uri("tel:+15551234"), Ok(()));
        assert_eq!(with_uri("sips:bob@[2001:db8::1]:5061"), Ok(()));
        assert_eq!(
            with_uri("mailto:bob@example.com"),
            Err(ParseError::UnsupportedUriScheme)
        );
        assert_eq!(
            with_uri("<sip:bob@example.com>"),
            Err(ParseError::BadRequestUri)
        );
        assert_eq!(
            with_uri("sip:bob@example.com; lr"),
            Err(ParseError::BadRequestUri)
        );
        assert_eq!(
            with_uri("sip:bob@example.com?Route=x"),
            Err(ParseError::BadRequestUri)
        );
        assert_eq!(with_uri("sip:bob@exa:mple"), Err(ParseError::BadRequestUri));
    }

    #[test]
    fn serialization_is_canonical_and_recomputes_content_length() {
        let mut r = request(SUBSCRIBE);
        r.body = b"abc".to_vec();
        let text = String::from_utf8(r.to_bytes()).unwrap();
        assert!(text.starts_with("SUBSCRIBE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/TCP"));
        assert!(text.ends_with(
            "Contact: <sip:alice@192.0.2.1:5060;transport=tcp>\r\nContent-Length: 3\r\n\r\nabc"
        ));
        assert_eq!(text.matches("Content-Length").count(), 1);
    }

    #[test]
    fn parse_serialize_parse_is_stable() {
        let once = Message::parse(SUBSCRIBE.as_bytes()).unwrap();
        let twice = Message::parse(&once.to_bytes()).unwrap();
        assert_eq!(once, twice);
        assert_eq!(twice.to_bytes(), once.to_bytes());
    }

    #[test]
    fn header_values_cannot_inject_lines() {
        let mut r = Request::new(Method::Options, Uri::parse("sip:a@b").unwrap());
        r.headers.push("Subject", "x\r\nVia: evil");
        let bytes = r.to_bytes();
        let Ok(Message::Request(back)) = Message::parse(&bytes) else {
            panic!()
        };
        assert_eq!(back.headers.count("Via"), 0);
    }

    #[test]
    fn response_for_request_copies_dialog_headers_and_tags_to() {
        let req = request(SUBSCRIBE);
        let mut resp = Response::for_request(&req, 202, None);
        assert_eq!(resp.reason, "Accepted");
        resp.set_to_tag("srv1");
        resp.set_to_tag("srv2");
        let names: Vec<_> = resp.headers.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["Via", "From", "To", "Call-ID", "CSeq"]);
        assert_eq!(resp.headers.to().unwrap().tag(), Some("srv1"));
        let text = String::from_utf8(resp.to_bytes()).unwrap();
        assert!(text.starts_with("SIP/2.0 202 Accepted\r\n"));
    }

    #[test]
    fn response_for_broken_request_copies_what_exists() {
        let req =
            request("OPTIONS sip:a@b SIP/2.0\r\nVia: garbage\r\nvia: more\r\nCSeq: x\r\n\r\n");
        assert!(req.check().is_err());
        let resp = Response::for_request(&req, 400, Some("Bad Request - Missing From"));
        assert_eq!(
            resp.headers.get_all("Via").collect::<Vec<_>>(),
            ["garbage", "more"]
        );
        assert_eq!(resp.headers.get("CSeq"), Some("x"));
        assert_eq!(resp.reason, "Bad Request - Missing From");
    }

    #[test]
    fn salvage_recovers_headers_of_unparseable_requests() {
        let raw =
            b"OPTIONS sip:a@b SIP/7.0\r\nVia: SIP/7.0/UDP h\r\nCall-ID: c\r\nSubject: \xff\r\n\r\n";
        assert_eq!(Message::parse(raw), Err(ParseError::UnsupportedVersion));
        let req = Request::salvage(raw).unwrap();
        assert_eq!(req.headers.call_id(), Ok("c"));
        assert_eq!(req.headers.count("Via"), 1);
        assert!(Request::salvage(b"SIP/2.0 200 OK\r\n\r\n").is_none());
        let cut = Request::salvage(b"OPTIONS sip:a@b SIP/2.0\r\nCall-ID: d\r\nFrom: x").unwrap();
        assert_eq!(cut.headers.call_id(), Ok("d"));
    }

    #[test]
    fn reason_phrases() {
        assert_eq!(reason_phrase(412), "Conditional Request Failed");
        assert_eq!(reason_phrase(489), "Bad Event");
        assert_eq!(reason_phrase(299), "Success");
        assert_eq!(Response::new(423).reason, "Interval Too Brief");
    }
}
