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
