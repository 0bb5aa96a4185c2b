//! Cuts a TCP/TLS byte stream into SIP messages (RFC 3261 §18.3) and RFC 5626 §3.5.1
//! keepalives. Sans-I/O: the transport pushes bytes in and pulls frames out; a framing
//! error means the stream cannot be resynchronized and the connection must be closed.

use crate::sip::error::ParseError;
use crate::sip::header::parse_content_length;

/// One unit cut from the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A complete message (header section and exactly Content-Length body octets),
    /// ready for `Message::parse`.
    Message(Vec<u8>),
    /// A CRLF CRLF ping (RFC 5626 §3.5.1); the transport answers with CRLF.
    Keepalive,
}

/// Incremental framer for one connection.
#[derive(Debug)]
pub struct StreamFramer {
    buf: Vec<u8>,
    /// Start of the unconsumed bytes in `buf`.
    pos: usize,
    /// Where the search for the end of the current header section resumes, so bytes
    /// are scanned once however the stream is split.
    scan: usize,
    /// Total size of the current message once its header section has been read.
    pending: Option<usize>,
    max_message: usize,
    /// Set after a framing error: the stream is unusable from then on.
    failed: Option<ParseError>,
}

/// Compact the buffer when at least this many consumed bytes sit at its front.
const COMPACT_AT: usize = 8 * 1024;

impl StreamFramer {
    /// `max_message` bounds the header section and the whole message.
    pub fn new(max_message: usize) -> StreamFramer {
        StreamFramer {
            buf: Vec::new(),
            pos: 0,
            scan: 0,
            pending: None,
            max_message,
            failed: None,
        }
    }

    pub fn push(&mut self, bytes: &[u8]) {
        if self.failed.is_some() {
            return;
        }
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.scan -= self.pos.min(self.scan);
            self.pos = 0;
        } else if self.pos >= COMPACT_AT && self.pos * 2 >= self.buf.len() {
            self.buf.drain(..self.pos);
            self.scan -= self.pos.min(self.scan);
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes received but not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The next complete frame, `Ok(None)` when more bytes are needed, or an error
    /// after which the connection must be closed (the same error is returned again).
    pub fn next_frame(&mut self) -> Result<Option<Frame>, ParseError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        match self.next_frame_inner() {
            Err(e) => {
                self.failed = Some(e.clone());
                Err(e)
            }
            ok => ok,
        }
    }

    fn next_frame_inner(&mut self) -> Result<Option<Frame>, ParseError> {
        if self.pending.is_none() {
            // Between messages: CRLF CRLF is a ping, a lone CRLF (pong or stray) is
            // skipped (RFC 5626 §3.5.1, RFC 3261 §7.5).
            loop {
                let rest = &self.buf[self.pos..];
                match rest {
                    [b'\r', b'\n', b'\r', b'\n', ..] => {
                        self.pos += 4;
                        self.scan = self.pos;
                        return Ok(Some(Frame::Keepalive));
                    }
                    [b'\r', b'\n', b'\r'] | [b'\r', b'\n'] | [b'\r'] => return Ok(None),
                    [b'\r', b'\n', ..] => {
                        self.pos += 2;
                        self.scan = self.pos;
                    }
                    _ => break,
                }
            }
            let Some(header_end) = self.find_header_end() else {
                if self.buffered() > self.max_message {
                    return Err(ParseError::TooLarge);
                }
                return Ok(None);
            };
            let header_len = header_end - self.pos;
            if header_len > self.max_message {
                return Err(ParseError::TooLarge);
            }
            let body_len = content_length(&self.buf[self.pos..header_end])?;
            let total = header_len
                .checked_add(body_len)
                .filter(|t| *t <= self.max_message)
                .ok_or(ParseError::TooLarge)?;
            self.pending = Some(total);
        }
        let total = self.pending.unwrap_or(0);
        if self.buffered() < total {
            return Ok(None);
        }
        let frame = self.buf[self.pos..self.pos + total].to_vec();
        self.pos += total;
        self.scan = self.pos;
        self.pending = None;
        Ok(Some(Frame::Message(frame)))
    }

    /// Index just past the empty line ending the header section (CRLF CRLF, or bare
    /// LF LF), resuming where the last call stopped.
    fn find_header_end(&mut self) -> Option<usize> {
        let buf = &self.buf;
        let mut i = self.scan.max(self.pos);
        while let Some(rel) = buf[i..].iter().position(|&b| b == b'\n') {
            let nl = i + rel;
            match (buf.get(nl + 1), buf.get(nl + 2)) {
                (Some(b'\n'), _) => return Some(nl + 2),
                (Some(b'\r'), Some(b'\n')) => return Some(nl + 3),
                (Some(b'\r'), None) | (None, _) => {
                    // Not decidable yet; resume at this newline next time.
                    self.scan = nl;
                    return None;
                }
                _ => i = nl + 1,
            }
        }
        self.scan = buf.len();
        None
    }
}

/// Content-Length from a raw header section; streams require it (RFC 3261 §18.3) and
/// several lines must agree.
fn content_length(head: &[u8]) -> Result<usize, ParseError> {
    let mut found: Option<usize> = None;
    for line in head.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = line[..colon].trim_ascii();
        if line.first().is_some_and(|b| *b == b' ' || *b == b'\t')
            || !(name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l"))
        {
            continue;
        }
        let value =
            std::str::from_utf8(&line[colon + 1..]).map_err(|_| ParseError::BadContentLength)?;
        let n = parse_content_length(value).ok_or(ParseError::BadContentLength)?;
        if found.is_some_and(|f| f != n) {
            return Err(ParseError::BadContentLength);
        }
        found = Some(n);
    }
    found.ok_or(ParseError::BadContentLength)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] = b"MESSAGE sip:a@b SIP/2.0\r\nl: 5\r\nCall-ID: x\r\n\r\nhello";

    fn drain(f: &mut StreamFramer) -> Vec<Frame> {
        let mut out = Vec::new();
        while let Some(frame) = f.next_frame().unwrap() {
            out.push(frame);
        }
        out
    }

    #[test]
    fn cuts_back_to_back_messages_and_pings() {
        let mut f = StreamFramer::new(4096);
        let mut stream = Vec::new();
        stream.extend_from_slice(MSG);
        stream.extend_from_slice(b"\r\n\r\n");
        stream.extend_from_slice(MSG);
        f.push(&stream);
        assert_eq!(
            drain(&mut f),
            [
                Frame::Message(MSG.to_vec()),
                Frame::Keepalive,
                Frame::Message(MSG.to_vec())
            ]
        );
        assert_eq!(f.buffered(), 0);
    }

    #[test]
    fn byte_by_byte_feeding_gives_the_same_frames() {
        let mut f = StreamFramer::new(4096);
        let mut frames = Vec::new();
        for b in MSG.iter().chain(b"\r\n\r\n").chain(MSG) {
            f.push(&[*b]);
            frames.extend(drain(&mut f));
        }
        assert_eq!(frames.len(), 3);
        assert_eq!(frames[1], Frame::Keepalive);
    }

    #[test]
    fn lone_crlf_is_skipped() {
        let mut f = StreamFramer::new(4096);
        f.push(b"\r\n");
        assert_eq!(f.next_frame(), Ok(None));
        f.push(MSG);
        assert_eq!(drain(&mut f), [Frame::Message(MSG.to_vec())]);
    }

    #[test]
    fn missing_content_length_is_a_framing_error() {
        let mut f = StreamFramer::new(4096);
        f.push(b"OPTIONS sip:a@b SIP/2.0\r\nCall-ID: x\r\n\r\n");
        assert_eq!(f.next_frame(), Err(ParseError::BadContentLength));
        f.push(MSG);
        assert_eq!(f.next_frame(), Err(ParseError::BadContentLength));
    }

    #[test]
    fn conflicting_or_negative_content_length_is_an_error() {
        for head in [
            &b"OPTIONS sip:a@b SIP/2.0\r\nl: 1\r\nContent-Length: 2\r\n\r\n"[..],
            b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: -999\r\n\r\n",
        ] {
            let mut f = StreamFramer::new(4096);
            f.push(head);
            assert_eq!(f.next_frame(), Err(ParseError::BadContentLength));
        }
    }

    #[test]
    fn oversized_header_section_or_body_is_too_large() {
        let mut f = StreamFramer::new(64);
        f.push(&[b'a'; 65]);
        assert_eq!(f.next_frame(), Err(ParseError::TooLarge));

        let mut f = StreamFramer::new(64);
        f.push(b"MESSAGE sip:a@b SIP/2.0\r\nl: 1000\r\n\r\n");
        assert_eq!(f.next_frame(), Err(ParseError::TooLarge));

        let mut f = StreamFramer::new(64);
        f.push(b"MESSAGE sip:a@b SIP/2.0\r\nl: 99999999999999999999999\r\n\r\n");
        assert_eq!(f.next_frame(), Err(ParseError::BadContentLength));
    }

    #[test]
    fn waits_for_the_whole_body() {
        let mut f = StreamFramer::new(4096);
        f.push(&MSG[..MSG.len() - 2]);
        assert_eq!(f.next_frame(), Ok(None));
        f.push(&MSG[MSG.len() - 2..]);
        assert_eq!(f.next_frame(), Ok(Some(Frame::Message(MSG.to_vec()))));
    }

    #[test]
    fn long_streams_are_compacted() {
        let mut f = StreamFramer::new(4096);
        for _ in 0..1000 {
            f.push(MSG);
            assert_eq!(drain(&mut f).len(), 1);
        }
        assert!(f.buf.capacity() < 64 * 1024);
    }
}
