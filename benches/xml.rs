//! Cost of the shared XML reader and writer (`presenced::xml`) as attributes and
//! namespace declarations grow: an XCAP document of a few MB can be nothing but those,
//! so both must cost time linear (or n log n) in their number, never quadratic.
//!
//! Two document shapes, each at 1k, 10k and 100k:
//! - `attributes`: one element with N attributes, every second one prefixed (so prefix
//!   resolution is measured too);
//! - `declarations`: a root with N prefix declarations and one child per prefix, in
//!   that prefix's namespace (so every declaration is also looked up).
//!
//! `parse` reads the bytes into a tree; `write` writes a parsed tree back. `typical`
//! does the same with a PIDF body of the usual size, which must not pay for the above.
//! `cargo bench --bench xml -- --warm-up-time 1 --measurement-time 3`

use std::fmt::Write;
use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use presenced::xml;

const COUNTS: [usize; 3] = [1_000, 10_000, 100_000];

/// What a softphone publishes (the body of `benches/parse.rs`'s PUBLISH).
const PIDF: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf"
    xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model"
    xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid"
    entity="sip:alice@example.com">
  <tuple id="t8a2b3c4">
    <status><basic>open</basic></status>
    <contact priority="0.8">sip:alice@192.0.2.10:5060;transport=tcp</contact>
    <note xml:lang="en">Available for calls</note>
    <timestamp>2024-05-01T10:22:31Z</timestamp>
  </tuple>
  <dm:person id="p1">
    <rpid:activities><rpid:on-the-phone/></rpid:activities>
    <rpid:mood><rpid:happy/></rpid:mood>
    <dm:note>In a meeting until noon</dm:note>
  </dm:person>
</presence>
"#;

fn attributes(n: usize) -> String {
    let mut doc = String::from(
        r#"<?xml version="1.0" encoding="UTF-8"?><r xmlns="urn:example:r" xmlns:p="urn:example:p""#,
    );
    for i in 0..n {
        let prefix = if i % 2 == 1 { "p:" } else { "" };
        let _ = write!(doc, r#" {prefix}a{i}="v{i}""#);
    }
    doc.push_str("/>");
    doc
}

fn declarations(n: usize) -> String {
    let mut doc = String::from(r#"<?xml version="1.0" encoding="UTF-8"?><r xmlns="urn:example:r""#);
    for i in 0..n {
        let _ = write!(doc, r#" xmlns:p{i}="urn:example:{i}""#);
    }
    doc.push('>');
    for i in 0..n {
        let _ = write!(doc, "<p{i}:e/>");
    }
    doc.push_str("</r>");
    doc
}

fn bench_shape(c: &mut Criterion, name: &str, make: fn(usize) -> String) {
    let mut group = c.benchmark_group(name);
    group.sample_size(10);
    for n in COUNTS {
        let doc = make(n);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("parse", n), doc.as_bytes(), |b, doc| {
            b.iter(|| xml::parse(black_box(doc)))
        });
        // Parsed here, not above: a filtered-out size must cost nothing (the code
        // before the fix took minutes to parse the largest documents).
        group.bench_with_input(BenchmarkId::new("write", n), doc.as_bytes(), |b, doc| {
            let tree = xml::parse(doc).expect("benchmark document parses");
            b.iter(|| xml::write_document(black_box(&tree)))
        });
    }
    group.finish();
}

fn bench_typical(c: &mut Criterion) {
    let mut group = c.benchmark_group("typical");
    group.bench_function("parse", |b| {
        b.iter(|| xml::parse(black_box(PIDF.as_bytes())))
    });
    let tree = xml::parse(PIDF.as_bytes()).expect("the PIDF body parses");
    group.bench_function("write", |b| {
        b.iter(|| xml::write_document(black_box(&tree)))
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    bench_typical(c);
    bench_shape(c, "attributes", attributes);
    bench_shape(c, "declarations", declarations);
}

criterion_group!(xml_benches, benches);
criterion_main!(xml_benches);
