//! TlsSession against an in-memory rustls server: handshakes in both versions, write
//! coalescing, resumption, every verification failure, client certificates, close_notify,
//! truncation, and hostile bytes fed in every state (property tests).

use std::sync::Arc;

use proptest::prelude::*;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, ServerConnection};

use super::config::{crypto_provider, ClientIdentity};
use super::*;

// ------------------------------------------------------------------------ test PKI

struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Self { issuer }
    }

    fn der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A leaf for `names`, valid from `from_days` to `to_days` relative to now.
    fn leaf(&self, names: &[&str], from_days: i64, to_days: i64) -> Leaf {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now + time::Duration::days(from_days);
        params.not_after = now + time::Duration::days(to_days);
        let key = KeyPair::generate().unwrap();
        let issuer: &Issuer<'_, KeyPair> = &self.issuer;
        let cert = params.signed_by(&key, issuer).unwrap();
        Leaf {
            chain: vec![cert.der().clone()],
            key_der: key.serialize_der(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

struct Leaf {
    chain: Vec<CertificateDer<'static>>,
    key_der: Vec<u8>,
    cert_pem: String,
    key_pem: String,
}

impl Leaf {
    fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }
}

fn server_config(
    leaf: &Leaf,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<ServerConfig> {
    Arc::new(
        ServerConfig::builder_with_provider(crypto_provider())
            .with_protocol_versions(versions)
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(leaf.chain.clone(), leaf.key())
            .unwrap(),
    )
}

fn server_requiring_client_cert(leaf: &Leaf, client_ca: &Ca) -> Arc<ServerConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(client_ca.der()).unwrap();
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), crypto_provider())
        .build()
        .unwrap();
    Arc::new(
        ServerConfig::builder_with_provider(crypto_provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(leaf.chain.clone(), leaf.key())
            .unwrap(),
    )
}

const TLS12: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS12];
const TLS13: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];
const BOTH: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

fn client_config(ca: &Ca) -> TlsConfig {
    TlsConfig::new(TlsOptions {
        trust: Trust::Certificates(vec![ca.der()]),
        ..TlsOptions::default()
    })
    .unwrap()
}

// ------------------------------------------------------------------------ the wire

/// One side's view of a loopback "socket pair".
struct Pair {
    client: TlsSession,
    server: ServerConnection,
    /// Plaintext the client has decrypted so far.
    client_plain: Vec<u8>,
    /// Plaintext the server has decrypted so far.
    server_plain: Vec<u8>,
}

impl Pair {
    fn new(config: &TlsConfig, name: &str, server: Arc<ServerConfig>) -> Self {
        Self {
            client: TlsSession::new(config, name).unwrap(),
            server: ServerConnection::new(server).unwrap(),
            client_plain: Vec::new(),
            server_plain: Vec::new(),
        }
    }

    /// Client -> server: everything the client has to send. Returns the bytes moved.
    fn client_flight(&mut self) -> Vec<u8> {
        let mut wire = Vec::new();
        self.client.take_tls(&mut wire);
        let mut rest = &wire[..];
        while !rest.is_empty() {
            self.server.read_tls(&mut rest).unwrap();
            if self.server.process_new_packets().is_err() {
                break;
            }
            let _ = std::io::Read::read_to_end(&mut self.server.reader(), &mut self.server_plain);
        }
        wire
    }

    /// Server -> client: everything the server has to send.
    fn server_flight(&mut self) -> Result<Vec<u8>, TlsError> {
        let mut wire = Vec::new();
        while self.server.wants_write() {
            self.server.write_tls(&mut wire).unwrap();
        }
        self.client.read_tls(&wire, &mut self.client_plain)?;
        Ok(wire)
    }

    /// Exchange flights until neither side has anything to say.
    fn pump(&mut self) -> Result<(), TlsError> {
        for _ in 0..10 {
            let sent = self.client_flight();
            let received = self.server_flight()?;
            if sent.is_empty() && received.is_empty() {
                return Ok(());
            }
        }
        panic!("the handshake did not settle in 10 round trips");
    }

    fn server_says(&mut self, data: &[u8]) -> Result<(), TlsError> {
        std::io::Write::write_all(&mut self.server.writer(), data).unwrap();
        self.server_flight().map(|_| ())
    }
}

/// (content type, payload length) of each record in `wire`.
fn records(wire: &[u8]) -> Vec<(u8, usize)> {
    let mut out = Vec::new();
    let mut rest = wire;
    while rest.len() >= 5 {
        let len = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
        out.push((rest[0], len));
        rest = &rest[5 + len..];
    }
    assert!(rest.is_empty(), "a partial record in {wire:?}");
    out
}

const APPLICATION_DATA: u8 = 23;
const ALERT: u8 = 21;

// ------------------------------------------------------------------------ tests

#[test]
fn handshake_and_data_both_ways_in_tls12_and_tls13() {
    let ca = Ca::new("test CA");
    let leaf = ca.leaf(&["mx.example.org"], -1, 30);
    for (versions, expected) in [(TLS12, TlsVersion::Tls12), (TLS13, TlsVersion::Tls13)] {
        let mut pair = Pair::new(
            &client_config(&ca),
            "mx.example.org",
            server_config(&leaf, versions),
        );
        assert!(pair.client.is_handshaking());
        pair.pump().unwrap();
        assert!(!pair.client.is_handshaking());
        assert_eq!(pair.client.protocol_version(), Some(expected));
        assert!(
            pair.client.cipher_suite().unwrap().contains("GCM")
                || pair.client.cipher_suite().unwrap().contains("CHACHA")
        );
        assert_eq!(pair.client.peer_certificates(), &leaf.chain[..]);
        assert!(!pair.client.resumed());

        pair.client.write_plain(b"EHLO client.example\r\n").unwrap();
        pair.client_flight();
        assert_eq!(pair.server_plain, b"EHLO client.example\r\n");
        pair.server_says(b"250-mx.example.org\r\n250 PIPELINING\r\n")
            .unwrap();
        assert_eq!(
            pair.client_plain,
            b"250-mx.example.org\r\n250 PIPELINING\r\n"
        );
    }
}

#[test]
fn an_ip_address_server_name_is_checked_against_the_ip_san() {
    let ca = Ca::new("test CA");
    let leaf = ca.leaf(&["127.0.0.1"], -1, 30);
    let mut pair = Pair::new(&client_config(&ca), "127.0.0.1", server_config(&leaf, BOTH));
    pair.pump().unwrap();
    // No SNI for an IP address (RFC 6066 section 3).
    assert_eq!(pair.server.server_name(), None);

    let mut wrong = Pair::new(&client_config(&ca), "127.0.0.2", server_config(&leaf, BOTH));
    assert_eq!(
        wrong.pump().unwrap_err().kind,
        TlsErrorKind::CertificateWrongName
    );
}

#[test]
fn many_writes_between_two_takes_make_one_record() {
    let ca = Ca::new("test CA");
    let leaf = ca.leaf(&["mx.example.org"], -1, 30);
    let mut pair = Pair::new(
        &client_config(&ca),
        "mx.example.org",
        server_config(&leaf, BOTH),
    );
    pair.pump().unwrap();
    let mut expected = Vec::new();
    for i in 0..20 {
        let line = format!("RCPT TO:<r{i}@example.org>\r\n");
        pair.client.write_plain(line.as_bytes()).unwrap();
        expected.extend_from_slice(line.as_bytes());
    }
    assert!(pair.client.wants_write());
    let wire = pair.client_flight();
    assert_eq!(records(&wire).len(), 1);
    assert_eq!(records(&wire)[0].0, APPLICATION_DATA);
    assert_eq!(pair.server_plain, expected);
    assert!(!pair.client.wants_write());

    // 40 KiB: three records of at most 16 KiB, not one per write.
    pair.server_plain.clear();
    let big = vec![b'x'; 40 * 1024];
    for chunk in big.chunks(1000) {
        pair.client.write_plain(chunk).unwrap();
    }
    let wire = pair.client_flight();
    assert_eq!(records(&wire).len(), 3);
    assert_eq!(pair.server_plain, big);
}

#[test]
fn plaintext_queued_during_the_handshake_goes_out_after_it() {
    let ca = Ca::new("test CA");
    let leaf = ca.leaf(&["mx.example.org"], -1, 30);
    let mut pair = Pair::new(
        &client_config(&ca),
        "mx.example.org",
        server_config(&leaf, TLS12),
    );
    pair.client.write_plain(b"EHLO early\r\n").unwrap();
    let hello = pair.client_flight();
    assert_eq!(records(&hello).len(), 1); // the ClientHello only
    assert_eq!(pair.client.pending_plaintext(), 12);
    pair.pump().unwrap();
    assert_eq!(pair.server_plain, b"EHLO early\r\n");
    assert_eq!(pair.client.pending_plaintext(), 0);
}

#[test]
fn a_second_session_from_the_same_config_resumes() {
    let ca = Ca::new("test CA");
    let leaf = ca.leaf(&["mx.example.org"], -1, 30);
    for versions in [TLS12, TLS13] {
        let server = server_config(&leaf, versions);
        let config = client_config(&ca);
        let mut first = Pair::new(&config, "mx.example.org", server.clone());
        first.pump().unwrap();
        assert!(!first.client.resumed());
        let mut second = Pair::new(&config, "mx.example.org", server.clone());
        second.pump().unwrap();
        assert!(second.client.resumed(), "{versions:?}");
        // Resumed sessions still know the chain the first handshake verified (for DANE).
        assert_eq!(second.client.peer_certificates(), &leaf.chain[..]);
        second.client.write_plain(b"NOOP\r\n").unwrap();
        second.client_flight();
        assert_eq!(second.server_plain, b"NOOP\r\n");

        // A separate config has its own cache; no resumption across engines.
        let mut other = Pair::new(&client_config(&ca), "mx.example.org", server.clone());
        other.pump().unwrap();
        assert!(!other.client.resumed());
    }
}

#[test]
fn resumption_can_be_turned_off() {
    let ca = Ca::new("test CA");
    let leaf = ca.leaf(&["mx.example.org"], -1, 30);
    let server = server_config(&leaf, BOTH);
    let config = TlsConfig::new(TlsOptions {
        trust: Trust::Certificates(vec![ca.der()]),
        resumption: false,
        ..TlsOptions::default()
    })
    .unwrap();
    for _ in 0..2 {
        let mut pair = Pair::new(&config, "mx.example.org", server.clone());
        pair.pump().unwrap();
        assert!(!pair.client.resumed());
    }
}

#[test]
fn certificate_failures_have_their_own_kinds() {
    let ca = Ca::new("test CA");
    let other_ca = Ca::new("someone else's CA");
    let cases = [
        (
            ca.leaf(&["other.example.org"], -1, 30),
            TlsErrorKind::CertificateWrongName,
        ),
        (
            ca.leaf(&["mx.example.org"], -30, -1),
            TlsErrorKind::CertificateExpired,
        ),
        (
            ca.leaf(&["mx.example.org"], 1, 30),
            TlsErrorKind::CertificateExpired,
        ),
        (
            other_ca.leaf(&["mx.example.org"], -1, 30),
            TlsErrorKind::CertificateUnknownCa,
        ),
    ];
    for (leaf, kind) in cases {
        for versions in [TLS12, TLS13] {
            let mut pair = Pair::new(
                &client_config(&ca),
                "mx.example.org",
                server_config(&leaf, versions),
            );
            let err = pair.pump().unwrap_err();
            assert_eq!(err.kind, kind, "{err}");
            // Sticky, and the alert the client owes the server is there to send.
            assert_eq!(pair.client.read_tls(b"", &mut Vec::new()).unwrap_err(), err);
            assert!(pair.client.write_plain(b"x").is_err());
            // (TLS 1.2 sends it in the clear; TLS 1.3 encrypts it as application data.)
            let mut alert = Vec::new();
            pair.client.take_tls(&mut alert);
            let last = records(&alert).last().map(|r| r.0);
            assert!(
                last == Some(ALERT) || last == Some(APPLICATION_DATA),
                "{alert:?}"
            );
        }
    }
}

#[test]
fn chain_only_forgives_the_name_and_nothing_else() {
    let ca = Ca::new("test CA");
    let config = TlsConfig::new(TlsOptions {
        trust: Trust::Certificates(vec![ca.der()]),
        verify: Verify::ChainOnly,
        ..TlsOptions::default()
    })
    .unwrap();
    let wrong_name = ca.leaf(&["other.example.org"], -1, 30);
    Pair::new(&config, "mx.example.org", server_config(&wrong_name, BOTH))
        .pump()
        .unwrap();
    let expired = ca.leaf(&["other.example.org"], -30, -1);
    let err = Pair::new(&config, "mx.example.org", server_config(&expired, BOTH))
        .pump()
        .unwrap_err();
    assert_eq!(err.kind, TlsErrorKind::CertificateExpired);
    let stranger = Ca::new("x").leaf(&["mx.example.org"], -1, 30);
    let err = Pair::new(&config, "mx.example.org", server_config(&stranger, BOTH))
        .pump()
        .unwrap_err();
    assert_eq!(err.kind, TlsErrorKind::CertificateUnknownCa);
}

#[test]
fn verify_none_accepts_any_certificate_but_still_encrypts() {
    let config = TlsConfig::new(TlsOptions {
        verify: Verify::None,
        ..TlsOptions::default()
    })
    .unwrap();
    let leaf = Ca::new("nobody trusts me").leaf(&["elsewhere.example"], -30, -1);
    for versions in [TLS12, TLS13] {
        let mut pair = Pair::new(&config, "mx.example.org", server_config(&leaf, versions));
        pair.pump().unwrap();
        pair.server_says(b"220 ok\r\n").unwrap();
        assert_eq!(pair.client_plain, b"220 ok\r\n");
    }
}

#[test]
fn client_certificates_are_presented_when_configured() {
    let ca = Ca::new("server CA");
    let client_ca = Ca::new("client CA");
    let leaf = ca.leaf(&["mx.example.org"], -1, 30);
    let me = client_ca.leaf(&["client.example"], -1, 30);
    let server = server_requiring_client_cert(&leaf, &client_ca);

    let identity =
        client_identity_from_pem(me.cert_pem.as_bytes(), Some(me.key_pem.as_bytes())).unwrap();
    let with_cert = TlsConfig::new(TlsOptions {
        trust: Trust::Certificates(vec![ca.der()]),
        client_identity: Some(identity),
        ..TlsOptions::default()
    })
    .unwrap();
    let mut pair = Pair::new(&with_cert, "mx.example.org", server.clone());
    pair.pump().unwrap();
    assert_eq!(pair.server.peer_certificates().unwrap(), &me.chain[..]);

    // One PEM file holding both the chain and the key works too (as load_cert_chain).
    let combined = format!("{}{}", me.cert_pem, me.key_pem);
    let ClientIdentity { chain, .. } = client_identity_from_pem(combined.as_bytes(), None).unwrap();
    assert_eq!(chain, me.chain);

    // Without one, the server refuses with an alert, which is reported as such.
    let mut pair = Pair::new(&client_config(&ca), "mx.example.org", server);
    let err = pair.pump().unwrap_err();
    assert_eq!(err.kind, TlsErrorKind::AlertReceived);
    assert_eq!(err.alert.as_deref(), Some("certificate_required"));
}

#[test]
fn a_version_range_the_server_does_not_speak_fails_the_handshake() {
    let ca = Ca::new("test CA");
    let leaf = ca.leaf(&["mx.example.org"], -1, 30);
    let only13 = TlsConfig::new(TlsOptions {
        trust: Trust::Certificates(vec![ca.der()]),
        min_version: TlsVersion::Tls13,
        ..TlsOptions::default()
    })
    .unwrap();
    let err = Pair::new(&only13, "mx.example.org", server_config(&leaf, TLS12))
        .pump()
        .unwrap_err();
    assert_eq!(err.kind, TlsErrorKind::AlertReceived, "{err}");
    assert_eq!(err.alert.as_deref(), Some("protocol_version"));
    assert!(TlsConfig::new(TlsOptions {
        min_version: TlsVersion::Tls13,
        max_version: TlsVersion::Tls12,
        ..TlsOptions::default()
    })
    .is_err());
}

#[test]
fn close_notify_both_ways() {
    let ca = Ca::new("test CA");
    let leaf = ca.leaf(&["mx.example.org"], -1, 30);
    let mut pair = Pair::new(
        &client_config(&ca),
        "mx.example.org",
        server_config(&leaf, BOTH),
    );
    pair.pump().unwrap();
    pair.client.write_plain(b"QUIT\r\n").unwrap();
    pair.client.close();
    assert!(pair.client.write_plain(b"more").is_err());
    let wire = pair.client_flight();
    assert_eq!(pair.server_plain, b"QUIT\r\n");
    assert_eq!(
        records(&wire).iter().map(|r| r.0).collect::<Vec<_>>(),
        [23, 23]
    );

    // Anything after the close_notify is ignored (RFC 8446 6.1).
    let mut wire = Vec::new();
    std::io::Write::write_all(&mut pair.server.writer(), b"221 bye\r\n").unwrap();
    pair.server.send_close_notify();
    while pair.server.wants_write() {
        pair.server.write_tls(&mut wire).unwrap();
    }
    wire.extend_from_slice(b"\x17\x03\x03\x00\x05junk!");
    pair.client.read_tls(&wire, &mut pair.client_plain).unwrap();
    assert_eq!(pair.client_plain, b"221 bye\r\n");
    assert!(pair.client.peer_closed());
    assert_eq!(pair.client.eof(), Ok(true));
}

#[test]
fn end_of_file_is_judged_by_where_it_falls() {
    let ca = Ca::new("test CA");
    let leaf = ca.leaf(&["mx.example.org"], -1, 30);
    // During the handshake.
    let mut pair = Pair::new(
        &client_config(&ca),
        "mx.example.org",
        server_config(&leaf, BOTH),
    );
    pair.client_flight();
    assert_eq!(
        pair.client.eof().unwrap_err().kind,
        TlsErrorKind::ClosedDuringHandshake
    );

    // After it, on a record boundary: a plain close (SMTP servers do this after QUIT).
    let mut pair = Pair::new(
        &client_config(&ca),
        "mx.example.org",
        server_config(&leaf, BOTH),
    );
    pair.pump().unwrap();
    assert_eq!(pair.client.eof(), Ok(false));

    // In the middle of a record.
    let mut pair = Pair::new(
        &client_config(&ca),
        "mx.example.org",
        server_config(&leaf, BOTH),
    );
    pair.pump().unwrap();
    std::io::Write::write_all(&mut pair.server.writer(), b"250 ok\r\n").unwrap();
    let mut wire = Vec::new();
    pair.server.write_tls(&mut wire).unwrap();
    pair.client
        .read_tls(&wire[..wire.len() - 3], &mut pair.client_plain)
        .unwrap();
    assert!(pair.client_plain.is_empty());
    assert_eq!(pair.client.eof().unwrap_err().kind, TlsErrorKind::Truncated);
}

#[test]
fn garbage_or_cleartext_after_the_handshake_is_peer_misbehaviour() {
    let ca = Ca::new("test CA");
    let leaf = ca.leaf(&["mx.example.org"], -1, 30);
    let hostile: [&[u8]; 4] = [
        b"220 plaintext after STARTTLS\r\n",
        // A cleartext TLS 1.2 HelloRequest record (renegotiation attempt by a middlebox).
        b"\x16\x03\x03\x00\x04\x00\x00\x00\x00",
        // An application-data record that does not decrypt.
        b"\x17\x03\x03\x00\x20aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        // A record longer than TLS allows (2^14 + 2048 + 5 header).
        b"\x17\x03\x03\x48\x01",
    ];
    for versions in [TLS12, TLS13] {
        for bytes in hostile {
            let mut pair = Pair::new(
                &client_config(&ca),
                "mx.example.org",
                server_config(&leaf, versions),
            );
            pair.pump().unwrap();
            let err = pair
                .client
                .read_tls(bytes, &mut pair.client_plain)
                .unwrap_err();
            assert_eq!(err.kind, TlsErrorKind::PeerMisbehaved, "{bytes:?}: {err}");
            assert!(pair.client_plain.is_empty());
        }
    }
}

#[test]
fn bad_configuration_is_a_config_error() {
    assert_eq!(
        TlsSession::new(&TlsConfig::new(TlsOptions::default()).unwrap(), "bad name!")
            .unwrap_err()
            .kind,
        TlsErrorKind::Config
    );
    assert!(certificates_from_pem(b"not pem").is_err());
    assert!(certificates_from_der(b"\x30\x82\x05").is_err());
    assert!(client_identity_from_pem(b"", None).is_err());
    let ca = Ca::new("x");
    let der = certificates_from_pem(format!("{}{}", ca.pem(), ca.pem()).as_bytes()).unwrap();
    assert_eq!(der.len(), 2);
    let joined: Vec<u8> = der.iter().flat_map(|c| c.to_vec()).collect();
    assert_eq!(certificates_from_der(&joined).unwrap(), der);
}

#[test]
fn idna_server_names_are_sent_in_a_label_form() {
    let name = session::server_name("bücher.example").unwrap();
    assert_eq!(name.to_str(), "xn--bcher-kva.example");
    assert!(session::server_name("[::1]").is_ok());
}

#[test]
fn the_system_trust_store_loads() {
    // The default config reads the system store (Debian: ca-certificates). A config
    // error here names the cause; either way no panic.
    match TlsConfig::new(TlsOptions::default()) {
        Ok(config) => assert_eq!(config.verify(), Verify::Full),
        Err(e) => assert_eq!(e.kind, TlsErrorKind::Config),
    }
}

// ------------------------------------------------------------------------ fuzzing

/// A pair stopped at `stage`: 0 fresh (ClientHello sent), 1 after the server's first
/// flight was half delivered, 2 after the handshake (TLS 1.2), 3 after it (TLS 1.3).
fn pair_at(stage: u8, fixture: &(Ca, Leaf)) -> Pair {
    let (ca, leaf) = fixture;
    let versions = if stage == 3 { TLS13 } else { TLS12 };
    let mut pair = Pair::new(
        &client_config(ca),
        "mx.example.org",
        server_config(leaf, versions),
    );
    match stage {
        0 => {
            pair.client_flight();
        }
        1 => {
            pair.client_flight();
            let mut wire = Vec::new();
            while pair.server.wants_write() {
                pair.server.write_tls(&mut wire).unwrap();
            }
            pair.client
                .read_tls(&wire[..wire.len() / 2], &mut pair.client_plain)
                .unwrap();
        }
        _ => pair.pump().unwrap(),
    }
    pair
}

fn fixture() -> &'static (Ca, Leaf) {
    static FIXTURE: std::sync::OnceLock<(Ca, Leaf)> = std::sync::OnceLock::new();
    FIXTURE.get_or_init(|| {
        let ca = Ca::new("fuzz CA");
        let leaf = ca.leaf(&["mx.example.org"], -1, 30);
        (ca, leaf)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Arbitrary bytes, in arbitrary chunks, in every state: an Ok or a typed error, and
    /// every later call agrees (sticky), never a panic.
    #[test]
    fn arbitrary_bytes_never_panic(
        stage in 0u8..4,
        bytes in proptest::collection::vec(any::<u8>(), 0..3000),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
    ) {
        let mut pair = pair_at(stage, fixture());
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
        points.sort_unstable();
        let mut start = 0;
        let mut failed = None;
        for end in points.into_iter().chain([bytes.len()]) {
            match pair.client.read_tls(&bytes[start..end], &mut pair.client_plain) {
                Ok(()) => prop_assert!(failed.is_none()),
                Err(e) => {
                    if let Some(first) = &failed { prop_assert_eq!(&e, first); }
                    failed = Some(e);
                }
            }
            start = end;
        }
        let mut out = Vec::new();
        pair.client.take_tls(&mut out);
        let _ = pair.client.eof();
    }

    /// A genuine server stream with one byte changed: decryption or parsing fails with a
    /// typed error (or the change was harmless), never a panic.
    #[test]
    fn a_flipped_byte_in_a_real_stream_never_panics(
        tls13 in any::<bool>(),
        position in any::<prop::sample::Index>(),
        xor in 1u8..=255,
    ) {
        let (ca, leaf) = fixture();
        let mut pair = Pair::new(&client_config(ca), "mx.example.org", server_config(leaf, if tls13 { TLS13 } else { TLS12 }));
        pair.client_flight();
        let mut wire = Vec::new();
        while pair.server.wants_write() {
            pair.server.write_tls(&mut wire).unwrap();
        }
        let i = position.index(wire.len());
        wire[i] ^= xor;
        let _ = pair.client.read_tls(&wire, &mut pair.client_plain);
        let mut out = Vec::new();
        pair.client.take_tls(&mut out);
        let _ = pair.client.eof();
    }
}

#[test]
fn good_records_before_a_bad_one_still_deliver_their_plaintext() {
    let (ca, leaf) = fixture();
    for versions in [TLS12, TLS13] {
        let mut pair = Pair::new(
            &client_config(ca),
            "mx.example.org",
            server_config(leaf, versions),
        );
        pair.pump().unwrap();
        std::io::Write::write_all(&mut pair.server.writer(), b"250 ok\r\n").unwrap();
        let mut wire = Vec::new();
        while pair.server.wants_write() {
            pair.server.write_tls(&mut wire).unwrap();
        }
        wire.extend_from_slice(b"garbage!");
        let err = pair
            .client
            .read_tls(&wire, &mut pair.client_plain)
            .unwrap_err();
        assert_eq!(err.kind, TlsErrorKind::PeerMisbehaved);
        assert_eq!(pair.client_plain, b"250 ok\r\n");
    }
}
