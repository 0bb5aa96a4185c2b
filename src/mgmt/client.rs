//! The control socket's client side: what `presenced ctl`, and `dump`/`restore` while
//! the daemon runs, use to talk to it. Blocking and small.

use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

use serde::de::DeserializeOwned;

use super::protocol::{self, DATA, END, ERROR, FrameWriter, OK, REQUEST, Refreshed, Request};
use crate::dump::{DumpOptions, RestoreOptions, RestoreReport};
use crate::store::TableCounts;

#[derive(Debug)]
pub enum ClientError {
    Io(io::Error),
    /// The daemon refused or failed the request; its message.
    Remote(String),
    /// The daemon's answer did not follow the protocol.
    Protocol(String),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Io(e) => write!(f, "control socket: {e}"),
            ClientError::Remote(m) => write!(f, "{m}"),
            ClientError::Protocol(m) => write!(f, "control socket protocol: {m}"),
        }
    }
}

impl std::error::Error for ClientError {}

impl From<io::Error> for ClientError {
    fn from(e: io::Error) -> Self {
        ClientError::Io(e)
    }
}

/// A connection to a running daemon.
pub struct Client {
    stream: UnixStream,
}

impl Client {
    /// Connects; `Err` with `NotFound`/`ConnectionRefused` means no daemon is running.
    pub fn connect(path: &Path) -> io::Result<Client> {
        Ok(Client {
            stream: UnixStream::connect(path)?,
        })
    }

    fn send(&mut self, req: &Request) -> Result<(), ClientError> {
        let json = serde_json::to_vec(req).map_err(|e| ClientError::Protocol(e.to_string()))?;
        protocol::write_frame(&mut self.stream, REQUEST, &json)?;
        Ok(())
    }

    /// Reads frames until the final one; DATA goes to `data`.
    fn answer<T: DeserializeOwned>(
        reader: &mut impl Read,
        data: &mut dyn Write,
    ) -> Result<T, ClientError> {
        loop {
            match protocol::read_frame(reader)? {
                Some((DATA, bytes)) => data.write_all(&bytes)?,
                Some((OK, json)) => {
                    return serde_json::from_slice(&json)
                        .map_err(|e| ClientError::Protocol(e.to_string()));
                }
                Some((ERROR, msg)) => {
                    return Err(ClientError::Remote(
                        String::from_utf8_lossy(&msg).into_owned(),
                    ));
                }
                Some((k, _)) => {
                    return Err(ClientError::Protocol(format!(
                        "unexpected frame {:?}",
                        k as char
                    )));
                }
                None => {
                    return Err(ClientError::Protocol(
                        "the daemon closed the connection without an answer".into(),
                    ));
                }
            }
        }
    }

    /// Any request: DATA goes to `data`, the answer is returned as JSON.
    pub fn call(
        mut self,
        req: &Request,
        data: &mut dyn Write,
    ) -> Result<serde_json::Value, ClientError> {
        self.send(req)?;
        Self::answer(&mut BufReader::new(self.stream), data)
    }

    pub fn ping(mut self) -> Result<String, ClientError> {
        self.send(&Request::Ping)?;
        Self::answer(&mut BufReader::new(self.stream), &mut io::sink())
    }

    pub fn status(mut self) -> Result<serde_json::Value, ClientError> {
        self.send(&Request::Status)?;
        Self::answer(&mut BufReader::new(self.stream), &mut io::sink())
    }

    /// OpenSIPS `refreshWatchers`: re-evaluates `presentity`'s watchers of `event`.
    /// An event no package serves is a `Remote` error.
    pub fn refresh_watchers(
        mut self,
        presentity: &str,
        event: &str,
    ) -> Result<Refreshed, ClientError> {
        self.send(&Request::RefreshWatchers {
            presentity: presentity.to_owned(),
            event: event.to_owned(),
        })?;
        Self::answer(&mut BufReader::new(self.stream), &mut io::sink())
    }

    /// OpenSIPS `refreshXcapDoc`: re-reads or re-fetches the document stored under
    /// `doc_uri` (`port` 0: any port). A document the daemon does not hold is a
    /// `Remote` error.
    pub fn refresh_xcap_doc(mut self, doc_uri: &str, port: u32) -> Result<Refreshed, ClientError> {
        self.send(&Request::RefreshXcapDoc {
            doc_uri: doc_uri.to_owned(),
            port,
        })?;
        Self::answer(&mut BufReader::new(self.stream), &mut io::sink())
    }

    /// Changes an account through the daemon; the answer says what was done.
    pub fn user(mut self, change: &crate::mgmt::users::UserChange) -> Result<String, ClientError> {
        self.send(&Request::User(change.clone()))?;
        Self::answer(&mut BufReader::new(self.stream), &mut io::sink())
    }

    /// The accounts, as `user@domain`.
    pub fn user_list(mut self) -> Result<Vec<String>, ClientError> {
        self.send(&Request::UserList)?;
        Self::answer(&mut BufReader::new(self.stream), &mut io::sink())
    }

    /// Streams the daemon's dump into `out`.
    pub fn dump(
        mut self,
        opts: &DumpOptions,
        out: &mut dyn Write,
    ) -> Result<TableCounts, ClientError> {
        self.send(&Request::Dump(opts.clone()))?;
        Self::answer(&mut BufReader::with_capacity(256 * 1024, self.stream), out)
    }

    /// Streams `input` to the daemon, which restores it all or nothing.
    pub fn restore(
        mut self,
        opts: &RestoreOptions,
        input: &mut dyn Read,
    ) -> Result<RestoreReport, ClientError> {
        self.send(&Request::Restore(opts.clone()))?;
        let reader = self.stream.try_clone()?;
        let sent = (|| -> io::Result<()> {
            let mut frames = FrameWriter::new(BufWriter::new(&mut self.stream));
            io::copy(input, &mut frames)?;
            let mut w = frames.into_inner()?;
            protocol::write_frame(&mut w, END, &[])?;
            w.flush()
        })();
        // A daemon that found an error early stops reading; its answer is still there.
        let answer = Self::answer(&mut BufReader::new(reader), &mut io::sink());
        match (answer, sent) {
            (Ok(r), _) => Ok(r),
            (Err(ClientError::Remote(m)), _) => Err(ClientError::Remote(m)),
            (Err(_), Err(e)) => Err(ClientError::Io(e)),
            (Err(e), Ok(())) => Err(e),
        }
    }
}
