//! SIP over WebSocket (RFC 7118): the HTTP upgrade (RFC 6455 §4.2) with the `sip`
//! subprotocol and the Origin allow-list, and what a received frame means. The framing
//! itself is async-tungstenite's; one data frame (text or binary) carries exactly one
//! SIP message (RFC 7118 §5), so no Content-Length framing is applied.

use async_tungstenite::tungstenite::Message;
use async_tungstenite::tungstenite::handshake::server::{
    Callback, ErrorResponse, Request, Response,
};
use async_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use async_tungstenite::tungstenite::protocol::WebSocketConfig;

/// The subprotocol RFC 7118 §4.1 registers.
pub const SUBPROTOCOL: &str = "sip";

/// Checks an upgrade request: the client must offer the `sip` subprotocol (RFC 7118
/// §4.1: a server that does not get it refuses), and a browser's Origin must be allowed.
#[derive(Clone)]
pub struct Upgrade {
    /// Allowed origins; empty allows any (and none).
    pub origins: Vec<String>,
}

/// Why an upgrade was refused, for the log.
pub fn refusal(status: StatusCode, why: &str) -> ErrorResponse {
    let mut r = ErrorResponse::new(Some(why.to_owned()));
    *r.status_mut() = status;
    r
}

impl Upgrade {
    /// The verdict on an upgrade request's headers.
    pub fn check(&self, request: &Request) -> Result<(), ErrorResponse> {
        let offers_sip = request
            .headers()
            .get_all("Sec-WebSocket-Protocol")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|p| p.trim().eq_ignore_ascii_case(SUBPROTOCOL));
        if !offers_sip {
            return Err(refusal(
                StatusCode::BAD_REQUEST,
                "the sip WebSocket subprotocol (RFC 7118) is required",
            ));
        }
        if !self.origins.is_empty() {
            let origin = request
                .headers()
                .get("Origin")
                .and_then(|o| o.to_str().ok())
                .unwrap_or("");
            let allowed = self
                .origins
                .iter()
                .any(|o| o.eq_ignore_ascii_case(origin.trim_end_matches('/')));
            if !allowed {
                return Err(refusal(StatusCode::FORBIDDEN, "origin not allowed"));
            }
        }
        Ok(())
    }
}

/// The callback async-tungstenite runs on the upgrade request: checks it and answers with
/// the chosen subprotocol. The refusal's reason is kept for the log.
pub struct OnUpgrade<'a> {
    pub upgrade: &'a Upgrade,
    pub refused: &'a mut Option<String>,
}

impl Callback for OnUpgrade<'_> {
    fn on_request(
        self,
        request: &Request,
        mut response: Response,
    ) -> Result<Response, ErrorResponse> {
        if let Err(refusal) = self.upgrade.check(request) {
            *self.refused = Some(format!(
                "{} ({})",
                refusal.status(),
                refusal.body().as_deref().unwrap_or("")
            ));
            return Err(refusal);
        }
        response.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static(SUBPROTOCOL),
        );
        Ok(response)
    }
}

/// Frame and message limits: a message bigger than presenced accepts closes the
/// connection before it is buffered whole.
pub fn config(max_message_size: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(max_message_size))
        .max_frame_size(Some(max_message_size))
        .read_buffer_size(16 * 1024)
        .write_buffer_size(0)
}

/// What a received WebSocket message is.
#[derive(Debug, PartialEq, Eq)]
pub enum Received {
    /// A SIP message.
    Sip(Vec<u8>),
    /// A control frame (ping, pong), answered by the library; it shows the peer is there.
    Control,
    /// The peer closes the connection.
    Close,
}

pub fn received(message: Message) -> Received {
    match message {
        Message::Text(t) => Received::Sip(t.as_bytes().to_vec()),
        Message::Binary(b) => Received::Sip(b.to_vec()),
        Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => Received::Control,
        Message::Close(_) => Received::Close,
    }
}

/// The frame a SIP message goes out in: text when it is UTF-8 (as browsers' stacks send
/// and expect), binary otherwise (RFC 7118 §5.1 allows both).
pub fn frame(bytes: Vec<u8>) -> Message {
    match String::from_utf8(bytes) {
        Ok(text) => Message::text(text),
        Err(e) => Message::binary(e.into_bytes()),
    }
}

/// Reads `bytes` as what a client sent on an upgraded connection (masked frames,
/// fragments, control frames), with the limits the listeners apply, the way the
/// connection's reader does but without I/O: every message up to the first error or the
/// end of the input, and the error if there was one. The fuzz target and the tests use it
/// to put hostile framing through the same library settings.
pub fn decode(bytes: &[u8], max_message_size: usize) -> (Vec<Received>, Option<String>) {
    use async_tungstenite::tungstenite::protocol::{Role, WebSocket};
    /// The client's bytes to read; what we would answer (pongs, close) is dropped.
    struct Wire<'a>(std::io::Cursor<&'a [u8]>);
    impl std::io::Read for Wire<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.0.read(buf)?;
            if n == 0 && !buf.is_empty() {
                // The end of what arrived so far, not a close.
                return Err(std::io::ErrorKind::WouldBlock.into());
            }
            Ok(n)
        }
    }
    impl std::io::Write for Wire<'_> {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut socket = WebSocket::from_raw_socket(
        Wire(std::io::Cursor::new(bytes)),
        Role::Server,
        Some(config(max_message_size)),
    );
    let mut out = Vec::new();
    loop {
        match socket.read() {
            Ok(m) => {
                let r = received(m);
                let close = r == Received::Close;
                out.push(r);
                if close {
                    return (out, None);
                }
            }
            Err(async_tungstenite::tungstenite::Error::Io(e))
                if e.kind() == std::io::ErrorKind::WouldBlock =>
            {
                return (out, None);
            }
            Err(e) => return (out, Some(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(protocol: Option<&str>, origin: Option<&str>) -> Request {
        let mut b = Request::builder().uri("/").header("Host", "127.0.0.1");
        if let Some(p) = protocol {
            b = b.header("Sec-WebSocket-Protocol", p);
        }
        if let Some(o) = origin {
            b = b.header("Origin", o);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn the_sip_subprotocol_is_required() {
        let any = Upgrade { origins: vec![] };
        assert!(any.check(&request(Some("sip"), None)).is_ok());
        assert!(any.check(&request(Some("chat, SIP"), None)).is_ok());
        let e = any.check(&request(None, None)).unwrap_err();
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        assert!(any.check(&request(Some("xmpp"), None)).is_err());
    }

    #[test]
    fn origins_outside_the_list_are_refused() {
        let only = Upgrade {
            origins: vec!["https://phone.example.org".into()],
        };
        assert!(
            only.check(&request(Some("sip"), Some("https://phone.example.org")))
                .is_ok()
        );
        let e = only
            .check(&request(Some("sip"), Some("https://evil.example")))
            .unwrap_err();
        assert_eq!(e.status(), StatusCode::FORBIDDEN);
        assert!(only.check(&request(Some("sip"), None)).is_err());
    }

    /// A client frame: FIN, `opcode`, masked with `key` (RFC 6455 §5.2, §5.3).
    fn masked(opcode: u8, payload: &[u8], key: [u8; 4]) -> Vec<u8> {
        let mut f = vec![0x80 | opcode];
        match payload.len() {
            n if n < 126 => f.push(0x80 | n as u8),
            n => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
        }
        f.extend_from_slice(&key);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        f
    }

    #[test]
    fn decoding_follows_the_frames_and_stops_at_the_first_bad_one() {
        let sip = b"OPTIONS sip:x SIP/2.0\r\n\r\n";
        let mut wire = masked(0x1, sip, [1, 2, 3, 4]);
        wire.extend(masked(0x9, b"hi", [9, 9, 9, 9]));
        wire.extend(masked(0x2, sip, [0, 0, 0, 0]));
        let (got, err) = decode(&wire, 1024);
        assert_eq!(
            got,
            vec![
                Received::Sip(sip.to_vec()),
                Received::Control,
                Received::Sip(sip.to_vec())
            ]
        );
        assert_eq!(err, None);
        // An unmasked client frame is a protocol error (RFC 6455 §5.1).
        let mut bad = masked(0x1, sip, [1, 2, 3, 4]);
        bad.extend([0x81, 0x02, b'h', b'i']);
        let (got, err) = decode(&bad, 1024);
        assert_eq!(got.len(), 1);
        assert!(err.is_some());
        // Past the message limit: refused before it is buffered whole.
        let (got, err) = decode(&masked(0x1, &[b'a'; 300], [1, 1, 1, 1]), 256);
        assert!(got.is_empty());
        let err = err.unwrap_or_default();
        assert!(err.contains("too long") || err.contains("size"), "{err}");
        // A frame cut short waits for the rest.
        let whole = masked(0x1, sip, [5, 6, 7, 8]);
        assert_eq!(decode(&whole[..whole.len() - 3], 1024), (vec![], None));
    }

    #[test]
    fn frames_carry_text_when_they_can() {
        assert!(matches!(frame(b"NOTIFY".to_vec()), Message::Text(_)));
        assert!(matches!(frame(vec![0xff, 0xfe]), Message::Binary(_)));
        assert_eq!(
            received(Message::text("SUBSCRIBE")),
            Received::Sip(b"SUBSCRIBE".to_vec())
        );
        assert_eq!(received(Message::Ping(vec![1].into())), Received::Control);
        assert_eq!(received(Message::Close(None)), Received::Close);
    }
}
