//! The control socket's listener, inside the daemon. Each connection is served on a
//! blocking thread (`smol::unblock`): dumps and restores are long, sequential I/O over
//! the store, which is `Sync`, so they never run on the core loop. Only what must be
//! ordered with SIP processing goes to the core loop as a [`Command`]: the dump's
//! barrier between dialogs and watchers, a restore's commit (the engine must re-read
//! the store and the restored subscriptions get their NOTIFYs from it), status, and
//! OpenSIPS's refresh commands.

use std::io::{self, BufReader, BufWriter, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use log::{debug, info, warn};
use serde::Serialize;
use smol::Async;
use smol::channel::Sender;

use super::protocol::{self, ERROR, FrameReader, FrameWriter, OK, REQUEST, Refreshed, Request};
use crate::clock::Clock;
use crate::daemon::{Command, Manage};
use crate::dump::{self, DumpError};
use crate::store::Store;

/// Binds the control socket at `path`. A file left there by a daemon that died is
/// removed first: the caller already holds the database, so no live daemon owns it.
pub fn bind(path: &Path) -> io::Result<UnixListener> {
    if path.exists() {
        std::fs::remove_file(path)?;
    }
    UnixListener::bind(path)
}

/// Accepts connections until the executor drops this task; removes the socket file
/// when dropped.
pub async fn serve(
    listener: UnixListener,
    path: PathBuf,
    store: Store,
    core: Sender<Command>,
    clock: Arc<dyn Clock>,
    reload: Option<crate::daemon::Reloader>,
) {
    let _remove = RemoveOnDrop(path);
    let listener = match Async::new(listener) {
        Ok(l) => l,
        Err(e) => {
            warn!("control socket: {e}");
            return;
        }
    };
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                warn!("control socket accept: {e}");
                continue;
            }
        };
        let (store, core, clock) = (store.clone(), core.clone(), clock.clone());
        let reload = reload.clone();
        smol::spawn(async move {
            let stream = match stream.into_inner() {
                Ok(s) => s,
                Err(e) => return warn!("control connection: {e}"),
            };
            smol::unblock(move || {
                if let Err(e) = stream
                    .set_nonblocking(false)
                    .and_then(|()| handle(stream, &store, &core, clock.as_ref(), reload.as_ref()))
                {
                    debug!("control connection ended: {e}");
                }
            })
            .await
        })
        .detach();
    }
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn ok<T: Serialize>(w: &mut impl Write, v: &T) -> io::Result<()> {
    let json = serde_json::to_vec(v).map_err(io::Error::other)?;
    protocol::write_frame(w, OK, &json)?;
    w.flush()
}

fn fail(w: &mut impl Write, msg: &str) -> io::Result<()> {
    protocol::write_frame(w, ERROR, msg.as_bytes())?;
    w.flush()
}

/// One request, one answer.
fn handle(
    stream: UnixStream,
    store: &Store,
    core: &Sender<Command>,
    clock: &dyn Clock,
    reload: Option<&crate::daemon::Reloader>,
) -> io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut out = BufWriter::new(stream);
    let req: Request = match protocol::read_frame(&mut reader)? {
        Some((REQUEST, body)) => match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => return fail(&mut out, &format!("bad request: {e}")),
        },
        Some(_) => return fail(&mut out, "expected a request frame"),
        None => return Ok(()),
    };
    match req {
        Request::Ping => ok(&mut out, &"pong"),
        Request::Status => {
            let (tx, rx) = smol::channel::bounded(1);
            let engine = match core.send_blocking(Command::Status(tx)) {
                Ok(()) => rx.recv_blocking().unwrap_or_default(),
                Err(_) => serde_json::Value::Null,
            };
            let tables = store.counts().ok();
            let disk = store.size_on_disk().ok();
            let events = store.rows_per_event().ok();
            ok(
                &mut out,
                &serde_json::json!({
                    "tables": tables,
                    "events": events,
                    "size_on_disk": disk,
                    "engine": engine,
                }),
            )
        }
        Request::RefreshWatchers { presentity, event } => {
            control(&mut out, core, |reply| Command::RefreshWatchers {
                presentity,
                event,
                reply: Some(reply),
            })
        }
        Request::RefreshXcapDoc { doc_uri, port } => {
            control(&mut out, core, |reply| Command::RefreshXcapDoc {
                doc_uri,
                port,
                reply: Some(reply),
            })
        }
        Request::User(change) => match crate::mgmt::users::apply(store, &change) {
            Ok(done) => {
                info!("accounts: {done}");
                ok(&mut out, &done)
            }
            Err(e) => fail(&mut out, &e),
        },
        Request::UserList => match crate::mgmt::users::list(store) {
            Ok(names) => ok(&mut out, &names),
            Err(e) => fail(&mut out, &e),
        },
        Request::PresentityList { event } => lines(&mut out, |emit| {
            super::inspect::presentity_lines(store, event.as_deref(), emit)
        }),
        Request::PresentityShow { uri } => lines(&mut out, |emit| {
            let found = store
                .publications_of_presentity(&uri)
                .map_err(|e| e.to_string())?;
            for p in &found {
                emit(super::inspect::publication_line(p)).map_err(|e| e.to_string())?;
            }
            Ok(found.len() as u64)
        }),
        Request::WatcherList { uri } => lines(&mut out, |emit| {
            let mut n = 0;
            let mut each = |d: crate::store::SubscriptionRow| {
                n += 1;
                emit(super::inspect::dialog_line(&d)).map_err(|e| e.to_string())
            };
            match uri {
                Some(uri) => {
                    for d in store
                        .subscriptions_of_presentity(&uri)
                        .map_err(|e| e.to_string())?
                    {
                        each(d)?;
                    }
                }
                None => {
                    for d in store.iter_subscriptions() {
                        each(d.map_err(|e| e.to_string())?)?;
                    }
                }
            }
            Ok(n)
        }),
        Request::Terminate {
            call_id,
            to_tag,
            from_tag,
            reason,
        } => {
            let Some(reason) = crate::presence::Reason::parse(&reason).filter(|r| {
                !matches!(
                    r,
                    crate::presence::Reason::Subscribe | crate::presence::Reason::Approved
                )
            }) else {
                return fail(
                    &mut out,
                    &format!(
                        "{reason:?} is not a reason to end a subscription (RFC 6665: deactivated, \
                         probation, rejected, timeout, giveup, noresource)"
                    ),
                );
            };
            manage(
                &mut out,
                store,
                core,
                Manage::Terminate {
                    call_id,
                    to_tag,
                    from_tag,
                    reason,
                },
            )
        }
        Request::Publish(p) => {
            let call_id = crate::sip::endpoint::random_token(12);
            match p.request(&call_id) {
                Ok(req) => manage(&mut out, store, core, Manage::Publish(Box::new(req))),
                Err(e) => fail(&mut out, &e),
            }
        }
        Request::Cleanup => manage(&mut out, store, core, Manage::Cleanup),
        // On this thread, not the core loop's: the copy takes as long as the tables are
        // large, and only its last step holds writes.
        Request::AuthorizeMessage { from, to } => {
            match crate::presence::message_allowed(store, &from, &to, clock.unix_now()) {
                Ok(allowed) => ok(
                    &mut out,
                    &serde_json::json!({ "decision": if allowed { "allow" } else { "block" } }),
                ),
                Err(e) => fail(&mut out, &e),
            }
        }
        Request::Compact => match store.compact() {
            Ok(done) => ok(&mut out, &done),
            Err(e) => fail(&mut out, &format!("not compacted: {e}")),
        },
        Request::Reload => match reload.map(|r| r()) {
            None => fail(
                &mut out,
                "the daemon was started without a configuration file: nothing to re-read",
            ),
            Some(Err(e)) => fail(&mut out, &format!("not reloaded: {e}")),
            Some(Ok(config)) => manage(&mut out, store, core, Manage::Reload(Box::new(config))),
        },
        Request::Dump(opts) => {
            let mut frames = FrameWriter::new(&mut out);
            let mut barrier = || {
                let (tx, rx) = smol::channel::bounded(1);
                core.send_blocking(Command::Barrier(tx))
                    .map_err(|_| DumpError::Aborted("the daemon is stopping".into()))?;
                rx.recv_blocking()
                    .map_err(|_| DumpError::Aborted("the daemon is stopping".into()))
            };
            let result = dump::write_dump(store, &mut frames, &opts, &mut barrier);
            frames.into_inner()?;
            match result {
                Ok(counts) => {
                    info!("dump over the control socket: {} rows", counts.total());
                    ok(&mut out, &counts)
                }
                Err(e) => fail(&mut out, &e.to_string()),
            }
        }
        Request::Restore(opts) => {
            let mut input = FrameReader::new(&mut reader);
            let staged = dump::restore::stage(store, &mut input, &opts, clock.unix_now());
            let (staging, mut report) = match staged {
                Ok(s) => s,
                Err(e) => return fail(&mut out, &e.to_string()),
            };
            let (tx, rx) = smol::channel::bounded(1);
            let commit = Command::Restore {
                staging,
                replace: opts.replace,
                reply: tx,
            };
            if core.send_blocking(commit).is_err() {
                return fail(&mut out, "the daemon is stopping; nothing was restored");
            }
            match rx.recv_blocking() {
                Ok(Ok(counts)) => {
                    report.restored = counts;
                    info!("restore over the control socket: {} rows", counts.total());
                    ok(&mut out, &report)
                }
                Ok(Err(e)) => fail(&mut out, &e),
                Err(_) => fail(&mut out, "the daemon stopped during the restore"),
            }
        }
    }
}

/// Streams one JSON object per line as DATA, then the count as the answer.
fn lines(
    out: &mut BufWriter<UnixStream>,
    produce: impl FnOnce(&mut dyn FnMut(serde_json::Value) -> io::Result<()>) -> Result<u64, String>,
) -> io::Result<()> {
    let mut frames = FrameWriter::new(&mut *out);
    let result = produce(&mut |v| {
        serde_json::to_writer(&mut frames, &v).map_err(io::Error::other)?;
        frames.write_all(b"\n")
    });
    frames.into_inner()?;
    match result {
        Ok(rows) => ok(out, &serde_json::json!({ "rows": rows })),
        Err(e) => fail(out, &e),
    }
}

/// Hands a management operation to the core loop; what it changed is on disk before
/// the answer goes out, whatever the sync mode.
fn manage(
    out: &mut impl Write,
    store: &Store,
    core: &Sender<Command>,
    op: Manage,
) -> io::Result<()> {
    let (reply, rx) = smol::channel::bounded(1);
    if core.send_blocking(Command::Manage { op, reply }).is_err() {
        return fail(out, "the daemon is stopping");
    }
    match rx.recv_blocking() {
        Ok(Ok(done)) => match store.flush() {
            Ok(()) => ok(out, &done),
            Err(e) => fail(out, &format!("done, but not yet on disk: {e}")),
        },
        Ok(Err(e)) => fail(out, &e),
        Err(_) => fail(out, "the daemon stopped before answering"),
    }
}

/// Hands a refresh command to the core loop and answers with what it did.
fn control(
    out: &mut impl Write,
    core: &Sender<Command>,
    command: impl FnOnce(Sender<Result<Refreshed, String>>) -> Command,
) -> io::Result<()> {
    let (reply, rx) = smol::channel::bounded(1);
    if core.send_blocking(command(reply)).is_err() {
        return fail(out, "the daemon is stopping");
    }
    match rx.recv_blocking() {
        Ok(Ok(done)) => ok(out, &done),
        Ok(Err(e)) => fail(out, &e),
        Err(_) => fail(out, "the daemon stopped before answering"),
    }
}
