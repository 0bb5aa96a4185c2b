//! The XCAP side of a running daemon: the integrated XCAP server (when privacy rules or
//! pidf-manipulation need documents and they are stored here) or the fetcher (when they
//! live on external servers, OpenSIPS xcap_client). Both run off the core loop and talk
//! to it only through [`Command::XcapChanged`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, warn};
use smol::channel::Sender;
use smol::future::FutureExt;

use super::command::{Command, CommandError};
use crate::config::Config;
use crate::core::Core;
use crate::mgmt::protocol::Refreshed;
use crate::store::Store;

/// What the fetcher is asked to do.
enum FetchJob {
    User(String, String),
    Doc(String, u32),
}

/// The XCAP side of a running daemon.
pub(super) struct XcapSide {
    pub addr: Option<SocketAddr>,
    /// The integrated server's answers by status, for the metrics endpoint.
    pub answers: Arc<crate::metrics::StatusCounts>,
    /// `None` when documents come from the integrated server.
    fetch: Option<Sender<FetchJob>>,
    /// The integrated server's accept loop. It holds the executor it spawns on (and the
    /// store): a detached task would keep both, and the database open, after the
    /// daemon stops, so [`XcapSide::stop`] cancels it.
    server: Option<smol::Task<()>>,
}

impl XcapSide {
    /// Stops the integrated server (its connections go with the executor).
    pub async fn stop(&mut self) {
        if let Some(t) = self.server.take() {
            t.cancel().await;
        }
    }

    /// Binds the integrated XCAP server when privacy rules, pidf-manipulation, buddy
    /// lists or MESSAGE authorization need documents, or starts the fetcher (on a thread
    /// of its own: its store reads and writes stay off the core loop) when documents
    /// live on external servers.
    pub async fn start(
        config: &Config,
        store: &Store,
        ex: &Arc<smol::Executor<'static>>,
        commands: Sender<Command>,
        clock: Arc<dyn crate::clock::Clock>,
        tls: &crate::transport::TlsContext,
    ) -> std::io::Result<XcapSide> {
        use crate::xcap::{fetch, integrated};
        let wanted = config.wants_documents();
        if !wanted {
            return Ok(XcapSide {
                addr: None,
                answers: Arc::default(),
                fetch: None,
                server: None,
            });
        }
        let (changes_tx, changes_rx) = smol::channel::bounded::<crate::xcap::Notice>(256);
        ex.spawn(async move {
            while let Ok(c) = changes_rx.recv().await {
                if commands.send(Command::XcapChanged(c)).await.is_err() {
                    break;
                }
            }
        })
        .detach();
        let answers = Arc::new(crate::metrics::StatusCounts::default());
        if config.integrated_xcap_server {
            let listener = smol::net::TcpListener::bind(config.xcap_listen).await?;
            let addr = listener.local_addr()?;
            let cfg = integrated::ServerConfig {
                max_document_size: config.xcap_max_document_size,
                port: u32::from(addr.port()),
            };
            let gate = match config.auth_mode() {
                crate::auth::Mode::None => None,
                _ => Some(Arc::new(integrated::Gate::new(
                    crate::core::authenticator(config, store),
                    config.auth_realm.clone(),
                    clock,
                ))),
            };
            let server = ex.spawn(integrated::serve(
                listener,
                store.clone(),
                cfg,
                gate,
                changes_tx,
                ex.clone(),
                answers.clone(),
                config.xcap_tls.then(|| tls.clone()),
            ));
            return Ok(XcapSide {
                addr: Some(addr),
                answers,
                fetch: None,
                server: Some(server),
            });
        }
        let fetcher = fetch::Fetcher::new(
            store.clone(),
            &config.xcap_server,
            fetch::FetchConfig {
                max_size: config.xcap_max_document_size,
                ..Default::default()
            },
            config.pidf_manipulation,
        );
        let (jobs_tx, jobs_rx) = smol::channel::bounded::<FetchJob>(1024);
        let period = config
            .periodical_query
            .then(|| Duration::from_secs(config.query_period.max(1)));
        std::thread::Builder::new()
            .name("presenced-xcap-fetch".into())
            .spawn(move || {
                smol::block_on(async move {
                    // A deadline, not a fresh timer per wait, so a stream of jobs cannot
                    // starve it.
                    let mut next_query = period.map(|p| Instant::now() + p);
                    loop {
                        let job = async { jobs_rx.recv().await.ok() }
                            .or(async {
                                match next_query {
                                    Some(at) => smol::Timer::at(at).await,
                                    None => std::future::pending().await,
                                };
                                None
                            })
                            .await;
                        let changed = match job {
                            Some(FetchJob::User(u, d)) => fetcher.fetch_user(&u, &d).await,
                            Some(FetchJob::Doc(uri, port)) => fetcher.refresh_doc(&uri, port).await,
                            None if jobs_rx.is_closed() => break,
                            None => {
                                next_query = period.map(|p| Instant::now() + p);
                                fetcher.refresh_all().await
                            }
                        };
                        for c in changed {
                            if changes_tx.send((c, None)).await.is_err() {
                                return;
                            }
                        }
                    }
                })
            })?;
        Ok(XcapSide {
            addr: None,
            answers,
            fetch: Some(jobs_tx),
            server: None,
        })
    }

    /// OpenSIPS `refreshXcapDoc`: fetch the document again, or with the integrated
    /// server (where the stored document is current) re-evaluate its owner's watchers.
    pub fn refresh_doc(
        &self,
        core: &mut Core,
        doc_uri: String,
        port: u32,
        now: Instant,
        unix: u64,
    ) -> Result<Refreshed, CommandError> {
        if let Some(jobs) = &self.fetch {
            // The fetcher also takes full document URLs it has never stored.
            return match jobs.try_send(FetchJob::Doc(doc_uri, port)) {
                Ok(()) => Ok(Refreshed {
                    notifies: 0,
                    fetching: true,
                }),
                Err(_) => Err(CommandError::FetcherBusy),
            };
        }
        let docs: Vec<_> = core
            .engine()
            .store()
            .iter_xcap()
            .filter_map(Result::ok)
            .filter(|x| x.doc_uri == doc_uri && (port == 0 || x.port == port))
            .collect();
        if docs.is_empty() {
            return Err(CommandError::UnknownDocument { doc_uri, port });
        }
        let mut notifies = 0;
        for x in docs {
            notifies += core.xcap_changed(&x.username, &x.domain, x.doc_type, now, unix);
        }
        Ok(Refreshed {
            notifies,
            fetching: false,
        })
    }

    /// Hands users whose documents the engine needs to the fetcher.
    pub fn request_fetches(&self, core: &mut Core) {
        while let Some((user, domain)) = core.poll_fetch() {
            if let Some(jobs) = &self.fetch
                && jobs.try_send(FetchJob::User(user, domain)).is_err()
            {
                debug!("fetcher busy; rules fetch deferred");
            }
        }
    }
}

/// Logs a command that failed without anyone to tell.
pub(super) fn log_failure(e: &CommandError) {
    warn!("{e}");
}
