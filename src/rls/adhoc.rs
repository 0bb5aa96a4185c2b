//! Request-contained lists (RFC 5367): a SUBSCRIBE whose body is a resource-lists
//! document (`Content-Disposition: recipient-list`) asks for a list subscription to the
//! resources in it. Here: recognising such a body, reading its entries, and the
//! rls-services document that keeps the ad-hoc list as a service of the subscriber's
//! (so it survives a restart like any other list) until the subscription ends.

use crate::sip::message::Request;

/// The body type of a request-contained list (RFC 5367 §4, RFC 4826 §3).
pub const RESOURCE_LISTS_TYPE: &str = "application/resource-lists+xml";

/// The user part every ad-hoc list's URI starts with.
pub const PREFIX: &str = "adhoc-";

/// Why a carried list cannot be served.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// A recipient-list body of another type (415, with Accept).
    Type,
    /// Not a resource-lists document (400).
    Invalid(String),
}

/// The entries of the list `req` carries (nested lists flattened, each URI once, in
/// order); `Ok(None)` when it carries none.
pub fn carried(req: &Request) -> Result<Option<Vec<String>>, Refused> {
    let disposition = req.headers.get("Content-Disposition").unwrap_or("");
    let ctype = match req.headers.content_type() {
        Ok(Some(t)) => t.essence(),
        _ => String::new(),
    };
    let recipient_list = disposition
        .split(';')
        .next()
        .is_some_and(|d| d.trim().eq_ignore_ascii_case("recipient-list"));
    if req.body.is_empty() || !(recipient_list || ctype == RESOURCE_LISTS_TYPE) {
        return Ok(None);
    }
    if ctype != RESOURCE_LISTS_TYPE {
        return Err(Refused::Type);
    }
    let root = crate::xml::parse(&req.body).map_err(|_| Refused::Invalid("not XML".into()))?;
    if !root.is("resource-lists", super::lists::RL_NS) {
        return Err(Refused::Invalid("not a resource-lists document".into()));
    }
    super::lists::check_resource_lists(&root).map_err(|e| Refused::Invalid(format!("{e:?}")))?;
    let mut entries = Vec::new();
    collect(&root, &mut entries);
    Ok(Some(entries))
}

fn collect(e: &minidom::Element, out: &mut Vec<String>) {
    for c in e.children() {
        if c.is("entry", super::lists::RL_NS) {
            if let Some(uri) = c.attr("uri")
                && !out.iter().any(|u| u == uri)
            {
                out.push(uri.to_owned());
            }
        } else if c.is("list", super::lists::RL_NS) {
            collect(c, out);
        }
    }
}

/// The rls-services document holding the ad-hoc service `uri` with `entries`, for
/// event package `package`.
pub fn document(uri: &str, entries: &[String], package: &str) -> Vec<u8> {
    let esc = |v: &str| {
        let mut out = String::with_capacity(v.len());
        crate::xml::escape_attr(&mut out, v);
        out
    };
    let mut doc = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<rls-services \
         xmlns=\"urn:ietf:params:xml:ns:rls-services\" xmlns:rl=\"{}\">\
         <service uri=\"{}\"><list>",
        super::lists::RL_NS,
        esc(uri)
    );
    for e in entries {
        doc.push_str(&format!("<rl:entry uri=\"{}\"/>", esc(e)));
    }
    doc.push_str(&format!(
        "</list><packages><package>{}</package></packages></service></rls-services>",
        esc(package)
    ));
    doc.into_bytes()
}

/// Whether `service` is an ad-hoc list's URI.
pub fn is_adhoc(service: &str) -> bool {
    service
        .strip_prefix("sip:")
        .is_some_and(|s| s.starts_with(PREFIX))
}

/// Where an ad-hoc list's document is kept: beside its owner's rls-services index,
/// under a name of its own.
pub fn doc_uri(owner: &str, service: &str) -> String {
    let name = service
        .strip_prefix("sip:")
        .and_then(|s| s.split('@').next())
        .unwrap_or(service);
    format!("/xcap-root/rls-services/users/{owner}/{name}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::Message;

    fn subscribe(headers: &str, body: &str) -> Request {
        let text = format!(
            "SUBSCRIBE sip:rls@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK1\r\n\
             From: <sip:joe@example.com>;tag=a\r\nTo: <sip:rls@example.com>\r\nCall-ID: c\r\n\
             CSeq: 1 SUBSCRIBE\r\n{headers}Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        match Message::parse(text.as_bytes()).unwrap() {
            Message::Request(r) => r,
            _ => unreachable!(),
        }
    }

    const LIST: &str = r#"<?xml version="1.0"?><resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists"><list><entry uri="sip:bob@example.com"/><list name="inner"><entry uri="sip:carol@example.com"/><entry uri="sip:bob@example.com"/></list></list></resource-lists>"#;

    #[test]
    fn a_carried_list_gives_its_entries_once_each() {
        let req = subscribe(
            "Content-Type: application/resource-lists+xml\r\nContent-Disposition: recipient-list\r\n",
            LIST,
        );
        assert_eq!(
            carried(&req),
            Ok(Some(vec![
                "sip:bob@example.com".into(),
                "sip:carol@example.com".into()
            ]))
        );
        assert_eq!(carried(&subscribe("", "")), Ok(None));
        let wrong = subscribe(
            "Content-Type: text/plain\r\nContent-Disposition: recipient-list\r\n",
            "sip:bob@example.com",
        );
        assert_eq!(carried(&wrong), Err(Refused::Type));
        let broken = subscribe("Content-Type: application/resource-lists+xml\r\n", "<x/>");
        assert!(matches!(carried(&broken), Err(Refused::Invalid(_))));
    }

    #[test]
    fn the_kept_document_is_a_service_of_those_entries() {
        let entries = vec![
            "sip:bob@example.com".to_string(),
            "sip:a&b@example.com".into(),
        ];
        let doc = document("sip:adhoc-x@example.com", &entries, "presence");
        let x = crate::store::Xcap {
            username: "joe".into(),
            domain: "example.com".into(),
            doc_type: crate::store::xcap::doc_type::RLS_SERVICES,
            doc_uri: doc_uri("sip:joe@example.com", "sip:adhoc-x@example.com"),
            doc,
            etag: "e".into(),
            source: 0,
            port: 0,
        };
        let lists = super::super::lists::Lists::build(&[x]);
        let service = lists.service("sip:adhoc-x@example.com").unwrap();
        assert_eq!(service.owner, "sip:joe@example.com");
        let members: Vec<&str> = service.members.iter().map(|m| m.uri.as_str()).collect();
        assert_eq!(members, ["sip:bob@example.com", "sip:a&b@example.com"]);
        assert!(is_adhoc("sip:adhoc-x@example.com"));
        assert!(!is_adhoc("sip:joe-buddies@example.com"));
    }
}
