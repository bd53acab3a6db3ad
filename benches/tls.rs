//! Criterion benchmark of the TLS session without Python: the client's CPU per 1.2 KB
//! message sealed (`write_plain` + `take_tls`) and per one-line reply opened (`read_tls`),
//! on an established TLS 1.3 session with an in-memory rustls server. Only the client's
//! calls are timed (the server's work happens between the timed blocks).
//!
//! Run: `cargo bench --bench tls --no-default-features`.

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rcgen::{CertificateParams, KeyPair};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ServerConfig, ServerConnection};

use _fastsmtp::tls::{TlsConfig, TlsOptions, TlsSession, Trust};

const REPLY: &[u8] = b"250 2.0.0 Ok: queued as 4Xk2Lq0nJjz9vRm\r\n";

struct Pair {
    client: TlsSession,
    server: ServerConnection,
}

fn server_to_client(server: &mut ServerConnection) -> Vec<u8> {
    let mut wire = Vec::new();
    while server.wants_write() {
        server.write_tls(&mut wire).unwrap();
    }
    wire
}

fn client_to_server(pair: &mut Pair, plain: &mut Vec<u8>) {
    let mut wire = Vec::new();
    pair.client.take_tls(&mut wire);
    let mut rest = &wire[..];
    while !rest.is_empty() {
        pair.server.read_tls(&mut rest).unwrap();
        pair.server.process_new_packets().unwrap();
        let _ = pair.server.reader().read_to_end(plain);
    }
}

fn established() -> Pair {
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["mx.example.org".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let server = Arc::new(
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .unwrap(),
    );
    let config = TlsConfig::new(TlsOptions {
        trust: Trust::Certificates(vec![cert.der().clone()]),
        ..TlsOptions::default()
    })
    .unwrap();
    let mut pair = Pair {
        client: TlsSession::new(&config, "mx.example.org").unwrap(),
        server: ServerConnection::new(server).unwrap(),
    };
    let mut sink = Vec::new();
    for _ in 0..4 {
        client_to_server(&mut pair, &mut sink);
        let wire = server_to_client(&mut pair.server);
        pair.client.read_tls(&wire, &mut sink).unwrap();
    }
    assert!(!pair.client.is_handshaking());
    pair
}

fn bench(c: &mut Criterion) {
    let message = {
        let mut m = vec![b'X'; 1198];
        m.extend_from_slice(b"\r\n");
        m
    };
    let mut group = c.benchmark_group("tls");
    group.throughput(Throughput::Elements(1));
    group.bench_function("client CPU per 1.2 KB message + reply", |b| {
        let mut pair = established();
        b.iter_custom(|iters| {
            // In blocks, like benches/bench_tls.py: seal `iters` messages (one write each),
            // let the server read them and seal one reply record each, then open the replies
            // (one read each). Only the two client blocks are timed.
            let mut wires = Vec::with_capacity(iters as usize);
            let t = Instant::now();
            for _ in 0..iters {
                let mut wire = Vec::new();
                pair.client.write_plain(&message).unwrap();
                pair.client.take_tls(&mut wire);
                wires.push(wire);
            }
            let mut timed = t.elapsed();
            let mut received = 0;
            let mut replies = Vec::with_capacity(iters as usize);
            for wire in &wires {
                let mut rest = &wire[..];
                let mut plain = Vec::new();
                while !rest.is_empty() {
                    pair.server.read_tls(&mut rest).unwrap();
                    pair.server.process_new_packets().unwrap();
                    let _ = pair.server.reader().read_to_end(&mut plain);
                }
                received += plain.len();
                pair.server.writer().write_all(REPLY).unwrap();
                replies.push(server_to_client(&mut pair.server));
            }
            assert_eq!(received as u64, iters * message.len() as u64);
            let mut plain = Vec::with_capacity(REPLY.len());
            let t = Instant::now();
            for reply in &replies {
                plain.clear();
                pair.client.read_tls(reply, &mut plain).unwrap();
            }
            timed += t.elapsed();
            assert_eq!(plain, REPLY);
            timed
        });
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
