//! Criterion benchmarks of bounce parsing in the pure core (no Python): a real 4.1 KB
//! Postfix DSN (`tests/bounces/postfix-unknown-user-full.eml`) with and without the VERP
//! check, the MIME reading alone (mail-parser), and one diagnostic classified.
//!
//! Run: `cargo bench --bench bounce --no-default-features`. The Python-level figure (with
//! the result objects made) is `benches/bench_bounce.py`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use _fastsmtp::bounce::{classify, mail, parse_bounce, ParseOptions};

const DSN: &[u8] = include_bytes!("../tests/bounces/postfix-unknown-user-full.eml");
const SECRET: &[u8] = b"fastsmtp-postfix-bounce-test";

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("bounce");
    g.throughput(Throughput::Elements(1));
    g.bench_function("parse_bounce postfix DSN", |b| {
        b.iter(|| parse_bounce(black_box(DSN), &ParseOptions::default()))
    });
    let with_secret = ParseOptions {
        verp_secret: Some(SECRET),
        envelope_recipient: None,
    };
    g.bench_function("parse_bounce postfix DSN + VERP", |b| {
        b.iter(|| parse_bounce(black_box(DSN), &with_secret))
    });
    g.bench_function("mail-parser alone", |b| {
        b.iter(|| mail::parse(black_box(DSN)).map(|m| m.parts.len()))
    });
    g.bench_function("classify one diagnostic", |b| {
        b.iter(|| {
            classify::classify(
                None,
                None,
                black_box(
                    "smtp; 550-5.1.1 The email account that you tried to reach does not exist.",
                ),
            )
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
