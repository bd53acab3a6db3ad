//! Arbitrary server bytes fed to `TlsSession::read_tls` in every state: fresh (ClientHello
//! sent), mid-handshake (half of the server's first flight fed), and established over TLS
//! 1.2 or 1.3. The first input byte picks the state, the second how the rest is cut into
//! reads. Any outcome but a panic is fine; errors must be sticky.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ServerConfig, ServerConnection};

use _fastsmtp::tls::{TlsConfig, TlsOptions, TlsSession, Trust};

struct Fixture {
    client: TlsConfig,
    tls12: Arc<ServerConfig>,
    tls13: Arc<ServerConfig>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["mx.example.org".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let chain: Vec<CertificateDer<'static>> = vec![cert.der().clone()];
        let server = |v: &'static rustls::SupportedProtocolVersion| {
            Arc::new(
                ServerConfig::builder_with_provider(Arc::new(
                    rustls::crypto::ring::default_provider(),
                ))
                .with_protocol_versions(&[v])
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(
                    chain.clone(),
                    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
                )
                .unwrap(),
            )
        };
        Fixture {
            client: TlsConfig::new(TlsOptions {
                trust: Trust::Certificates(chain.clone()),
                resumption: false,
                ..TlsOptions::default()
            })
            .unwrap(),
            tls12: server(&rustls::version::TLS12),
            tls13: server(&rustls::version::TLS13),
        }
    })
}

fn server_flight(server: &mut ServerConnection, from_client: &[u8]) -> Vec<u8> {
    let mut rest = from_client;
    while !rest.is_empty() {
        server.read_tls(&mut rest).unwrap();
        server.process_new_packets().unwrap();
    }
    let mut wire = Vec::new();
    while server.wants_write() {
        server.write_tls(&mut wire).unwrap();
    }
    wire
}

fn session_at(stage: u8) -> TlsSession {
    let f = fixture();
    let server_config = if stage % 2 == 0 { &f.tls12 } else { &f.tls13 };
    let mut client = TlsSession::new(&f.client, "mx.example.org").unwrap();
    let mut server = ServerConnection::new(server_config.clone()).unwrap();
    let mut hello = Vec::new();
    client.take_tls(&mut hello);
    match stage % 6 {
        0 | 1 => {}
        2 | 3 => {
            let flight = server_flight(&mut server, &hello);
            client.read_tls(&flight[..flight.len() / 2], &mut Vec::new()).unwrap();
        }
        _ => {
            let mut out = hello;
            while client.is_handshaking() {
                let flight = server_flight(&mut server, &out);
                client.read_tls(&flight, &mut Vec::new()).unwrap();
                out.clear();
                client.take_tls(&mut out);
            }
        }
    }
    client
}

fuzz_target!(|data: &[u8]| {
    let [stage, cut, rest @ ..] = data else {
        return;
    };
    let mut client = session_at(*stage);
    let step = usize::from(*cut).max(1);
    let mut plain = Vec::new();
    let mut first_error = None;
    for chunk in rest.chunks(step) {
        match client.read_tls(chunk, &mut plain) {
            Ok(()) => assert!(first_error.is_none(), "an error must be sticky"),
            Err(e) => {
                if let Some(first) = &first_error {
                    assert_eq!(&e, first);
                }
                first_error = Some(e);
            }
        }
    }
    let mut out = Vec::new();
    client.take_tls(&mut out);
    let _ = client.eof();
});
