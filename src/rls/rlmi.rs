//! List NOTIFY bodies (RFC 4662 §5): a `multipart/related` body whose first part is
//! the RLMI document (`application/rlmi+xml`) naming each resource and the state of
//! its instance, followed by one part per resource whose state it carries, each
//! referenced from its instance by Content-ID.
//!
//! The RLMI `version` counts the subscription's NOTIFYs; a body is built once and the
//! version written into it as it leaves ([`stamp`]), like dialog-info's. A body too
//! big for one UDP datagram is cut into several for a subscriber over UDP ([`split`]).

use std::collections::HashMap;
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

/// (Content-ID, content) of one part as [`body`] writes it (the text after a
/// delimiter).
fn part_of(section: &[u8]) -> Option<(&str, &[u8])> {
    let head_end = section.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&section[..head_end]).ok()?;
    let cid = head
        .split("\r\n")
        .find_map(|l| l.strip_prefix("Content-ID: <"))?
        .strip_suffix('>')?;
    Some((cid, &section[head_end..]))
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

/// `body` (as [`body`] wrote it with `boundary`, version not yet stamped) cut into
/// NOTIFY bodies of at most `limit` bytes where it can be, for a subscriber that can
/// only take one datagram (`None` when it fits already or is not ours).
///
/// RFC 4662 says nothing of size, so the pieces keep its rules: the first piece of a
/// full-state body is full state and names every resource, but only the instances
/// that fit keep their `<instance>` (the others are unknown for a moment, §4.5: no
/// instance); each later piece is partial and brings the instances the earlier ones
/// left out, with their parts. A resource whose own part exceeds `limit` goes alone.
pub fn split(body: &[u8], boundary: &str, limit: usize) -> Option<Vec<Vec<u8>>> {
    if body.len() <= limit {
        return None;
    }
    let delimiter = format!("--{boundary}\r\n");
    let closing = format!("--{boundary}--\r\n");
    let sections = split_on(body.strip_suffix(closing.as_bytes())?, delimiter.as_bytes());
    let (root, parts) = match sections.as_slice() {
        [[], root, parts @ ..] => (*root, parts),
        _ => return None,
    };
    let (_, rlmi) = part_of(root)?;
    let rlmi = std::str::from_utf8(rlmi).ok()?;
    let rlmi = rlmi.strip_suffix("\r\n")?;
    let first = rlmi.find("<resource ")?;
    let head = &rlmi[..first];
    let resources = rlmi[first..].strip_suffix("</list>\n")?;
    let full = head.contains("fullState=\"true\"");
    let partial_head = head.replacen("fullState=\"true\"", "fullState=\"false\"", 1);
    let mut by_cid: HashMap<&str, &[u8]> = HashMap::new();
    for part in parts {
        by_cid.insert(part_of(part)?.0, part);
    }
    // Each resource block, its instance line and the part that line names.
    struct Block<'a> {
        text: &'a str,
        part: Option<&'a [u8]>,
    }
    let mut blocks = Vec::new();
    for text in resources.split_inclusive("</resource>\n") {
        let part = match text.find(" cid=\"") {
            Some(at) => {
                let rest = &text[at + 6..];
                let cid = &rest[..rest.find('"')?];
                Some(*by_cid.get(cid)?)
            }
            None => None,
        };
        blocks.push(Block { text, part });
    }
    let wrap = |head: &str, blocks: &[&str], parts: &[&[u8]]| -> Vec<u8> {
        let mut rlmi = String::from(head);
        for b in blocks {
            rlmi.push_str(b);
        }
        rlmi.push_str("</list>\n");
        let mut out = format!(
            "{delimiter}Content-Transfer-Encoding: binary\r\nContent-ID: <{}>\r\nContent-Type: {RLMI_TYPE};charset=\"UTF-8\"\r\n\r\n{rlmi}\r\n",
            next_cid("rlmi")
        )
        .into_bytes();
        for p in parts {
            out.extend_from_slice(delimiter.as_bytes());
            out.extend_from_slice(p);
        }
        out.extend_from_slice(closing.as_bytes());
        out
    };
    // A block with its instance left out: the resource and its name only.
    let bare = |text: &str| -> String {
        text.lines()
            .filter(|l| !l.starts_with("<instance "))
            .map(|l| format!("{l}\n"))
            .collect()
    };
    let overhead = 256 + head.len() + delimiter.len() * 2 + closing.len();
    let mut pieces: Vec<(Vec<&str>, Vec<&[u8]>)> = Vec::new();
    let (mut texts, mut kept, mut size) = (Vec::new(), Vec::new(), overhead);
    // While the first piece of a full state fills, room stays for the bare form of
    // every resource not in it yet.
    let mut reserved: usize = if full {
        blocks.iter().map(|b| bare(b.text).len()).sum()
    } else {
        0
    };
    for b in &blocks {
        let cost = b.text.len() + b.part.map_or(0, |p| p.len() + delimiter.len());
        let in_first = pieces.is_empty();
        let own = if full && in_first {
            bare(b.text).len()
        } else {
            0
        };
        let room = if in_first { reserved - own } else { 0 };
        if !texts.is_empty() && size + cost + room > limit {
            pieces.push((std::mem::take(&mut texts), std::mem::take(&mut kept)));
            size = overhead;
        }
        if pieces.is_empty() {
            reserved -= own;
        }
        texts.push(b.text);
        if let Some(p) = b.part {
            kept.push(p);
        }
        size += cost;
    }
    pieces.push((texts, kept));
    if pieces.len() < 2 {
        return None;
    }
    let mut out = Vec::with_capacity(pieces.len());
    for (n, (texts, parts)) in pieces.iter().enumerate() {
        if n == 0 && full {
            // Every resource: those of this piece whole, the rest without instance.
            let rest: Vec<String> = blocks[texts.len()..].iter().map(|b| bare(b.text)).collect();
            let mut all = texts.clone();
            all.extend(rest.iter().map(String::as_str));
            out.push(wrap(head, &all, parts));
        } else {
            out.push(wrap(&partial_head, texts, parts));
        }
    }
    Some(out)
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

    /// The RLMI root of each piece, and each piece's Content-IDs of parts.
    fn pieces_of(pieces: &[Vec<u8>], boundary: &str) -> Vec<(minidom::Element, Vec<String>)> {
        pieces
            .iter()
            .map(|p| {
                let text = String::from_utf8(p.clone()).unwrap();
                let sections: Vec<&str> = text.split(&format!("--{boundary}")).collect();
                assert!(sections.last().unwrap().starts_with("--"), "{text}");
                let rlmi = sections[1].split("\r\n\r\n").nth(1).unwrap();
                let root = crate::xml::parse(rlmi.trim_end().as_bytes()).unwrap();
                let cids = sections[2..sections.len() - 1]
                    .iter()
                    .map(|s| {
                        let at = s.find("Content-ID: <").unwrap() + 13;
                        s[at..at + s[at..].find('>').unwrap()].to_owned()
                    })
                    .collect();
                (root, cids)
            })
            .collect()
    }

    fn big_list(full: bool, n: usize, doc: &[u8]) -> Vec<u8> {
        let uris: Vec<String> = (0..n).map(|i| format!("sip:m{i}@x")).collect();
        let resources: Vec<Resource<'_>> = uris
            .iter()
            .enumerate()
            .map(|(i, u)| Resource {
                uri: u,
                name: Some("A name"),
                instance: if i % 10 == 3 {
                    Instance::Pending
                } else {
                    Instance::Active
                },
                body: (i % 10 != 3).then_some(doc),
            })
            .collect();
        body(
            "sip:list@x",
            full,
            &resources,
            "application/pidf+xml",
            "BND",
        )
    }

    #[test]
    fn a_full_state_too_big_for_a_datagram_splits_into_full_then_partial_pieces() {
        let doc = vec![b'x'; 900];
        let b = big_list(true, 200, &doc);
        assert!(b.len() > 180_000);
        assert!(split(&b, "BND", b.len()).is_none(), "fits: not split");
        let pieces = split(&b, "BND", 60_000).unwrap();
        assert!(pieces.len() >= 4, "{} pieces", pieces.len());
        let read = pieces_of(&pieces, "BND");
        let mut seen = std::collections::BTreeMap::new();
        for (n, ((root, cids), bytes)) in read.iter().zip(&pieces).enumerate() {
            assert!(bytes.len() <= 60_000, "piece {n}: {} bytes", bytes.len());
            assert!(
                stamp(bytes, 1).is_some(),
                "each piece takes its own version"
            );
            assert_eq!(
                root.attr("fullState"),
                Some(if n == 0 { "true" } else { "false" })
            );
            let resources: Vec<_> = root.children().filter(|c| c.name() == "resource").collect();
            if n == 0 {
                assert_eq!(resources.len(), 200, "the full state names every resource");
            }
            let mut referenced = Vec::new();
            for r in resources {
                let uri = r.attr("uri").unwrap().to_owned();
                let Some(inst) = r.children().find(|c| c.name() == "instance") else {
                    assert_eq!(n, 0, "only the first piece has resources without instance");
                    continue;
                };
                assert!(
                    seen.insert(uri.clone(), inst.attr("state").unwrap().to_owned())
                        .is_none(),
                    "{uri} twice"
                );
                if let Some(cid) = inst.attr("cid") {
                    referenced.push(cid.to_owned());
                }
            }
            assert_eq!(&referenced, cids, "piece {n}: parts and Content-IDs match");
        }
        assert_eq!(seen.len(), 200, "every instance exactly once");
        assert_eq!(seen.values().filter(|s| *s == "pending").count(), 20);
    }

    #[test]
    fn a_partial_body_splits_into_partial_pieces_and_an_oversized_part_goes_alone() {
        let doc = vec![b'y'; 2_000];
        let b = big_list(false, 60, &doc);
        let pieces = split(&b, "BND", 20_000).unwrap();
        let read = pieces_of(&pieces, "BND");
        let total: usize = read
            .iter()
            .map(|(root, _)| {
                assert_eq!(root.attr("fullState"), Some("false"));
                root.children().filter(|c| c.name() == "resource").count()
            })
            .sum();
        assert_eq!(total, 60);
        assert!(pieces.iter().all(|p| p.len() <= 20_000));
        // One part larger than the limit: alone in its piece, the others around it.
        let huge = vec![b'z'; 30_000];
        let small = vec![b'z'; 100];
        let resources = [
            Resource {
                uri: "sip:a@x",
                name: None,
                instance: Instance::Active,
                body: Some(&small),
            },
            Resource {
                uri: "sip:b@x",
                name: None,
                instance: Instance::Active,
                body: Some(&huge),
            },
            Resource {
                uri: "sip:c@x",
                name: None,
                instance: Instance::Active,
                body: Some(&small),
            },
        ];
        let b = body(
            "sip:list@x",
            false,
            &resources,
            "application/pidf+xml",
            "BND",
        );
        let pieces = split(&b, "BND", 20_000).unwrap();
        let counts: Vec<usize> = pieces_of(&pieces, "BND")
            .iter()
            .map(|(_, c)| c.len())
            .collect();
        assert_eq!(counts, vec![1, 1, 1]);
        assert!(split(b"not ours", "BND", 2).is_none());
    }

    proptest::proptest! {
        /// Whatever the resources and the limit: every instance leaves exactly once,
        /// each piece's parts are the ones its instances name, only the first piece is
        /// full state (naming every resource), and a piece over the limit holds one
        /// resource whose own part is too big.
        #[test]
        fn split_pieces_carry_every_instance_once(
            sizes in proptest::collection::vec((0usize..4, 0usize..3000), 1..80),
            full in proptest::bool::ANY,
            limit in 1000usize..40_000,
        ) {
            let uris: Vec<String> = (0..sizes.len()).map(|i| format!("sip:r{i}@x")).collect();
            let docs: Vec<Vec<u8>> = sizes.iter().map(|(_, n)| vec![b'd'; *n]).collect();
            let resources: Vec<Resource<'_>> = uris
                .iter()
                .zip(&sizes)
                .zip(&docs)
                .map(|((uri, (kind, _)), doc)| Resource {
                    uri,
                    name: (*kind == 0).then_some("N"),
                    instance: match kind {
                        1 => Instance::Pending,
                        2 => Instance::Terminated("rejected"),
                        _ => Instance::Active,
                    },
                    body: (*kind == 0 || *kind == 3).then_some(doc.as_slice()),
                })
                .collect();
            let b = body("sip:list@x", full, &resources, "application/x", "BND");
            let Some(pieces) = split(&b, "BND", limit) else {
                proptest::prop_assert!(b.len() <= limit || resources.len() == 1);
                return Ok(());
            };
            let mut seen = std::collections::HashSet::new();
            for (n, ((root, cids), bytes)) in pieces_of(&pieces, "BND").iter().zip(&pieces).enumerate() {
                let first_full = n == 0 && full;
                proptest::prop_assert_eq!(root.attr("fullState"), Some(if first_full { "true" } else { "false" }));
                let rs: Vec<_> = root.children().filter(|c| c.name() == "resource").collect();
                if first_full {
                    proptest::prop_assert_eq!(rs.len(), resources.len());
                }
                let mut referenced = Vec::new();
                let mut with_instance = 0;
                for r in &rs {
                    let Some(inst) = r.children().find(|c| c.name() == "instance") else {
                        proptest::prop_assert!(first_full);
                        continue;
                    };
                    with_instance += 1;
                    proptest::prop_assert!(seen.insert(r.attr("uri").unwrap().to_owned()));
                    referenced.extend(inst.attr("cid").map(str::to_owned));
                }
                proptest::prop_assert_eq!(&referenced, cids);
                proptest::prop_assert!(bytes.len() <= limit || with_instance == 1, "piece {} of {} bytes", n, bytes.len());
            }
            proptest::prop_assert_eq!(seen.len(), resources.len());
        }
    }
}
