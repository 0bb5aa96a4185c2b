//! The Prometheus endpoint of a running daemon (`metrics_listen`): a small HTTP/1.1
//! server answering `GET /metrics` with [`crate::metrics::render`]. The core loop is
//! asked only for its counters (a copy, no work); the table gauges are read on the
//! blocking pool, one read at a time, and only again once something was written since
//! the last, so an idle box answers scrapes from memory.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_lite::{AsyncWriteExt, FutureExt};
use log::{debug, info, warn};
use smol::channel::Sender;
use smol::net::{TcpListener, TcpStream};

use super::command::Command;
use crate::metrics::{self, Snapshot, SocketFigures, StatusCounts, TableFigures};
use crate::store::Store;
use crate::store::records::status;
use crate::xcap::http;

/// A scraper has this long to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_HEAD: usize = 8 * 1024;

/// The socket counters the endpoint reports.
#[derive(Clone)]
pub(super) struct SocketCounters {
    pub queue_refused: Arc<AtomicU64>,
    pub queue_dropped: Arc<AtomicU64>,
    pub rate_refused: Arc<AtomicU64>,
    pub rate_dropped: Arc<AtomicU64>,
}

impl SocketCounters {
    fn figures(&self) -> SocketFigures {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        SocketFigures {
            queue_refused: get(&self.queue_refused),
            queue_dropped: get(&self.queue_dropped),
            rate_refused: get(&self.rate_refused),
            rate_dropped: get(&self.rate_dropped),
        }
    }
}

/// What a scrape reads.
#[derive(Clone)]
pub(super) struct Sources {
    pub commands: Sender<Command>,
    pub sockets: SocketCounters,
    pub store: Store,
    pub xcap: Arc<StatusCounts>,
    /// The last table gauges, and the store's write sequence when they were read.
    pub tables: Arc<Mutex<Option<(u64, TableFigures)>>>,
}

/// Accepts scrapes for ever, each connection on its own task.
pub(super) async fn serve(
    listener: TcpListener,
    sources: Sources,
    ex: Arc<smol::Executor<'static>>,
) {
    if let Ok(a) = listener.local_addr() {
        info!("metrics at http://{a}/metrics");
    }
    http::accept_each(listener, "metrics", ex, move |stream| {
        scrape(stream, sources.clone())
    })
    .await;
}

/// One request, one answer, then the connection closes.
async fn scrape(mut stream: TcpStream, sources: Sources) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let read = http::read_request(&mut stream, &mut buf, MAX_HEAD, 0);
    let timeout = async {
        smol::Timer::after(READ_TIMEOUT).await;
        Err(http::ReadError::Closed)
    };
    let close = [("Connection", "close".to_owned())];
    let (code, headers, body) = match read.or(timeout).await {
        Err(http::ReadError::Closed) => return Ok(()),
        Err(e) => (crate::xcap::integrated::refusal(&e), Vec::new(), Vec::new()),
        Ok(req) if req.method != "GET" && req.method != "HEAD" => (
            405,
            vec![("Allow", "GET, HEAD".to_owned())],
            b"GET /metrics\n".to_vec(),
        ),
        Ok(req) if req.path.split('?').next() != Some("/metrics") => {
            (404, Vec::new(), b"GET /metrics\n".to_vec())
        }
        Ok(req) => {
            let text = metrics::render(&snapshot(&sources).await);
            let body = match req.method.as_str() {
                "HEAD" => Vec::new(),
                _ => text.into_bytes(),
            };
            (
                200,
                vec![(
                    "Content-Type",
                    "text/plain; version=0.0.4; charset=utf-8".to_owned(),
                )],
                body,
            )
        }
    };
    let headers: Vec<(&str, String)> = headers.into_iter().chain(close).collect();
    stream
        .write_all(&http::response_bytes(code, &headers, &body))
        .await?;
    stream.flush().await
}

/// Gathers a snapshot: the core loop's counters, the sockets', the tables' (cached).
async fn snapshot(s: &Sources) -> Snapshot {
    let (tx, rx) = smol::channel::bounded(1);
    let core = match s.commands.send(Command::Metrics(tx)).await {
        Ok(()) => rx.recv().await.unwrap_or_default(),
        Err(_) => Default::default(),
    };
    let store = s.store.clone();
    let cache = s.tables.clone();
    // One read at a time: a second scrape waits for the first and reuses its figures.
    let tables = smol::unblock(move || {
        let mut cached = cache.lock().unwrap_or_else(|p| p.into_inner());
        let seq = store.write_seq();
        if let Some((at, t)) = cached.as_ref()
            && *at == seq
        {
            return Some(t.clone());
        }
        let read = table_figures(&store)?;
        *cached = Some((seq, read.clone()));
        Some(read)
    })
    .await;
    Snapshot {
        core,
        sockets: s.sockets.figures(),
        tables,
        xcap: s.xcap.snapshot(),
    }
}

/// Rows per event, watcher records per status, and the database's size.
fn table_figures(store: &Store) -> Option<TableFigures> {
    let per_event = match store.rows_per_event() {
        Ok(p) => p,
        Err(e) => {
            warn!("metrics: {e}");
            return None;
        }
    };
    let mut watchers = std::collections::BTreeMap::new();
    for w in store.iter_watchers() {
        match w {
            Ok(w) => *watchers.entry(status::name(w.status)).or_default() += 1,
            Err(e) => debug!("metrics: {e}"),
        }
    }
    Some(TableFigures {
        per_event,
        watchers,
        size_on_disk: store.size_on_disk().unwrap_or(0),
    })
}
