//! Criterion benchmarks of the MIME core (no Python): rendering a chunk of 1000
//! personalized messages from one compiled template, with and without a 100 KB attachment
//! shared by the batch, and building one message literally.
//!
//! Run: `cargo bench --bench mime --no-default-features` (the pure core, without PyO3).
//! The templates are `benches/mime_data/order.*` (str.format syntax, shared with
//! `benches/bench_mime.py`; `{x}` becomes `{{ x }}` here).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use minijinja::Value;

use _fastsmtp::mime::shared::SharedBytes;
use _fastsmtp::mime::template::Data;
use _fastsmtp::mime::{build_message, AttachmentSpec, DateSpec, MessageSpec, Recipient, Template};

const TEXT: &str = include_str!("mime_data/order.txt");
const HTML: &str = include_str!("mime_data/order.html");
const SUBJECT: &str = include_str!("mime_data/order.subject");
const CHUNK: usize = 1000;

fn jinja(s: &str) -> String {
    s.replace('{', "{{ ").replace('}', " }}")
}

fn pdf() -> SharedBytes {
    let mut rng = fastrand::Rng::with_seed(1);
    let mut v = b"%PDF-1.4\n".to_vec();
    v.extend((0..100 * 1024 - 9).map(|_| rng.u8(..)));
    v.into()
}

fn spec(with_attachment: bool) -> MessageSpec {
    MessageSpec {
        sender: "Example Shop <orders@shop.example.com>".into(),
        subject: jinja(SUBJECT),
        text: Some(jinja(TEXT)),
        html: Some(jinja(HTML)),
        attachments: if with_attachment {
            vec![AttachmentSpec {
                filename: "invoice.pdf".into(),
                content: pdf(),
                content_type: "application/pdf".into(),
                ..AttachmentSpec::default()
            }]
        } else {
            vec![]
        },
        headers: vec![("List-Unsubscribe".into(), "<{{ unsubscribe }}>".into())],
        date: Some(DateSpec::Text("Thu, 01 Jan 2026 00:00:00 +0000".into())),
        ..MessageSpec::default()
    }
}

fn batch_data() -> Data {
    [
        ("company", "Example Shop"),
        ("support", "support@shop.example.com"),
        ("unsubscribe", "https://shop.example.com/unsubscribe"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), Value::from(v)))
    .collect()
}

fn recipients(n: usize) -> Vec<Recipient> {
    (0..n)
        .map(|i| {
            let data = [
                ("first_name", format!("Anna{i}")),
                (
                    "last_name",
                    if i % 3 == 0 {
                        "Müller".into()
                    } else {
                        "Smith".into()
                    },
                ),
                ("order_id", format!("A-{}", 100_000 + i)),
                ("amount", format!("{}.99", 10 + i % 90)),
                ("street", format!("{i} Long Street")),
                ("city", "Berlin".into()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), Value::from(v)))
            .collect();
            Recipient {
                address: format!("customer{i}@example.org"),
                name: Some(format!("Anna{i} Smith")),
                data,
            }
        })
        .collect()
}

fn bench_render(c: &mut Criterion) {
    let mut group = c.benchmark_group("template_render_1000");
    group.throughput(Throughput::Elements(CHUNK as u64));
    group.sample_size(20);
    for (name, with_attachment) in [("alternative", false), ("attachment", true)] {
        let template = Template::new(&spec(with_attachment), batch_data()).unwrap();
        let sample = template.render(recipients(1).remove(0)).unwrap();
        assert!(sample.len() > 3000);
        // The messages are dropped inside the measurement, as a sender drops them after
        // the transaction: otherwise criterion keeps every output of a sample alive and
        // the benchmark measures page faults of ever-fresh memory.
        group.bench_function(name, |b| {
            b.iter_batched(
                || recipients(CHUNK),
                |r| {
                    let out = template.render_batch(r);
                    black_box(out.len())
                },
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

fn bench_compile(c: &mut Criterion) {
    let s = spec(true);
    c.bench_function("template_compile_with_100k_attachment", |b| {
        b.iter(|| black_box(Template::new(&s, batch_data()).unwrap()))
    });
}

fn bench_build(c: &mut Criterion) {
    let mut s = spec(false);
    s.to = vec!["Anna Smith <anna@example.org>".into()];
    s.subject = "Your order A-100000".into();
    s.text = Some(TEXT.to_string());
    s.html = Some(HTML.to_string());
    s.headers.clear();
    c.bench_function("build_message_alternative", |b| {
        b.iter(|| black_box(build_message(&s).unwrap()))
    });
}

criterion_group!(benches, bench_render, bench_compile, bench_build);
criterion_main!(benches);
