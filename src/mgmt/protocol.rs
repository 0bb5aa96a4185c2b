//! The control channel's wire format: length-prefixed frames over a Unix stream socket,
//! so bulk bytes (a dump, a restore's input) and messages share one connection without
//! escaping. A frame is `kind (1 byte) | length (u32 big-endian) | payload`.
//!
//! A conversation: the client sends one `REQUEST` frame (JSON [`Request`]); for a
//! restore it then sends its input as `DATA` frames and one `END`. The server answers
//! with `DATA` frames (a dump's SQL) and ends with exactly one `OK` (JSON result) or
//! `ERROR` (a message for the user).

use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};

use crate::dump::{DumpOptions, RestoreOptions};

pub const REQUEST: u8 = b'Q';
pub const DATA: u8 = b'D';
pub const END: u8 = b'E';
pub const OK: u8 = b'K';
pub const ERROR: u8 = b'X';

/// No frame is larger; a bigger length prefix is garbage, not a reason to allocate.
pub const MAX_FRAME: usize = 1024 * 1024;

/// What a client asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    Ping,
    /// Table sizes and engine counters.
    Status,
    Dump(DumpOptions),
    Restore(RestoreOptions),
    /// OpenSIPS `refreshWatchers <presentity_uri> <event>`: re-evaluate that
    /// presentity's watchers of that event now (after a rules change made elsewhere, or
    /// when a time-limited rule starts or stops applying).
    RefreshWatchers {
        presentity: String,
        event: String,
    },
    /// OpenSIPS `refreshXcapDoc <doc_uri> <port>`: re-read (built-in server) or re-fetch
    /// one XCAP document and re-evaluate its user's watchers; port 0 matches any.
    RefreshXcapDoc {
        doc_uri: String,
        port: u32,
    },
    /// `presenced user add|passwd|del`: change an account (HA1s only, never a password).
    User(crate::mgmt::users::UserChange),
    /// `presenced user list`.
    UserList,
    /// `ctl presentity list`: one JSON line per presentity and event, as DATA.
    PresentityList {
        event: Option<String>,
    },
    /// `ctl presentity show URI`: one JSON line per publication, as DATA.
    PresentityShow {
        uri: String,
    },
    /// `ctl watcher list [URI]`: one JSON line per subscription dialog, as DATA.
    WatcherList {
        uri: Option<String>,
    },
    /// `ctl subscription terminate`: ends one dialog with a terminated NOTIFY.
    Terminate {
        call_id: String,
        to_tag: String,
        from_tag: String,
        reason: String,
    },
    /// `ctl publish`: a PUBLISH the server makes (OpenSIPS `pua_mi`).
    Publish(crate::mgmt::inspect::LocalPublish),
    /// `ctl cleanup`: expiry and housekeeping now.
    Cleanup,
    /// `ctl reload`: read the daemon's configuration file again and apply what can be
    /// applied while running.
    Reload,
    /// `ctl compact`: rewrite the database into fresh files while serving.
    Compact,
    /// `ctl authorize-message FROM TO`: TO's im-rules decision for a MESSAGE from FROM.
    AuthorizeMessage {
        from: String,
        to: String,
    },
}

/// The answer to a refresh command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refreshed {
    /// NOTIFYs the command sent.
    pub notifies: usize,
    /// The document is being fetched from its XCAP server: the watchers are
    /// re-evaluated when it arrives, after this answer.
    pub fetching: bool,
}

pub fn write_frame<W: Write + ?Sized>(w: &mut W, kind: u8, payload: &[u8]) -> io::Result<()> {
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|&n| n as usize <= MAX_FRAME)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
    let mut head = [0u8; 5];
    head[0] = kind;
    head[1..].copy_from_slice(&len.to_be_bytes());
    w.write_all(&head)?;
    w.write_all(payload)
}

/// The next frame, or `None` at a clean end of stream (between frames).
pub fn read_frame<R: Read + ?Sized>(r: &mut R) -> io::Result<Option<(u8, Vec<u8>)>> {
    let mut head = [0u8; 5];
    let mut got = 0;
    while got < head.len() {
        let n = match r.read(&mut head[got..]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            return if got == 0 {
                Ok(None)
            } else {
                Err(io::ErrorKind::UnexpectedEof.into())
            };
        }
        got += n;
    }
    let [kind, a, b, c, d] = head;
    let len = u32::from_be_bytes([a, b, c, d]) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes exceeds {MAX_FRAME}"),
        ));
    }
    let mut payload = vec![0; len];
    r.read_exact(&mut payload)?;
    Ok(Some((kind, payload)))
}

/// `Write` that sends everything as `DATA` frames (buffered, so frames are large).
pub struct FrameWriter<W: Write> {
    inner: W,
    buf: Vec<u8>,
}

const CHUNK: usize = 64 * 1024;

impl<W: Write> FrameWriter<W> {
    pub fn new(inner: W) -> FrameWriter<W> {
        FrameWriter {
            inner,
            buf: Vec::with_capacity(CHUNK),
        }
    }

    fn send(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            write_frame(&mut self.inner, DATA, &self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }

    /// Flushes what is buffered and hands the stream back.
    pub fn into_inner(mut self) -> io::Result<W> {
        self.send()?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for FrameWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = CHUNK - self.buf.len();
        let n = data.len().min(room);
        self.buf.extend_from_slice(data.get(..n).unwrap_or(&[]));
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()?;
        self.inner.flush()
    }
}

/// `Read` over incoming `DATA` frames, ending at `END`.
pub struct FrameReader<R: Read> {
    inner: R,
    cur: Vec<u8>,
    pos: usize,
    done: bool,
}

impl<R: Read> FrameReader<R> {
    pub fn new(inner: R) -> FrameReader<R> {
        FrameReader {
            inner,
            cur: Vec::new(),
            pos: 0,
            done: false,
        }
    }

    /// Whether the sender's `END` was seen.
    pub fn finished(&self) -> bool {
        self.done
    }

    pub fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: Read> Read for FrameReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos >= self.cur.len() {
            if self.done {
                return Ok(0);
            }
            match read_frame(&mut self.inner)? {
                Some((DATA, payload)) => {
                    self.cur = payload;
                    self.pos = 0;
                }
                Some((END, _)) => self.done = true,
                Some((kind, _)) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("unexpected frame {:?} in a data stream", kind as char),
                    ));
                }
                // The sender went away without END: its input is incomplete.
                None => return Err(io::ErrorKind::UnexpectedEof.into()),
            }
        }
        let rest = self.cur.get(self.pos..).unwrap_or(&[]);
        let n = rest.len().min(out.len());
        out[..n].copy_from_slice(&rest[..n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_frames_carry_bytes_until_end() {
        let mut wire = Vec::new();
        {
            let mut w = FrameWriter::new(&mut wire);
            w.write_all(&vec![7u8; CHUNK * 2 + 5]).unwrap();
            w.into_inner().unwrap();
        }
        write_frame(&mut wire, END, &[]).unwrap();
        let mut r = FrameReader::new(&wire[..]);
        let mut got = Vec::new();
        r.read_to_end(&mut got).unwrap();
        assert_eq!(got.len(), CHUNK * 2 + 5);
        assert!(r.finished());
    }

    #[test]
    fn a_stream_cut_before_end_is_an_error_not_a_short_input() {
        let mut wire = Vec::new();
        write_frame(&mut wire, DATA, b"INSERT").unwrap();
        let mut got = Vec::new();
        let e = FrameReader::new(&wire[..])
            .read_to_end(&mut got)
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn oversized_length_prefixes_are_refused() {
        let wire = [DATA, 0xff, 0xff, 0xff, 0xff];
        assert!(read_frame(&mut &wire[..]).is_err());
    }

    #[test]
    fn requests_are_tagged_json() {
        let j = serde_json::to_string(&Request::Ping).unwrap();
        assert_eq!(j, r#"{"cmd":"ping"}"#);
        let back: Request = serde_json::from_str(&j).unwrap();
        assert_eq!(back, Request::Ping);
        let j = serde_json::to_string(&Request::RefreshXcapDoc {
            doc_uri: "/xcap-root/pres-rules/users/sip:a@b/index".into(),
            port: 8000,
        })
        .unwrap();
        assert_eq!(
            j,
            r#"{"cmd":"refresh_xcap_doc","doc_uri":"/xcap-root/pres-rules/users/sip:a@b/index","port":8000}"#
        );
    }
}
