//! The four dumped tables as data: each table's SQL columns (OpenSIPS 3.x's, then our
//! extensions) and the two conversions between a stored record and a row of values.
//! Writer and reader are driven by these specs, so a new table is one more spec here.
//!
//! Mapping notes:
//! - OpenSIPS keeps an AOR as `username`/`domain` pairs; we keep full URIs. A URI that
//!   `sip:user@domain` rebuilds exactly is written as the pair only; any other (sips:,
//!   parameters, no user part) also goes into an extension column that restore prefers.
//! - Lists (route set, Accept) are comma-joined, the way OpenSIPS stores `record_route`.

use std::borrow::Cow;

use crate::store::{Publication, Subscriber, SubscriptionRow, Watcher, Xcap};

/// How a column's values are written and read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    /// UTF-8 text; NULL allowed where the record has an `Option`.
    Text,
    /// A non-negative integer.
    Int,
    /// Bytes; written as text when they are clean text, else as the dialect's hex form.
    Blob,
    /// OpenSIPS's auto-increment key: never written, ignored on restore.
    Id,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    pub ty: Type,
    /// A presenced extension (not in OpenSIPS 3.x); left out by `--opensips`.
    pub ext: bool,
}

const fn c(name: &'static str, ty: Type) -> Column {
    Column {
        name,
        ty,
        ext: false,
    }
}

const fn x(name: &'static str, ty: Type) -> Column {
    Column {
        name,
        ty,
        ext: true,
    }
}

use Type::{Blob, Id, Int, Text};

/// The dumped tables, in dump order (dialogs before watchers: see `dump::write`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Table {
    Publication,
    ActiveWatchers,
    Watchers,
    Xcap,
    Subscriber,
}

impl Table {
    pub const ALL: [Table; 5] = [
        Table::Publication,
        Table::ActiveWatchers,
        Table::Watchers,
        Table::Xcap,
        Table::Subscriber,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Table::Publication => "presentity",
            Table::ActiveWatchers => "active_watchers",
            Table::Watchers => "watchers",
            Table::Xcap => "xcap",
            Table::Subscriber => "subscriber",
        }
    }

    pub fn from_name(name: &str) -> Option<Table> {
        Table::ALL
            .into_iter()
            .find(|t| t.name().eq_ignore_ascii_case(name))
    }

    /// The column order of `schema/*.sql`, which an INSERT without a column list follows.
    pub fn columns(self) -> &'static [Column] {
        match self {
            Table::Publication => PRESENTITY,
            Table::ActiveWatchers => ACTIVE_WATCHERS,
            Table::Watchers => WATCHERS,
            Table::Xcap => XCAP,
            Table::Subscriber => SUBSCRIBER,
        }
    }

    pub fn column_index(self, name: &str) -> Option<usize> {
        self.columns()
            .iter()
            .position(|c| c.name.eq_ignore_ascii_case(name))
    }
}

/// Tables that are OpenSIPS's but not ours to restore (`version` rows in our own
/// schema-carrying dumps, sqlite's sequence bookkeeping): their INSERTs are skipped.
pub fn is_ignored_table(name: &str) -> bool {
    ["version", "sqlite_sequence"]
        .iter()
        .any(|t| t.eq_ignore_ascii_case(name))
}

pub const PRESENTITY: &[Column] = &[
    c("id", Id),
    c("username", Text),
    c("domain", Text),
    c("event", Text),
    c("etag", Text),
    c("expires", Int),
    c("received_time", Int),
    c("body", Blob),
    c("extra_hdrs", Blob),
    c("sender", Text),
    x("presentity_uri", Text),
    x("content_type", Text),
    x("priority", Int),
];

pub const ACTIVE_WATCHERS: &[Column] = &[
    c("id", Id),
    c("presentity_uri", Text),
    c("watcher_username", Text),
    c("watcher_domain", Text),
    c("to_user", Text),
    c("to_domain", Text),
    c("event", Text),
    c("event_id", Text),
    c("to_tag", Text),
    c("from_tag", Text),
    c("callid", Text),
    c("local_cseq", Int),
    c("remote_cseq", Int),
    c("contact", Text),
    c("record_route", Text),
    c("expires", Int),
    c("status", Int),
    c("reason", Text),
    c("version", Int),
    c("socket_info", Text),
    c("local_contact", Text),
    c("sharing_tag", Text),
    x("watcher_uri", Text),
    x("to_uri", Text),
    x("transport_peer", Text),
    x("user_agent", Text),
    x("accept", Text),
];

pub const WATCHERS: &[Column] = &[
    c("id", Id),
    c("presentity_uri", Text),
    c("watcher_username", Text),
    c("watcher_domain", Text),
    c("event", Text),
    c("status", Int),
    c("reason", Text),
    c("inserted_time", Int),
    x("watcher_uri", Text),
];

pub const XCAP: &[Column] = &[
    c("id", Id),
    c("username", Text),
    c("domain", Text),
    c("doc", Blob),
    c("doc_type", Int),
    c("etag", Text),
    c("source", Int),
    c("doc_uri", Text),
    c("port", Int),
];

/// One value on its way out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Val<'a> {
    Null,
    Int(u64),
    Text(Cow<'a, str>),
    Blob(&'a [u8]),
}

fn text(s: &str) -> Val<'_> {
    Val::Text(Cow::Borrowed(s))
}

fn opt(s: &Option<String>) -> Val<'_> {
    s.as_deref().map_or(Val::Null, text)
}

fn list(items: &[String]) -> Val<'_> {
    if items.is_empty() {
        Val::Null
    } else {
        Val::Text(Cow::Owned(items.join(",")))
    }
}

/// `sip:user@domain` → (user, domain, exact): `exact` says [`join_aor`] gives it back.
pub fn split_aor(uri: &str) -> (&str, &str, bool) {
    let rest = uri.strip_prefix("sip:").unwrap_or(uri);
    let (user, host) = match rest.rsplit_once('@') {
        Some((u, h)) => (u, h),
        None => ("", rest),
    };
    let host = host.split([';', '?', '>']).next().unwrap_or(host);
    let exact = join_aor(user, host) == uri;
    (user, host, exact)
}

/// The URI OpenSIPS means by a username/domain pair.
pub fn join_aor(user: &str, domain: &str) -> String {
    if user.is_empty() {
        format!("sip:{domain}")
    } else {
        format!("sip:{user}@{domain}")
    }
}

/// Splits a comma-joined list, keeping commas inside `<…>` and `"…"` (a route entry's
/// URI or display name may contain one).
pub fn split_list(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let (mut angle, mut quote, mut start) = (false, false, 0);
    for (i, ch) in s.char_indices() {
        match ch {
            '"' if !angle => quote = !quote,
            '<' if !quote => angle = true,
            '>' if !quote => angle = false,
            ',' if !angle && !quote => {
                out.push(s[start..i].trim().to_string());
                start = i + 1;
            }
            _ => {}
        }
    }
    let last = s[start..].trim();
    if !last.is_empty() || !out.is_empty() {
        out.push(last.to_string());
    }
    out
}

/// The values of one record, in `table.columns()` order (Id columns get `Null`).
pub fn presentity_values<'a>(p: &'a Publication, out: &mut Vec<Val<'a>>) {
    let (user, domain, exact) = split_aor(&p.presentity_uri);
    out.extend([
        Val::Null,
        text(user),
        text(domain),
        text(&p.event),
        text(&p.etag),
        Val::Int(p.expires),
        Val::Int(p.received_time),
        Val::Blob(&p.body),
        Val::Blob(p.extra_hdrs.as_bytes()),
        text(&p.sender),
        if exact {
            Val::Null
        } else {
            text(&p.presentity_uri)
        },
        text(&p.content_type),
        Val::Int(p.priority),
    ]);
}

pub fn dialog_values<'a>(d: &'a SubscriptionRow, out: &mut Vec<Val<'a>>) {
    let (w_user, w_domain, w_exact) = split_aor(&d.watcher_uri);
    let (t_user, t_domain, t_exact) = split_aor(&d.to_uri);
    out.extend([
        Val::Null,
        text(&d.presentity_uri),
        text(w_user),
        text(w_domain),
        text(t_user),
        text(t_domain),
        text(&d.event),
        opt(&d.event_id),
        text(&d.to_tag),
        text(&d.from_tag),
        text(&d.call_id),
        Val::Int(d.local_cseq.into()),
        Val::Int(d.remote_cseq.into()),
        text(&d.remote_target),
        list(&d.record_route),
        Val::Int(d.expires),
        Val::Int(d.status.into()),
        opt(&d.reason),
        Val::Int(d.version.into()),
        text(&d.socket_info),
        text(&d.local_contact),
        opt(&d.sharing_tag),
        if w_exact {
            Val::Null
        } else {
            text(&d.watcher_uri)
        },
        if t_exact { Val::Null } else { text(&d.to_uri) },
        text(&d.transport_peer),
        text(&d.user_agent),
        list(&d.accept),
    ]);
}

pub fn watcher_values<'a>(w: &'a Watcher, out: &mut Vec<Val<'a>>) {
    let (user, domain, exact) = split_aor(&w.watcher_uri);
    out.extend([
        Val::Null,
        text(&w.presentity_uri),
        text(user),
        text(domain),
        text(&w.event),
        Val::Int(w.status.into()),
        opt(&w.reason),
        Val::Int(w.inserted_time),
        if exact {
            Val::Null
        } else {
            text(&w.watcher_uri)
        },
    ]);
}

/// OpenSIPS auth_db's `subscriber`. The password column is always written empty: only
/// HA1s are kept.
pub const SUBSCRIBER: &[Column] = &[
    c("id", Id),
    c("username", Text),
    c("domain", Text),
    c("password", Text),
    c("email_address", Text),
    c("ha1", Text),
    c("ha1_sha256", Text),
    c("ha1_sha512t256", Text),
    c("rpid", Text),
];

pub fn subscriber_values<'a>(s: &'a Subscriber, out: &mut Vec<Val<'a>>) {
    out.extend([
        Val::Null,
        text(&s.username),
        text(&s.domain),
        text(""),
        text(""),
        text(&s.ha1),
        text(&s.ha1_sha256),
        text(&s.ha1_sha512t256),
        Val::Null,
    ]);
}

pub fn xcap_values<'a>(d: &'a Xcap, out: &mut Vec<Val<'a>>) {
    out.extend([
        Val::Null,
        text(&d.username),
        text(&d.domain),
        Val::Blob(&d.doc),
        Val::Int(d.doc_type.into()),
        text(&d.etag),
        Val::Int(d.source.into()),
        text(&d.doc_uri),
        Val::Int(d.port.into()),
    ]);
}

/// A value as restore hands it to a table: already typed by the column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    /// Not in the INSERT (or `DEFAULT`): the column's default applies.
    Missing,
    Null,
    Int(u64),
    Text(String),
    Blob(Vec<u8>),
}

/// Why a row could not become a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowError {
    Missing(&'static str),
    Null(&'static str),
    OutOfRange(&'static str, u64),
    BadStatus(u64),
    /// A value the column cannot take, and why.
    Invalid(&'static str, String),
}

impl std::fmt::Display for RowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RowError::Missing(c) => write!(f, "required column {c} is missing"),
            RowError::Null(c) => write!(f, "column {c} may not be NULL"),
            RowError::OutOfRange(c, v) => write!(f, "column {c}: {v} is out of range"),
            RowError::Invalid(c, why) => write!(f, "column {c}: {why}"),
            RowError::BadStatus(v) => {
                write!(
                    f,
                    "status {v} is not 1 (active), 2 (pending), 3 (terminated) or 4 (waiting)"
                )
            }
        }
    }
}

/// Typed access to one row's fields by column name.
pub struct Row<'a> {
    pub table: Table,
    pub fields: &'a mut [Field],
}

impl Row<'_> {
    fn take(&mut self, name: &'static str) -> Field {
        match self.table.column_index(name) {
            Some(i) => self
                .fields
                .get_mut(i)
                .map(|f| std::mem::replace(f, Field::Missing))
                .unwrap_or(Field::Missing),
            None => Field::Missing,
        }
    }

    fn text(&mut self, name: &'static str) -> Result<String, RowError> {
        match self.take(name) {
            Field::Text(s) => Ok(s),
            Field::Missing => Err(RowError::Missing(name)),
            _ => Err(RowError::Null(name)),
        }
    }

    fn text_or(&mut self, name: &'static str, default: &str) -> String {
        match self.take(name) {
            Field::Text(s) => s,
            _ => default.to_string(),
        }
    }

    fn opt_text(&mut self, name: &'static str) -> Option<String> {
        match self.take(name) {
            Field::Text(s) => Some(s),
            _ => None,
        }
    }

    fn int(&mut self, name: &'static str) -> Result<u64, RowError> {
        match self.take(name) {
            Field::Int(v) => Ok(v),
            Field::Missing => Err(RowError::Missing(name)),
            _ => Err(RowError::Null(name)),
        }
    }

    fn int_or(&mut self, name: &'static str, default: u64) -> u64 {
        match self.take(name) {
            Field::Int(v) => v,
            _ => default,
        }
    }

    fn small<T: TryFrom<u64>>(&mut self, name: &'static str, v: u64) -> Result<T, RowError> {
        T::try_from(v).map_err(|_| RowError::OutOfRange(name, v))
    }

    fn blob_or_empty(&mut self, name: &'static str) -> Vec<u8> {
        match self.take(name) {
            Field::Blob(b) => b,
            Field::Text(s) => s.into_bytes(),
            _ => Vec::new(),
        }
    }

    /// The full URI: the extension column if given, else rebuilt from the pair.
    fn aor(
        &mut self,
        ext: &'static str,
        user: &'static str,
        domain: &'static str,
    ) -> Result<String, RowError> {
        let full = self.opt_text(ext);
        let u = self.text(user);
        let d = self.text(domain);
        match full {
            Some(f) => Ok(f),
            None => Ok(join_aor(&u?, &d?)),
        }
    }

    fn status(&mut self, default: Option<u64>) -> Result<u8, RowError> {
        let v = match default {
            Some(d) => self.int_or("status", d),
            None => self.int("status")?,
        };
        match v {
            1..=4 => Ok(v as u8),
            _ => Err(RowError::BadStatus(v)),
        }
    }
}

/// The content type a publication of `event` carries when a dump does not say.
fn default_content_type(event: &str) -> &'static str {
    let package = event.split(';').next().unwrap_or(event).trim();
    match package {
        "presence" => "application/pidf+xml",
        "dialog" => "application/dialog-info+xml",
        "message-summary" => "application/simple-message-summary",
        _ => "",
    }
}

pub fn presentity_from(mut r: Row<'_>) -> Result<Publication, RowError> {
    let presentity_uri = r.aor("presentity_uri", "username", "domain")?;
    let event = r.text("event")?;
    let received_time = r.int_or("received_time", 0);
    let content_type = r.text_or("content_type", default_content_type(&event));
    Ok(Publication {
        presentity_uri,
        etag: r.text("etag")?,
        expires: r.int("expires")?,
        received_time,
        body: r.blob_or_empty("body"),
        content_type,
        sender: r.text_or("sender", ""),
        extra_hdrs: String::from_utf8(r.blob_or_empty("extra_hdrs"))
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
        // OpenSIPS orders publications by received_time; so do we when no order is kept.
        priority: r.int_or("priority", received_time),
        event,
    })
}

pub fn dialog_from(mut r: Row<'_>) -> Result<SubscriptionRow, RowError> {
    let presentity_uri = r.text("presentity_uri")?;
    let watcher_uri = r.aor("watcher_uri", "watcher_username", "watcher_domain")?;
    let to_full = r.opt_text("to_uri");
    let to_user = r.opt_text("to_user");
    let to_domain = r.opt_text("to_domain");
    let to_uri = match (to_full, to_user, to_domain) {
        (Some(f), _, _) => f,
        (None, Some(u), Some(d)) => join_aor(&u, &d),
        _ => presentity_uri.clone(),
    };
    let local_cseq = r.int_or("local_cseq", 0);
    let remote_cseq = r.int_or("remote_cseq", 0);
    let version = r.int_or("version", 0);
    Ok(SubscriptionRow {
        watcher_uri,
        to_uri,
        event: r.text_or("event", "presence"),
        event_id: r.opt_text("event_id"),
        call_id: r.text("callid")?,
        to_tag: r.text("to_tag")?,
        from_tag: r.text("from_tag")?,
        local_cseq: r.small("local_cseq", local_cseq)?,
        remote_cseq: r.small("remote_cseq", remote_cseq)?,
        expires: r.int("expires")?,
        status: r.status(Some(2))?,
        reason: r.opt_text("reason"),
        version: r.small("version", version)?,
        remote_target: r.text("contact")?,
        record_route: r
            .opt_text("record_route")
            .map(|s| split_list(&s))
            .unwrap_or_default(),
        local_contact: r.text_or("local_contact", ""),
        socket_info: r.text_or("socket_info", ""),
        transport_peer: r.text_or("transport_peer", ""),
        user_agent: r.text_or("user_agent", ""),
        accept: r
            .opt_text("accept")
            .map(|s| split_list(&s))
            .unwrap_or_default(),
        sharing_tag: r.opt_text("sharing_tag"),
        presentity_uri,
    })
}

pub fn watcher_from(mut r: Row<'_>) -> Result<Watcher, RowError> {
    Ok(Watcher {
        presentity_uri: r.text("presentity_uri")?,
        watcher_uri: r.aor("watcher_uri", "watcher_username", "watcher_domain")?,
        event: r.text_or("event", "presence"),
        status: r.status(None)?,
        reason: r.opt_text("reason"),
        inserted_time: r.int_or("inserted_time", 0),
    })
}

/// A `subscriber` row. A clear `password` (OpenSIPS with `calculate_ha1`) is hashed here
/// and dropped; otherwise the HA1 columns are taken as they are (lower-cased hex), and a
/// row with neither cannot authenticate anyone and is refused.
pub fn subscriber_from(mut r: Row<'_>) -> Result<Subscriber, RowError> {
    let username = r.text("username")?;
    let domain = r.text_or("domain", "").to_ascii_lowercase();
    if domain.is_empty() {
        return Err(RowError::Invalid(
            "domain",
            "an account needs a domain (the digest realm)".into(),
        ));
    }
    let password = r.text_or("password", "");
    if !password.is_empty() {
        return Ok(Subscriber::with_password(&username, &domain, &password));
    }
    let mut ha1 = |name: &'static str, len: usize| -> Result<String, RowError> {
        let v = r.text_or(name, "").to_ascii_lowercase();
        if !v.is_empty() && (v.len() != len || !v.bytes().all(|b| b.is_ascii_hexdigit())) {
            return Err(RowError::Invalid(
                name,
                format!("not a {len}-digit hex HA1"),
            ));
        }
        Ok(v)
    };
    let s = Subscriber {
        ha1: ha1("ha1", 32)?,
        ha1_sha256: ha1("ha1_sha256", 64)?,
        ha1_sha512t256: ha1("ha1_sha512t256", 64)?,
        username,
        domain,
    };
    if s.ha1.is_empty() && s.ha1_sha256.is_empty() && s.ha1_sha512t256.is_empty() {
        return Err(RowError::Invalid(
            "ha1",
            "neither a password nor an HA1: the account could never authenticate".into(),
        ));
    }
    Ok(s)
}

pub fn xcap_from(mut r: Row<'_>) -> Result<Xcap, RowError> {
    let doc_type = r.int("doc_type")?;
    let source = r.int_or("source", 0);
    let port = r.int_or("port", 0);
    Ok(Xcap {
        username: r.text("username")?,
        domain: r.text("domain")?,
        doc_type: r.small("doc_type", doc_type)?,
        doc_uri: r.text("doc_uri")?,
        doc: match r.take("doc") {
            Field::Blob(b) => b,
            Field::Text(s) => s.into_bytes(),
            Field::Missing => return Err(RowError::Missing("doc")),
            _ => return Err(RowError::Null("doc")),
        },
        etag: r.text_or("etag", ""),
        source: r.small("source", source)?,
        port: r.small("port", port)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_aors_split_exactly_and_others_are_flagged() {
        assert_eq!(
            split_aor("sip:alice@example.com"),
            ("alice", "example.com", true)
        );
        assert_eq!(split_aor("sip:example.com"), ("", "example.com", true));
        assert!(!split_aor("sips:alice@example.com").2);
        assert_eq!(
            split_aor("sip:bob@example.org;user=phone"),
            ("bob", "example.org", false)
        );
    }

    #[test]
    fn lists_split_on_top_level_commas_only() {
        assert_eq!(
            split_list("<sip:a;lr>, \"x,y\" <sip:b,c;lr>"),
            vec!["<sip:a;lr>".to_string(), "\"x,y\" <sip:b,c;lr>".to_string()]
        );
        assert!(split_list("").is_empty());
    }

    #[test]
    fn every_table_has_an_id_first_and_unique_column_names() {
        for t in Table::ALL {
            let cols = t.columns();
            assert_eq!(cols[0].ty, Type::Id, "{}", t.name());
            for (i, c) in cols.iter().enumerate() {
                assert_eq!(t.column_index(c.name), Some(i), "{}.{}", t.name(), c.name);
            }
        }
    }

    #[test]
    fn a_status_outside_opensips_values_is_refused() {
        let mut fields = vec![Field::Missing; WATCHERS.len()];
        fields[1] = Field::Text("sip:a@b".into());
        fields[2] = Field::Text("w".into());
        fields[3] = Field::Text("d".into());
        fields[5] = Field::Int(7);
        let row = Row {
            table: Table::Watchers,
            fields: &mut fields,
        };
        assert_eq!(watcher_from(row), Err(RowError::BadStatus(7)));
    }
}
