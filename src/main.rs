//! The `presenced` command line: `run` starts the daemon, `check-config` validates a
//! configuration file, `default-config` prints one with every setting explained, `dump`/`restore` move the tables to and from SQL, `ctl` talks to
//! a running daemon. Every subcommand that touches data takes the same `--db`; while a
//! daemon holds the database, `dump` and `restore` go through its control socket.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use argh::FromArgs;
use futures_lite::StreamExt;

use presenced::clock::{Clock, SystemClock};
use presenced::config::{Config, ListenAddr};
use presenced::dump::{Dialect, DumpOptions, RestoreOptions, RestoreReport, Table};
use presenced::mgmt::{self, client::Client};
use presenced::store::{Store, StoreOptions, TableCounts};

/// presenced: a SIP presence server with an embedded database.
#[derive(FromArgs)]
struct Cli {
    #[argh(subcommand)]
    command: Command,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum Command {
    Run(RunArgs),
    CheckConfig(CheckConfigArgs),
    DefaultConfig(DefaultConfigArgs),
    Dump(DumpArgs),
    Restore(RestoreArgs),
    Ctl(CtlArgs),
    User(UserArgs),
}

/// Manage the accounts digest authentication checks (the `subscriber` table); through
/// the daemon when it runs. Passwords are read from the terminal, or from one line of
/// standard input when it is not a terminal; never from the command line.
#[derive(FromArgs)]
#[argh(subcommand, name = "user")]
struct UserArgs {
    /// database directory (default: presenced.db, or the configuration's)
    #[argh(option)]
    db: Option<PathBuf>,
    /// configuration file, for `db` and `control_socket`
    #[argh(option)]
    config: Option<PathBuf>,
    #[argh(subcommand)]
    command: UserCommand,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum UserCommand {
    Add(UserAdd),
    Passwd(UserPasswd),
    Del(UserDel),
    List(UserList),
}

/// Add an account: user@domain (the domain is the digest realm).
#[derive(FromArgs)]
#[argh(subcommand, name = "add")]
struct UserAdd {
    /// the account, e.g. alice@example.com
    #[argh(positional)]
    account: String,
}

/// Set a new password for an account.
#[derive(FromArgs)]
#[argh(subcommand, name = "passwd")]
struct UserPasswd {
    /// the account, e.g. alice@example.com
    #[argh(positional)]
    account: String,
}

/// Delete an account.
#[derive(FromArgs)]
#[argh(subcommand, name = "del")]
struct UserDel {
    /// the account, e.g. alice@example.com
    #[argh(positional)]
    account: String,
}

/// List the accounts, one user@domain per line.
#[derive(FromArgs)]
#[argh(subcommand, name = "list")]
struct UserList {}

/// Write the tables as SQL (one consistent snapshot; through the daemon if it runs).
#[derive(FromArgs)]
#[argh(subcommand, name = "dump")]
struct DumpArgs {
    /// database directory (default: presenced.db, or the configuration's)
    #[argh(option)]
    db: Option<PathBuf>,
    /// configuration file, for `db` and `control_socket`
    #[argh(option)]
    config: Option<PathBuf>,
    /// SQL dialect: mysql (default), postgres or sqlite
    #[argh(option, default = "Dialect::Mysql")]
    dialect: Dialect,
    /// write CREATE TABLE statements (schema/<dialect>.sql) first
    #[argh(switch)]
    schema: bool,
    /// tables to dump, comma-separated or repeated (default: presentity, active_watchers,
    /// watchers, xcap)
    #[argh(option)]
    tables: Vec<String>,
    /// only OpenSIPS 3.x's columns, for OpenSIPS's own schema (drops presenced's extras)
    #[argh(switch)]
    opensips: bool,
    /// output file (default: standard output); written whole or not at all
    #[argh(option, short = 'o')]
    output: Option<PathBuf>,
}

/// Load a SQL dump (ours, mysqldump, sqlite3 .dump, pg_dump --inserts), all or nothing.
#[derive(FromArgs)]
#[argh(subcommand, name = "restore")]
struct RestoreArgs {
    /// database directory (default: presenced.db, or the configuration's)
    #[argh(option)]
    db: Option<PathBuf>,
    /// configuration file, for `db` and `control_socket`
    #[argh(option)]
    config: Option<PathBuf>,
    /// the dump's dialect (default: told from the dump itself)
    #[argh(option)]
    dialect: Option<Dialect>,
    /// empty the four tables first (default: merge, dump rows replace same-key rows)
    #[argh(switch)]
    replace: bool,
    /// keep publications and subscriptions that have already expired (default: skip)
    #[argh(switch)]
    keep_expired: bool,
    /// the dump file, or - for standard input
    #[argh(positional)]
    input: String,
}

/// Talk to the running daemon.
#[derive(FromArgs)]
#[argh(subcommand, name = "ctl")]
struct CtlArgs {
    /// database directory whose daemon to talk to (its socket is <db>/control.sock)
    #[argh(option)]
    db: Option<PathBuf>,
    /// configuration file, for `db` and `control_socket`
    #[argh(option)]
    config: Option<PathBuf>,
    /// control socket path (overrides --db and the configuration)
    #[argh(option)]
    socket: Option<PathBuf>,
    /// print a table for people instead of JSON
    #[argh(switch)]
    table: bool,
    #[argh(subcommand)]
    command: CtlCommand,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum CtlCommand {
    Status(CtlStatus),
    Ping(CtlPing),
    RefreshWatchers(CtlRefreshWatchers),
    RefreshXcapDoc(CtlRefreshXcapDoc),
    Presentity(CtlPresentity),
    Watcher(CtlWatcher),
    Subscription(CtlSubscription),
    Publish(CtlPublish),
    Cleanup(CtlCleanup),
    Reload(CtlReload),
    Compact(CtlCompact),
    AuthorizeMessage(CtlAuthorizeMessage),
    PresPhtableList(CtlPresPhtableList),
    SubsPhtableList(CtlSubsPhtableList),
}

/// Presentities: `list` (one line per presentity and event) or `show URI`.
#[derive(FromArgs)]
#[argh(subcommand, name = "presentity")]
struct CtlPresentity {
    #[argh(subcommand)]
    command: PresentityCommand,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum PresentityCommand {
    List(PresentityList),
    Show(PresentityShow),
}

/// Every presentity with live publications, per event: how many, their entity-tags, the
/// last expiry.
#[derive(FromArgs)]
#[argh(subcommand, name = "list")]
struct PresentityList {
    /// only this event package, e.g. presence
    #[argh(option)]
    event: Option<String>,
}

/// One presentity's publications: entity-tag, expiry, sender, body.
#[derive(FromArgs)]
#[argh(subcommand, name = "show")]
struct PresentityShow {
    /// the presentity, e.g. sip:alice@example.com
    #[argh(positional)]
    uri: String,
}

/// OpenSIPS's name for `presentity list`.
#[derive(FromArgs)]
#[argh(subcommand, name = "pres_phtable_list")]
struct CtlPresPhtableList {}

/// Subscriptions: `watcher list [URI]`.
#[derive(FromArgs)]
#[argh(subcommand, name = "watcher")]
struct CtlWatcher {
    #[argh(subcommand)]
    command: WatcherCommand,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum WatcherCommand {
    List(WatcherList),
}

/// Subscription dialogs (of one presentity, or all): watcher, event, state, expiry,
/// transport, and the Call-ID and tags that `subscription terminate` takes.
#[derive(FromArgs)]
#[argh(subcommand, name = "list")]
struct WatcherList {
    /// only the watchers of this presentity
    #[argh(positional)]
    uri: Option<String>,
}

/// OpenSIPS's name for `watcher list`.
#[derive(FromArgs)]
#[argh(subcommand, name = "subs_phtable_list")]
struct CtlSubsPhtableList {}

/// Subscriptions: `subscription terminate CALL_ID TO_TAG FROM_TAG`.
#[derive(FromArgs)]
#[argh(subcommand, name = "subscription")]
struct CtlSubscription {
    #[argh(subcommand)]
    command: SubscriptionCommand,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum SubscriptionCommand {
    Terminate(SubscriptionTerminate),
}

/// End one subscription now: the watcher gets a terminated NOTIFY with the reason.
#[derive(FromArgs)]
#[argh(subcommand, name = "terminate")]
struct SubscriptionTerminate {
    /// the dialog's Call-ID (see `watcher list`)
    #[argh(positional)]
    call_id: String,
    /// our tag (`to_tag` in `watcher list`)
    #[argh(positional)]
    to_tag: String,
    /// the watcher's tag (`from_tag` in `watcher list`)
    #[argh(positional)]
    from_tag: String,
    /// RFC 6665 reason: deactivated (the default: the watcher may subscribe again at
    /// once), probation, rejected, timeout, giveup or noresource
    #[argh(option, default = "String::from(\"deactivated\")")]
    reason: String,
}

/// Publish state as the presentity (for scripts and voicemail systems without SIP,
/// like OpenSIPS's pua_mi); the body is read from standard input or --body-file.
#[derive(FromArgs)]
#[argh(subcommand, name = "publish")]
struct CtlPublish {
    /// the presentity, e.g. sip:alice@example.com
    #[argh(positional)]
    uri: String,
    /// the event package (default presence)
    #[argh(option, default = "String::from(\"presence\")")]
    event: String,
    /// the body's type (default: the event package's own)
    #[argh(option)]
    content_type: Option<String>,
    /// seconds the publication lives (default 3600; 0 removes it, with --etag)
    #[argh(option, default = "3600")]
    expires: u32,
    /// entity-tag of an earlier publication to refresh, modify or remove
    #[argh(option)]
    etag: Option<String>,
    /// file holding the body ("-" or none: standard input)
    #[argh(option)]
    body_file: Option<PathBuf>,
    /// send no body: a refresh (with --etag)
    #[argh(switch)]
    no_body: bool,
}

/// Expire what is due and run the housekeeping round now.
#[derive(FromArgs)]
#[argh(subcommand, name = "cleanup")]
struct CtlCleanup {}

/// Read the daemon's configuration file again and apply what can change while it runs
/// (limits, expiry bounds, policies); prints what was applied and which changed
/// settings need a restart. SIGHUP does the same.
#[derive(FromArgs)]
#[argh(subcommand, name = "reload")]
struct CtlReload {}

/// Rewrite the database into fresh files and switch to them, reclaiming the space of
/// deleted rows, while the daemon keeps serving (writes wait only for the changes made
/// during the copy). Prints the sizes before and after.
#[derive(FromArgs)]
#[argh(subcommand, name = "compact")]
struct CtlCompact {}

/// Whether FROM may send instant messages (MESSAGE) to TO, by TO's im-rules
/// documents: prints {"decision": "allow"} or {"decision": "block"}, for a proxy that
/// delivers the messages itself.
#[derive(FromArgs)]
#[argh(subcommand, name = "authorize-message")]
struct CtlAuthorizeMessage {
    /// the sender, e.g. sip:bob@example.com
    #[argh(positional)]
    from: String,
    /// the recipient, e.g. sip:alice@example.com
    #[argh(positional)]
    to: String,
}

/// Table sizes and engine counters.
#[derive(FromArgs)]
#[argh(subcommand, name = "status")]
struct CtlStatus {}

/// Check that the daemon answers.
#[derive(FromArgs)]
#[argh(subcommand, name = "ping")]
struct CtlPing {}

/// Re-evaluate a presentity's watchers of one event now (OpenSIPS's refreshWatchers).
#[derive(FromArgs)]
#[argh(subcommand, name = "refreshWatchers")]
struct CtlRefreshWatchers {
    /// the presentity, e.g. sip:alice@example.com
    #[argh(positional)]
    presentity_uri: String,
    /// the event package, e.g. presence
    #[argh(positional)]
    event: String,
}

/// Re-read or re-fetch one XCAP document and re-evaluate its user's watchers
/// (OpenSIPS's refreshXcapDoc).
#[derive(FromArgs)]
#[argh(subcommand, name = "refreshXcapDoc")]
struct CtlRefreshXcapDoc {
    /// the document's URI as stored, e.g. /xcap-root/pres-rules/users/sip:alice@example.com/index
    #[argh(positional)]
    doc_uri: String,
    /// the XCAP server's port the document came from (0: any)
    #[argh(positional)]
    port: u32,
}

/// Run the presence server.
#[derive(FromArgs)]
#[argh(subcommand, name = "run")]
struct RunArgs {
    /// configuration file (TOML); every option has a default
    #[argh(option)]
    config: Option<PathBuf>,
    /// database directory (default: presenced.db in the working directory)
    #[argh(option)]
    db: Option<PathBuf>,
    /// listen address, e.g. udp:127.0.0.1:5060, tcp:[::1]:5060, tls:0.0.0.0:5061 or
    /// wss:0.0.0.0:8443 (repeatable; replaces the configured list)
    #[argh(option)]
    listen: Vec<ListenAddr>,
}

/// Validate a configuration file and print the effective configuration.
#[derive(FromArgs)]
#[argh(subcommand, name = "check-config")]
struct CheckConfigArgs {
    /// the configuration file to check
    #[argh(positional)]
    file: PathBuf,
}

/// Print a configuration file with every setting, explained and commented out at its
/// default (the file packages install as /etc/presenced/presenced.toml).
#[derive(FromArgs)]
#[argh(subcommand, name = "default-config")]
struct DefaultConfigArgs {
    /// the database directory to write in, as a live setting (default: left at its
    /// default, commented out)
    #[argh(option)]
    db: Option<PathBuf>,
}

fn default_config(args: DefaultConfigArgs) -> ExitCode {
    let mut cfg = Config::default();
    if let Some(db) = args.db {
        cfg.db = db;
    }
    print!("{}", cfg.template());
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    let cli: Cli = argh::from_env();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    match cli.command {
        Command::Run(args) => run(args),
        Command::CheckConfig(args) => check_config(args),
        Command::DefaultConfig(args) => default_config(args),
        Command::Dump(args) => dump(args),
        Command::Restore(args) => restore(args),
        Command::Ctl(args) => ctl(args),
        Command::User(args) => user(args),
    }
}

/// Reads a password: twice from the terminal, or one line of a piped standard input.
fn read_password(account: &str) -> Result<String, String> {
    use std::io::IsTerminal;
    let pw = if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password(format!("Password for {account}: "))
            .map_err(|e| e.to_string())?;
        let again = rpassword::prompt_password("Once more: ").map_err(|e| e.to_string())?;
        if first != again {
            return Err("the passwords differ".into());
        }
        first
    } else {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    };
    if pw.is_empty() {
        return Err("an empty password is not accepted".into());
    }
    Ok(pw)
}

fn user(args: UserArgs) -> ExitCode {
    use presenced::mgmt::users::{self, UserChange};
    use presenced::store::Subscriber;
    let (db, socket, store_opts) = match locate(args.config.as_ref(), args.db, None) {
        Ok(l) => l,
        Err(e) => return fail(e),
    };
    let account = |s: &str| -> Result<Subscriber, String> {
        let (user, domain) = users::parse_account(s)?;
        let pw = read_password(&format!("{user}@{domain}"))?;
        Ok(Subscriber::with_password(&user, &domain, &pw))
    };
    let change = match &args.command {
        UserCommand::List(_) => None,
        UserCommand::Add(a) => Some(account(&a.account).map(|account| UserChange::Add { account })),
        UserCommand::Passwd(a) => {
            Some(account(&a.account).map(|account| UserChange::Passwd { account }))
        }
        UserCommand::Del(a) => Some(
            users::parse_account(&a.account)
                .map(|(username, domain)| UserChange::Del { username, domain }),
        ),
    };
    let change = match change.transpose() {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let result: Result<Vec<String>, String> = match (daemon(&socket), &change) {
        (Some(client), Some(c)) => client.user(c).map(|m| vec![m]).map_err(|e| e.to_string()),
        (Some(client), None) => client.user_list().map_err(|e| e.to_string()),
        (None, Some(c)) => open_direct_or_create(&db, store_opts)
            .and_then(|store| users::apply(&store, c).map(|m| vec![m])),
        (None, None) => open_direct(&db, &socket, store_opts).and_then(|store| users::list(&store)),
    };
    match result {
        Ok(lines) if change.is_some() => {
            for l in lines {
                eprintln!("presenced: {l}");
            }
            ExitCode::SUCCESS
        }
        Ok(lines) => {
            for l in lines {
                println!("{l}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("presenced: {msg}");
    ExitCode::FAILURE
}

fn run(args: RunArgs) -> ExitCode {
    // The file and the command-line options, applied the same way at start and at
    // every reload.
    let file = args.config.clone();
    let (db, listen) = (args.db.clone(), args.listen.clone());
    let load = move || -> Result<Config, String> {
        let mut config = match &file {
            Some(path) => Config::load(path).map_err(|e| e.to_string())?,
            None => Config::default(),
        };
        if let Some(db) = &db {
            config.db = db.clone();
        }
        if !listen.is_empty() {
            config.listen = listen.clone();
        }
        Ok(config)
    };
    let config = match load() {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let source = match &args.config {
        Some(path) => path.display().to_string(),
        None => "built-in defaults".to_string(),
    };
    use async_signal::Signal;
    let mut signals = match async_signal::Signals::new([Signal::Term, Signal::Int, Signal::Hup]) {
        Ok(s) => s,
        Err(e) => return fail(format!("cannot install signal handlers: {e}")),
    };
    log::info!(
        "starting: database {}, configuration from {source}",
        config.db.display()
    );
    let reload: Option<presenced::daemon::Reloader> = match args.config {
        Some(_) => Some(Arc::new(load.clone())),
        None => None,
    };
    let options = presenced::daemon::Options {
        reload,
        ..Default::default()
    };
    let handle = match presenced::daemon::start_with(config, Arc::new(SystemClock), options) {
        Ok(h) => h,
        Err(e) => return fail(e),
    };
    while let Some(Ok(sig)) = smol::block_on(signals.next()) {
        if sig != Signal::Hup {
            log::info!("received {sig:?}");
            break;
        }
        if args.config.is_none() {
            log::warn!("SIGHUP: started without a configuration file, nothing to re-read");
            continue;
        }
        match load().and_then(|c| handle.reload(c)) {
            Ok(done) => log::info!("SIGHUP: {done}"),
            Err(e) => log::error!("SIGHUP: configuration not reloaded: {e}"),
        }
    }
    match handle.shutdown() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

fn check_config(args: CheckConfigArgs) -> ExitCode {
    match Config::load(&args.file) {
        Ok(c) => {
            print!("{}", c.to_toml_string());
            println!("# authentication in effect: {}", c.auth_mode());
            match c.check_exposure(c.runs_xcap_server()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(e),
            }
        }
        Err(e) => fail(e),
    }
}

/// The database and control socket a data command addresses.
fn locate(
    config: Option<&PathBuf>,
    db: Option<PathBuf>,
    socket: Option<PathBuf>,
) -> Result<(PathBuf, PathBuf, StoreOptions), String> {
    let cfg = match config {
        Some(path) => Config::load(path).map_err(|e| e.to_string())?,
        None => Config::default(),
    };
    let db = db.unwrap_or(cfg.db);
    let socket = socket.unwrap_or_else(|| mgmt::socket_path(&db, cfg.control_socket.as_deref()));
    let opts = StoreOptions {
        cache_capacity: cfg.cache_capacity,
        sync_always: false,
    };
    Ok((db, socket, opts))
}

/// A connection to the daemon if one answers at `socket`.
fn daemon(socket: &std::path::Path) -> Option<Client> {
    Client::connect(socket).ok()
}

/// Opens the database directly (no daemon running). sled refuses a second process, so a
/// failure here while a daemon runs means its control socket is elsewhere.
fn open_direct(
    db: &std::path::Path,
    socket: &std::path::Path,
    opts: StoreOptions,
) -> Result<Store, String> {
    if !db.is_dir() {
        return Err(format!("{}: no such database", db.display()));
    }
    Store::open(db, opts).map_err(|e| {
        format!(
            "{}: {e} (if a daemon holds it, its control socket {} did not answer)",
            db.display(),
            socket.display()
        )
    })
}

fn counts_line(c: &TableCounts) -> String {
    format!(
        "{} rows (presentity {}, active_watchers {}, watchers {}, xcap {}, subscriber {})",
        c.total(),
        c.presentity,
        c.active_watchers,
        c.watchers,
        c.xcap,
        c.subscriber
    )
}

fn dump(args: DumpArgs) -> ExitCode {
    let (db, socket, store_opts) = match locate(args.config.as_ref(), args.db, None) {
        Ok(l) => l,
        Err(e) => return fail(e),
    };
    let mut tables = Vec::new();
    for name in args.tables.iter().flat_map(|t| t.split(',')) {
        match Table::from_name(name.trim()) {
            Some(t) => tables.push(t),
            None => return fail(format!("unknown table {name:?}")),
        }
    }
    let opts = DumpOptions {
        dialect: args.dialect,
        schema: args.schema,
        tables,
        opensips: args.opensips,
    };
    // A file is written under a temporary name and renamed once complete, so a failed
    // dump never leaves a plausible-looking backup behind. Anything that exists and is
    // not a regular file (/dev/null, a pipe) is written in place, never replaced.
    let special = args
        .output
        .as_ref()
        .and_then(|p| std::fs::metadata(p).ok())
        .is_some_and(|m| !m.is_file());
    let (mut out, partial): (Box<dyn std::io::Write>, Option<PathBuf>) = match &args.output {
        Some(path) if special => match std::fs::OpenOptions::new().write(true).open(path) {
            Ok(f) => (Box::new(f), None),
            Err(e) => return fail(format!("{}: {e}", path.display())),
        },
        Some(path) => {
            let mut tmp = path.clone().into_os_string();
            tmp.push(".partial");
            let tmp = PathBuf::from(tmp);
            match std::fs::File::create(&tmp) {
                Ok(f) => (Box::new(f), Some(tmp)),
                Err(e) => return fail(format!("{}: {e}", tmp.display())),
            }
        }
        None => (Box::new(std::io::stdout().lock()), None),
    };
    let result = match daemon(&socket) {
        Some(client) => client.dump(&opts, &mut out).map_err(|e| e.to_string()),
        None => open_direct(&db, &socket, store_opts).and_then(|store| {
            presenced::dump::write_dump(&store, &mut out, &opts, &mut || Ok(()))
                .map_err(|e| e.to_string())
        }),
    };
    let result = result.and_then(|c| out.flush().map(|()| c).map_err(|e| e.to_string()));
    drop(out);
    match (result, partial, &args.output) {
        (Ok(c), Some(tmp), Some(path)) => match std::fs::rename(&tmp, path) {
            Ok(()) => {
                eprintln!("presenced: dumped {}", counts_line(&c));
                ExitCode::SUCCESS
            }
            Err(e) => fail(format!("{}: {e}", path.display())),
        },
        (Ok(c), _, _) => {
            eprintln!("presenced: dumped {}", counts_line(&c));
            ExitCode::SUCCESS
        }
        (Err(e), partial, _) => {
            if let Some(tmp) = partial {
                let _ = std::fs::remove_file(tmp);
            }
            fail(format!("dump failed: {e}"))
        }
    }
}

fn restore(args: RestoreArgs) -> ExitCode {
    let (db, socket, store_opts) = match locate(args.config.as_ref(), args.db, None) {
        Ok(l) => l,
        Err(e) => return fail(e),
    };
    let opts = RestoreOptions {
        dialect: args.dialect,
        replace: args.replace,
        keep_expired: args.keep_expired,
    };
    let mut input: Box<dyn std::io::Read> = if args.input == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        match std::fs::File::open(&args.input) {
            Ok(f) => Box::new(f),
            Err(e) => return fail(format!("{}: {e}", args.input)),
        }
    };
    let result: Result<RestoreReport, String> = match daemon(&socket) {
        Some(client) => {
            let r = client.restore(&opts, &mut input).map_err(|e| e.to_string());
            if let Ok(report) = &r {
                for w in &report.warnings {
                    eprintln!("presenced: warning: {w}");
                }
            }
            r
        }
        None => {
            let now = SystemClock.unix_now();
            open_direct_or_create(&db, store_opts).and_then(|store| {
                presenced::dump::restore::restore(&store, input, &opts, now)
                    .map_err(|e| e.to_string())
            })
        }
    };
    match result {
        Ok(r) => {
            eprintln!(
                "presenced: restored {}; {} expired rows skipped",
                counts_line(&r.restored),
                r.skipped_expired
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(format!("{}: {e}", args.input)),
    }
}

/// Restore may create a fresh database (moving a backup to a new box).
fn open_direct_or_create(db: &std::path::Path, opts: StoreOptions) -> Result<Store, String> {
    Store::open(db, opts).map_err(|e| {
        format!(
            "{}: {e} (is a daemon holding it with its control socket elsewhere?)",
            db.display()
        )
    })
}

fn ctl(args: CtlArgs) -> ExitCode {
    let (_, socket, _) = match locate(args.config.as_ref(), args.db, args.socket) {
        Ok(l) => l,
        Err(e) => return fail(e),
    };
    let client = match Client::connect(&socket) {
        Ok(c) => c,
        Err(e) => {
            return fail(format!(
                "{}: {e} (is the daemon running?)",
                socket.display()
            ));
        }
    };
    use mgmt::protocol::Request;
    let json = |r: mgmt::protocol::Refreshed| serde_json::to_value(r).unwrap_or_default();
    // Listings stream one JSON object per line; the rest answer with one object.
    let listing = |req: Request, columns: &'static [&'static str]| (req, columns);
    let list = match args.command {
        CtlCommand::Presentity(CtlPresentity {
            command: PresentityCommand::List(a),
        }) => Some(listing(
            Request::PresentityList { event: a.event },
            &["presentity", "event", "publications", "expires"],
        )),
        CtlCommand::PresPhtableList(_) => Some(listing(
            Request::PresentityList { event: None },
            &["presentity", "event", "publications", "expires"],
        )),
        CtlCommand::Presentity(CtlPresentity {
            command: PresentityCommand::Show(a),
        }) => Some(listing(
            Request::PresentityShow { uri: a.uri },
            &["event", "etag", "expires", "content_type", "sender"],
        )),
        CtlCommand::Watcher(CtlWatcher {
            command: WatcherCommand::List(a),
        }) => Some(listing(
            Request::WatcherList { uri: a.uri },
            WATCHER_COLUMNS,
        )),
        CtlCommand::SubsPhtableList(_) => {
            Some(listing(Request::WatcherList { uri: None }, WATCHER_COLUMNS))
        }
        command => {
            let answer = match command {
                CtlCommand::Status(_) => client.status(),
                CtlCommand::Ping(_) => client.ping().map(serde_json::Value::String),
                CtlCommand::RefreshWatchers(a) => client
                    .refresh_watchers(&a.presentity_uri, &a.event)
                    .map(json),
                CtlCommand::RefreshXcapDoc(a) => {
                    client.refresh_xcap_doc(&a.doc_uri, a.port).map(json)
                }
                CtlCommand::Subscription(CtlSubscription {
                    command: SubscriptionCommand::Terminate(a),
                }) => client.call(
                    &Request::Terminate {
                        call_id: a.call_id,
                        to_tag: a.to_tag,
                        from_tag: a.from_tag,
                        reason: a.reason,
                    },
                    &mut std::io::sink(),
                ),
                CtlCommand::Publish(a) => match publish_request(a) {
                    Ok(req) => client.call(&req, &mut std::io::sink()),
                    Err(e) => return fail(e),
                },
                CtlCommand::Cleanup(_) => client.call(&Request::Cleanup, &mut std::io::sink()),
                CtlCommand::Reload(_) => client.call(&Request::Reload, &mut std::io::sink()),
                CtlCommand::Compact(_) => client.call(&Request::Compact, &mut std::io::sink()),
                CtlCommand::AuthorizeMessage(a) => client.call(
                    &Request::AuthorizeMessage {
                        from: a.from,
                        to: a.to,
                    },
                    &mut std::io::sink(),
                ),
                _ => unreachable!("listings are handled above"),
            };
            return match answer {
                Ok(v) if args.table => {
                    print_fields(&v, "");
                    ExitCode::SUCCESS
                }
                Ok(v) => {
                    println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e),
            };
        }
    };
    let Some((req, columns)) = list else {
        return ExitCode::SUCCESS;
    };
    let mut lines = Vec::new();
    let result = match args.table {
        true => client.call(&req, &mut lines),
        false => client.call(&req, &mut std::io::stdout().lock()),
    };
    match result {
        Ok(_) if args.table => {
            print_table(&lines, columns);
            ExitCode::SUCCESS
        }
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

const WATCHER_COLUMNS: &[&str] = &[
    "presentity",
    "watcher",
    "event",
    "status",
    "expires",
    "transport",
    "call_id",
    "to_tag",
    "from_tag",
];

/// `ctl publish`'s request, with its body read from a file or standard input.
fn publish_request(a: CtlPublish) -> Result<mgmt::protocol::Request, String> {
    use std::io::Read;
    let body = match (&a.body_file, a.no_body) {
        (_, true) => String::new(),
        (Some(path), false) if path.as_os_str() != "-" => {
            std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?
        }
        _ => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .map_err(|e| format!("standard input: {e}"))?;
            s
        }
    };
    Ok(mgmt::protocol::Request::Publish(
        mgmt::inspect::LocalPublish {
            uri: a.uri,
            event: a.event,
            content_type: a.content_type,
            body,
            expires: a.expires,
            etag: a.etag,
        },
    ))
}

/// An answer as `key: value` lines, nested objects indented.
fn print_fields(v: &serde_json::Value, indent: &str) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match v {
                    serde_json::Value::Object(_) => {
                        println!("{indent}{k}:");
                        print_fields(v, &format!("{indent}  "));
                    }
                    other => println!("{indent}{k}: {}", plain(other)),
                }
            }
        }
        other => println!("{indent}{}", plain(other)),
    }
}

fn plain(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// JSON lines as aligned columns.
fn print_table(lines: &[u8], columns: &[&str]) {
    let rows: Vec<Vec<String>> = String::from_utf8_lossy(lines)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| columns.iter().map(|c| plain(&v[*c])).collect())
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([c.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let print = |cells: Vec<&str>| {
        let line: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", line.join("  ").trim_end());
    };
    print(columns.to_vec());
    for r in &rows {
        print(r.iter().map(String::as_str).collect());
    }
}
