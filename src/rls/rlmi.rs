//! List NOTIFY bodies (RFC 4662 §5): a `multipart/related` body whose first part is
//! the RLMI document (`application/rlmi+xml`) naming each resource and the state of
//! its instance, followed by one part per resource whose state it carries, each
//! referenced from its instance by Content-ID.
//!
//! The RLMI `version` counts the subscription's NOTIFYs; a body is built once and the
//! version written into it as it leaves ([`stamp`]), like dialog-info's.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::xml::XML_DECLARATION;

pub const RLMI_TYPE: &str = "application/rlmi+xml";
const RLMI_NS: &str = "urn:ietf:params:xml:ns:rlmi";
/// Stands for the version until [`stamp`] writes it; the first thing of the body that
/// can hold it (the root's first attribute), so no resource's text comes before it.
const VERSION_MARK: &str = "version=\"@@\"";

/// An instance's state (RFC 4662 §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Instance {
    Active,
    Pending,
    /// With its reason (RFC 6665 §4.2.2 values).
    Terminated(&'static str),
}

/// One resource of a list NOTIFY.
#[derive(Debug, Clone)]
pub struct Resource<'a> {
    pub uri: &'a str,
    pub name: Option<&'a str>,
    pub instance: Instance,
    /// The resource's state document, for an active instance that has one.
    pub body: Option<&'a [u8]>,
}

fn escape_attr(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    crate::xml::escape_attr(&mut out, value);
    out
}

/// A stable instance id for `uri` within a list: the same across NOTIFYs and
/// restarts (a content hash, not a secret).
pub fn instance_id(uri: &str) -> String {
    format!(
        "{:012x}",
        crate::xcap::fnv1a(uri.as_bytes()) & 0xffff_ffff_ffff
    )
}

/// Content-IDs never repeat within a process's life; the host part keeps them apart
/// from other servers' (RFC 2392).
fn next_cid(instance: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!(
        "{instance}.{}@presenced.invalid",
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// The body of one list NOTIFY for `service`: every resource when `full_state`,
/// else only those given (RFC 4662 §5.2 partial). `part_type` is the resources'
/// content type; `boundary` the multipart boundary the Content-Type names.
pub fn body(
    service: &str,
    full_state: bool,
    resources: &[Resource<'_>],
    part_type: &str,
    boundary: &str,
) -> Vec<u8> {
    let mut rlmi = String::with_capacity(256 + resources.len() * 160);
    let _ = write!(
        rlmi,
        "{XML_DECLARATION}\n<list {VERSION_MARK} xmlns=\"{RLMI_NS}\" uri=\"{}\" fullState=\"{full_state}\">\n",
        escape_attr(service)
    );
    let mut parts: Vec<(String, &[u8])> = Vec::new();
    for r in resources {
        let id = instance_id(r.uri);
        let _ = writeln!(rlmi, "<resource uri=\"{}\">", escape_attr(r.uri));
        if let Some(name) = r.name {
            let _ = writeln!(rlmi, "<name>{}</name>", escape_attr(name));
        }
        match (r.instance, r.body) {
            (Instance::Active, Some(body)) => {
                let cid = next_cid(&id);
                let _ = writeln!(
                    rlmi,
                    "<instance id=\"{id}\" state=\"active\" cid=\"{}\"/>",
                    escape_attr(&cid)
                );
                parts.push((cid, body));
            }
            (Instance::Active, None) => {
                let _ = writeln!(rlmi, "<instance id=\"{id}\" state=\"active\"/>");
            }
            (Instance::Pending, _) => {
                let _ = writeln!(rlmi, "<instance id=\"{id}\" state=\"pending\"/>");
            }
            (Instance::Terminated(reason), _) => {
                let _ = writeln!(
                    rlmi,
                    "<instance id=\"{id}\" state=\"terminated\" reason=\"{reason}\"/>"
                );
            }
        }
        rlmi.push_str("</resource>\n");
    }
    rlmi.push_str("</list>\n");

    let root_cid = next_cid("rlmi");
    let mut out =
        Vec::with_capacity(rlmi.len() + parts.iter().map(|p| p.1.len() + 160).sum::<usize>());
    let mut part = |cid: &str, ty: &str, bytes: &[u8]| {
        out.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Transfer-Encoding: binary\r\nContent-ID: <{cid}>\r\nContent-Type: {ty}\r\n\r\n"
            )
            .as_bytes(),
        );
        out.extend_from_slice(bytes);
        out.extend_from_slice(b"\r\n");
    };
    part(
        &root_cid,
        &format!("{RLMI_TYPE};charset=\"UTF-8\""),
        rlmi.as_bytes(),
    );
    for (cid, bytes) in &parts {
        part(cid, part_type, bytes);
    }
    out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    out
}

/// `body` (as [`body`] wrote it with `boundary`) with every resource part after the
/// RLMI one replaced by what `restamp` makes of it; `None` when `restamp` changes none.
pub fn stamp_parts(
    body: &[u8],
    boundary: &str,
    mut restamp: impl FnMut(&[u8]) -> Option<Vec<u8>>,
) -> Option<Vec<u8>> {
    let delimiter = format!("--{boundary}\r\n");
    let closing = format!("--{boundary}--\r\n");
    let sections = split_on(body.strip_suffix(closing.as_bytes())?, delimiter.as_bytes());
    let mut out = Vec::with_capacity(body.len() + 16);
    let mut changed = false;
    for (i, section) in sections.iter().enumerate() {
        if i == 0 {
            // Before the first delimiter: nothing (the preamble is empty).
            out.extend_from_slice(section);
            continue;
        }
        out.extend_from_slice(delimiter.as_bytes());
        let head_end = section.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
        let (head, content) = section.split_at(head_end);
        let content = content.strip_suffix(b"\r\n")?;
        out.extend_from_slice(head);
        match (i > 1).then(|| restamp(content)).flatten() {
            Some(new) => {
                changed = true;
                out.extend_from_slice(&new);
            }
            None => out.extend_from_slice(content),
        }
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(closing.as_bytes());
    changed.then_some(out)
}

fn split_on<'a>(mut bytes: &'a [u8], delimiter: &[u8]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    while let Some(at) = bytes.windows(delimiter.len()).position(|w| w == delimiter) {
        out.push(&bytes[..at]);
        bytes = &bytes[at + delimiter.len()..];
    }
    out.push(bytes);
    out
}

/// `body` with its RLMI version written in.
pub fn stamp(body: &[u8], version: u32) -> Option<Vec<u8>> {
    let at = body
        .windows(VERSION_MARK.len())
        .position(|w| w == VERSION_MARK.as_bytes())?;
    let mut out = Vec::with_capacity(body.len() + 10);
    out.extend_from_slice(&body[..at]);
    out.extend_from_slice(format!("version=\"{version}\"").as_bytes());
    out.extend_from_slice(&body[at + VERSION_MARK.len()..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_state_body_references_each_part_by_content_id() {
        let pidf = b"<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"sip:b@x\"/>";
        let b = body(
            "sip:list@x",
            true,
            &[
                Resource {
                    uri: "sip:b@x",
                    name: Some("B & co"),
                    instance: Instance::Active,
                    body: Some(pidf),
                },
                Resource {
                    uri: "sip:c@x",
                    name: None,
                    instance: Instance::Pending,
                    body: None,
                },
                Resource {
                    uri: "sip:d@x",
                    name: None,
                    instance: Instance::Terminated("rejected"),
                    body: None,
                },
            ],
            "application/pidf+xml",
            "BOUND",
        );
        let b = String::from_utf8(stamp(&b, 7).unwrap()).unwrap();
        let parts: Vec<&str> = b.split("--BOUND").collect();
        // preamble, RLMI, one PIDF, closing "--".
        assert_eq!(parts.len(), 4, "{b}");
        assert!(parts[3].starts_with("--"));
        let rlmi = parts[1].split("\r\n\r\n").nth(1).unwrap();
        let root = crate::xml::parse(rlmi.trim_end().as_bytes()).unwrap();
        assert_eq!(root.attr("version"), Some("7"));
        assert_eq!(root.attr("fullState"), Some("true"));
        let cid = root
            .children()
            .next()
            .and_then(|r| r.children().find(|c| c.name() == "instance"))
            .and_then(|i| i.attr("cid"))
            .unwrap();
        assert!(parts[2].contains(&format!("Content-ID: <{cid}>")));
        assert!(parts[2].contains("Content-Type: application/pidf+xml"));
        assert!(b.contains("<name>B &amp; co</name>"));
        assert!(b.contains("state=\"pending\""));
        assert!(b.contains("state=\"terminated\" reason=\"rejected\""));
        assert_eq!(instance_id("sip:b@x"), instance_id("sip:b@x"));
        assert_ne!(instance_id("sip:b@x"), instance_id("sip:c@x"));
    }

    #[test]
    fn a_name_cannot_move_the_version() {
        let b = body(
            "sip:version=\"@@\"@x",
            false,
            &[Resource {
                uri: "sip:a@x",
                name: Some("version=\"@@\""),
                instance: Instance::Pending,
                body: None,
            }],
            "application/pidf+xml",
            "B",
        );
        let b = String::from_utf8(stamp(&b, 3).unwrap()).unwrap();
        assert!(b.contains("<list version=\"3\""), "{b}");
        assert!(b.contains("fullState=\"false\""));
    }

    #[test]
    fn each_resource_part_can_be_stamped_and_the_rest_stays_byte_for_byte() {
        let b = body(
            "sip:list@x",
            true,
            &[
                Resource {
                    uri: "sip:a@x",
                    name: None,
                    instance: Instance::Active,
                    body: Some(b"<doc v=\"0\"/>"),
                },
                Resource {
                    uri: "sip:b@x",
                    name: None,
                    instance: Instance::Active,
                    body: Some(b"<doc v=\"0\"/>"),
                },
            ],
            "application/x",
            "BB",
        );
        let stamped = stamp_parts(&b, "BB", |p| {
            Some(
                String::from_utf8_lossy(p)
                    .replace("v=\"0\"", "v=\"9\"")
                    .into_bytes(),
            )
        })
        .unwrap();
        let text = String::from_utf8(stamped.clone()).unwrap();
        assert_eq!(text.matches("<doc v=\"9\"/>").count(), 2, "{text}");
        assert_eq!(
            text.replace("v=\"9\"", "v=\"0\""),
            String::from_utf8(b).unwrap()
        );
        assert!(stamp_parts(&stamped, "BB", |_| None).is_none());
        assert!(stamp_parts(b"garbage", "BB", |_| None).is_none());
    }
}
