//! What `presenced ctl` shows of the stored state and the PUBLISH it makes for scripts:
//! presentities (OpenSIPS `pres_phtable_list`, Kamailio `presence.presentity_list`),
//! subscription dialogs (`subs_phtable_list`, `presence.watcher_list`), and the
//! request behind `ctl publish` (OpenSIPS `pua_mi`), built as SIP text and parsed by the
//! same parser as the network's, so it is checked like any other PUBLISH.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::sip::message::{Message, Request};
use crate::store::records::status;
use crate::store::{Publication, Store, StoreError, SubscriptionRow};

/// `ctl publish`'s arguments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalPublish {
    /// The presentity, `sip:user@domain`.
    pub uri: String,
    pub event: String,
    pub content_type: Option<String>,
    /// Empty: a refresh (with `etag`).
    pub body: String,
    pub expires: u32,
    /// The entity-tag of the publication to refresh, modify or remove (0 expires).
    pub etag: Option<String>,
}

/// The content type a package's PUBLISH takes, for the built-in ones.
pub fn default_content_type(event: &str) -> Option<&'static str> {
    match event.to_ascii_lowercase().split(';').next() {
        Some("presence") => Some("application/pidf+xml"),
        Some("dialog") => Some("application/dialog-info+xml"),
        Some("message-summary") => Some("application/simple-message-summary"),
        _ => None,
    }
}

impl LocalPublish {
    /// The PUBLISH, from this server to itself. Header values may not carry line breaks
    /// (they would make headers of their own).
    pub fn request(&self, call_id: &str) -> Result<Request, String> {
        let fields = [
            ("URI", self.uri.as_str()),
            ("event", &self.event),
            ("etag", self.etag.as_deref().unwrap_or_default()),
            (
                "content type",
                self.content_type.as_deref().unwrap_or_default(),
            ),
        ];
        if let Some((what, _)) = fields
            .iter()
            .find(|(_, v)| v.chars().any(|c| c.is_control()))
        {
            return Err(format!("the {what} holds a control character"));
        }
        match crate::sip::uri::Uri::parse(&self.uri) {
            Ok(u) if u.as_sip().is_some() => {}
            _ => return Err(format!("{} is not a sip: or sips: URI", self.uri)),
        }
        let ctype = match (&self.content_type, self.body.is_empty()) {
            (_, true) => None,
            (Some(t), false) => Some(t.as_str()),
            (None, false) => Some(
                default_content_type(&self.event)
                    .ok_or_else(|| format!("say the content type of a {} body", self.event))?,
            ),
        };
        let mut text = format!(
            "PUBLISH {uri} SIP/2.0\r\n\
             Via: SIP/2.0/TCP 127.0.0.1;branch=z9hG4bKctl{call_id}\r\n\
             Max-Forwards: 70\r\nFrom: <{uri}>;tag=ctl\r\nTo: <{uri}>\r\n\
             Call-ID: {call_id}@presenced-ctl\r\nCSeq: 1 PUBLISH\r\n\
             Event: {event}\r\nExpires: {expires}\r\n",
            uri = self.uri,
            event = self.event,
            expires = self.expires,
        );
        if let Some(etag) = &self.etag {
            text.push_str(&format!("SIP-If-Match: {etag}\r\n"));
        }
        if let Some(t) = ctype {
            text.push_str(&format!("Content-Type: {t}\r\n"));
        }
        text.push_str(&format!(
            "Content-Length: {}\r\n\r\n{}",
            self.body.len(),
            self.body
        ));
        match Message::parse(text.as_bytes()) {
            Ok(Message::Request(r)) => Ok(r),
            Ok(Message::Response(_)) => Err("not a request".into()),
            Err(e) => Err(format!("not a valid PUBLISH: {e}")),
        }
    }
}

/// One line of `ctl watcher list`.
pub fn dialog_line(d: &SubscriptionRow) -> Value {
    json!({
        "presentity": d.presentity_uri,
        "watcher": d.watcher_uri,
        "event": d.event,
        "status": status::name(d.status),
        "expires": d.expires,
        "transport": d.socket_info.split(':').next().unwrap_or_default(),
        "contact": d.remote_target,
        "source": d.transport_peer,
        "user_agent": d.user_agent,
        "call_id": d.call_id,
        "to_tag": d.to_tag,
        "from_tag": d.from_tag,
    })
}

/// One line of `ctl presentity show`.
pub fn publication_line(p: &Publication) -> Value {
    json!({
        "presentity": p.presentity_uri,
        "event": p.event,
        "etag": p.etag,
        "expires": p.expires,
        "received": p.received_time,
        "content_type": p.content_type,
        "sender": p.sender,
        "body": String::from_utf8_lossy(&p.body),
    })
}

/// `ctl presentity list`: one line per presentity and event, from the rows in key
/// order (event, then presentity), so each group is consecutive.
pub fn presentity_lines(
    store: &Store,
    event: Option<&str>,
    mut emit: impl FnMut(Value) -> std::io::Result<()>,
) -> Result<u64, String> {
    struct Group {
        event: String,
        uri: String,
        etags: Vec<String>,
        expires: u64,
    }
    let line = |g: &Group| {
        json!({
            "presentity": g.uri,
            "event": g.event,
            "publications": g.etags.len(),
            "expires": g.expires,
            "etags": g.etags,
        })
    };
    let mut groups = 0;
    let mut current: Option<Group> = None;
    for p in store.iter_publications() {
        let p = p.map_err(|e: StoreError| e.to_string())?;
        if event.is_some_and(|e| !e.eq_ignore_ascii_case(&p.event)) {
            continue;
        }
        match &mut current {
            Some(g) if g.event == p.event && g.uri == p.presentity_uri => {
                g.etags.push(p.etag);
                g.expires = g.expires.max(p.expires);
            }
            _ => {
                if let Some(g) = current.take() {
                    emit(line(&g)).map_err(|e| e.to_string())?;
                    groups += 1;
                }
                current = Some(Group {
                    event: p.event,
                    uri: p.presentity_uri,
                    etags: vec![p.etag],
                    expires: p.expires,
                });
            }
        }
    }
    if let Some(g) = current {
        emit(line(&g)).map_err(|e| e.to_string())?;
        groups += 1;
    }
    Ok(groups)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publish(body: &str, etag: Option<&str>) -> LocalPublish {
        LocalPublish {
            uri: "sip:vm@example.com".into(),
            event: "message-summary".into(),
            content_type: None,
            body: body.into(),
            expires: 600,
            etag: etag.map(str::to_owned),
        }
    }

    #[test]
    fn a_local_publish_is_a_parsed_request_with_the_packages_content_type() {
        let r = publish("Messages-Waiting: yes\r\n", None)
            .request("c1")
            .unwrap();
        assert_eq!(
            r.headers.get("Content-Type"),
            Some("application/simple-message-summary")
        );
        assert_eq!(r.headers.get("Expires"), Some("600"));
        assert_eq!(r.body, b"Messages-Waiting: yes\r\n");
        let refresh = publish("", Some("abc")).request("c2").unwrap();
        assert_eq!(refresh.headers.get("SIP-If-Match"), Some("abc"));
        assert_eq!(refresh.headers.get("Content-Type"), None);
    }

    #[test]
    fn header_injection_and_unknown_bodies_are_refused() {
        let mut p = publish("x", None);
        p.etag = Some("a\r\nX-Evil: 1".into());
        assert!(p.request("c").unwrap_err().contains("etag"));
        let mut p = publish("x", None);
        p.event = "something-else".into();
        assert!(p.request("c").unwrap_err().contains("content type"));
        let mut p = publish("x", None);
        p.uri = "not a uri".into();
        assert!(p.request("c").unwrap_err().contains("URI"));
        p.uri = "tel:+123".into();
        assert!(p.request("c").unwrap_err().contains("URI"));
    }
}
