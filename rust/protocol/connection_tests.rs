//! Table tests of [`ClientConnection`] both ways: user calls -> exact bytes on the wire, and
//! server bytes -> events. Every script runs twice: each server chunk fed whole, then one
//! byte at a time; both runs must give the same bytes and events.

use super::connection::{ClientConnection, Event, Transaction};
use super::error::Error;
use super::reply::{parse_all, Reply};
use super::state::State;
use super::Capabilities;

type Call = Box<dyn Fn(&mut ClientConnection)>;

enum Step {
    /// The server sends these bytes; these events must come out.
    Recv(&'static [u8], Vec<Event>),
    /// `data_to_send()` must return exactly this.
    Send(&'static [u8]),
    /// A user call (with its own assertions).
    Do(Call),
}
use Step::{Do, Recv, Send};

fn run(script: &[Step]) {
    for bytewise in [false, true] {
        let mut conn = ClientConnection::new("client.example", 65536).unwrap();
        for (n, step) in script.iter().enumerate() {
            match step {
                Recv(data, expected) => {
                    let events = feed(&mut conn, data, bytewise);
                    assert_eq!(&events, expected, "step {n}, bytewise={bytewise}");
                }
                Send(expected) => {
                    let out = conn.data_to_send();
                    assert_eq!(
                        String::from_utf8_lossy(&out),
                        String::from_utf8_lossy(expected),
                        "step {n}, bytewise={bytewise}"
                    );
                }
                Do(call) => call(&mut conn),
            }
        }
    }
}

fn r(line: &str) -> Reply {
    let mut replies = parse_all(line.as_bytes(), 65536).unwrap();
    assert_eq!(replies.len(), 1);
    replies.remove(0)
}

fn ready(greeting: &str, ehlo: &str) -> Event {
    Event::Ready {
        greeting: r(greeting),
        capabilities: Capabilities::from_ehlo(&r(ehlo)),
    }
}

fn result(id: u64, mail: &str, rcpts: &[Option<&str>], data: Option<&str>) -> Event {
    Event::TransactionResult {
        txn_id: id,
        mail_reply: r(mail),
        rcpt_replies: rcpts.iter().map(|x| x.map(r)).collect(),
        data_reply: data.map(r),
    }
}

fn aborted(id: u64, eod: bool, reason: &str, reply: Option<&str>) -> Event {
    Event::TransactionAborted {
        txn_id: id,
        end_of_data_sent: eod,
        reason: reason.into(),
        reply: reply.map(r),
    }
}

fn closed(reason: &str, reply: Option<&str>) -> Event {
    Event::Closed {
        reason: reason.into(),
        reply: reply.map(r),
        error: None,
    }
}

fn submit(id: u64, from: &'static str, to: &'static [&'static str], body: &'static [u8]) -> Step {
    Do(Box::new(move |c| {
        c.submit(id, Transaction::from_raw(from, to, body).unwrap())
            .unwrap()
    }))
}

fn call(f: impl Fn(&mut ClientConnection) + 'static) -> Step {
    Do(Box::new(f))
}

const GREETING: &str = "220 mx.example.org ESMTP\r\n";
const EHLO_CHUNKING: &str = "250-mx.example.org\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 CHUNKING\r\n";
const EHLO_PIPELINING: &str = "250-mx.example.org\r\n250-PIPELINING\r\n250 8BITMIME\r\n";
const EHLO_PLAIN: &str = "250 mx.example.org\r\n";
const EHLO_CHUNKING_ONLY: &str = "250-mx.example.org\r\n250 CHUNKING\r\n";
const EHLO_TLS: &str = "250-mx.example.org\r\n250-PIPELINING\r\n250-AUTH PLAIN LOGIN XOAUTH2 CRAM-MD5\r\n250 STARTTLS\r\n";

fn session(ehlo: &'static str) -> Vec<Step> {
    vec![
        Send(b""),
        Recv(GREETING.as_bytes(), vec![]),
        Send(b"EHLO client.example\r\n"),
        Recv(ehlo.as_bytes(), vec![ready(GREETING, ehlo)]),
    ]
}

/// `steps` after a session that got its greeting and this EHLO reply.
fn run_session(ehlo: &'static str, steps: Vec<Step>) {
    let mut script = session(ehlo);
    script.extend(steps);
    run(&script);
}

/// A connection past the greeting and this EHLO reply, its EHLO already taken out.
fn ready_connection(ehlo: &str, max_reply_bytes: usize) -> ClientConnection {
    let mut c = ClientConnection::new("client.example", max_reply_bytes).unwrap();
    c.receive_data(GREETING.as_bytes());
    c.receive_data(ehlo.as_bytes());
    c.data_to_send();
    c
}

/// Feed `data` whole, or one byte at a time; the events of all the calls.
fn feed(conn: &mut ClientConnection, data: &[u8], bytewise: bool) -> Vec<Event> {
    if !bytewise || data.is_empty() {
        return conn.receive_data(data);
    }
    data.iter()
        .flat_map(|b| conn.receive_data(std::slice::from_ref(b)))
        .collect()
}

#[test]
fn greeting_multiline_and_helo_fallback() {
    let greeting = "220-mx.example.org ESMTP\r\n220 no UCE\r\n";
    run(&[
        Recv(greeting.as_bytes(), vec![]),
        Send(b"EHLO client.example\r\n"),
        Recv(b"502 5.5.2 what?\r\n", vec![]),
        Send(b"HELO client.example\r\n"),
        call(|c| assert_eq!(c.state(), State::Helo)),
        Recv(
            b"250 mx.example.org\r\n",
            vec![Event::Ready {
                greeting: r(greeting),
                capabilities: Capabilities::helo(),
            }],
        ),
        call(|c| assert!(c.is_ready() && !c.capabilities().unwrap().esmtp)),
    ]);
}

#[test]
fn refusals_are_command_failed() {
    run(&[
        Recv(
            b"554 5.7.1 go away\r\n",
            vec![Event::CommandFailed {
                command: "greeting",
                reply: r("554 5.7.1 go away\r\n"),
            }],
        ),
        call(|c| {
            assert_eq!(c.state(), State::Failed);
            assert!(matches!(
                c.submit(1, Transaction::from_raw("a@b", &["c@d"], b"x").unwrap()),
                Err(Error::Local(_))
            ));
            c.quit().unwrap();
        }),
        Send(b"QUIT\r\n"),
        Recv(b"221 bye\r\n", vec![closed("quit", Some("221 bye\r\n"))]),
        call(|c| assert!(c.is_closed())),
    ]);
    run(&[
        Recv(GREETING.as_bytes(), vec![]),
        Recv(b"500 no\r\n", vec![]),
        Send(b"EHLO client.example\r\nHELO client.example\r\n"),
        Recv(
            b"501 no\r\n",
            vec![Event::CommandFailed {
                command: "helo",
                reply: r("501 no\r\n"),
            }],
        ),
        Recv(b"", vec![closed("eof", None)]),
    ]);
    run(&[
        Recv(GREETING.as_bytes(), vec![]),
        Recv(
            b"454 later\r\n",
            vec![Event::CommandFailed {
                command: "ehlo",
                reply: r("454 later\r\n"),
            }],
        ),
    ]);
}

#[test]
fn chunking_pipelines_everything() {
    run_session(EHLO_CHUNKING, vec![
            submit(1, "a@example.org", &["b@example.org", "c@example.org"], b"Hi\r\n.dot\r\n"),
            submit(2, "", &["d@example.org"], b"8bit \xc3\xa9\n"),
            call(|c| {
                assert_eq!(c.in_flight(), 2);
                assert_eq!(c.bytes_in_flight(), 10 + 9);
                c.quit().unwrap();
            }),
            Send(
                b"MAIL FROM:<a@example.org> SIZE=10\r\nRCPT TO:<b@example.org>\r\nRCPT TO:<c@example.org>\r\n\
                  BDAT 10 LAST\r\nHi\r\n.dot\r\n\
                  MAIL FROM:<> SIZE=9 BODY=8BITMIME\r\nRCPT TO:<d@example.org>\r\nBDAT 9 LAST\r\n8bit \xc3\xa9\r\n\
                  QUIT\r\n",
            ),
            Recv(
                b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n550 5.1.1 no such user\r\n250 2.0.0 queued as A\r\n250 2.1.0 Ok\r\n",
                vec![result(
                    1,
                    "250 2.1.0 Ok\r\n",
                    &[Some("250 2.1.5 Ok\r\n"), Some("550 5.1.1 no such user\r\n")],
                    Some("250 2.0.0 queued as A\r\n"),
                )],
            ),
            call(|c| assert_eq!((c.in_flight(), c.bytes_in_flight()), (1, 9))),
            Recv(
                b"250 2.1.5 Ok\r\n250 2.0.0 queued as B\r\n221 2.0.0 Bye\r\n",
                vec![
                    result(2, "250 2.1.0 Ok\r\n", &[Some("250 2.1.5 Ok\r\n")], Some("250 2.0.0 queued as B\r\n")),
                    closed("quit", Some("221 2.0.0 Bye\r\n")),
                ],
            ),
            Send(b""),
        ]);
}

#[test]
fn pipelining_body_and_next_group_in_one_write() {
    run_session(
        EHLO_PIPELINING,
        vec![
            submit(1, "a@x.org", &["b@x.org"], b".leading dot\nbare lf"),
            submit(2, "a@x.org", &["c@x.org", "d@x.org"], b"two\r\n"),
            call(|c| c.quit().unwrap()),
            Send(b"MAIL FROM:<a@x.org>\r\nRCPT TO:<b@x.org>\r\nDATA\r\n"),
            Recv(b"250 ok\r\n250 ok\r\n", vec![]),
            Send(b""),
            Recv(b"354 go\r\n", vec![]),
            Send(
                b"..leading dot\r\nbare lf\r\n.\r\n\
                  MAIL FROM:<a@x.org>\r\nRCPT TO:<c@x.org>\r\nRCPT TO:<d@x.org>\r\nDATA\r\n",
            ),
            Recv(
                b"250 queued\r\n250 ok\r\n250 ok\r\n451 4.3.0 try later\r\n354 go\r\n",
                vec![result(
                    1,
                    "250 ok\r\n",
                    &[Some("250 ok\r\n")],
                    Some("250 queued\r\n"),
                )],
            ),
            Send(b"two\r\n.\r\nQUIT\r\n"),
            Recv(
                b"250 queued\r\n221 bye\r\n",
                vec![
                    result(
                        2,
                        "250 ok\r\n",
                        &[Some("250 ok\r\n"), Some("451 4.3.0 try later\r\n")],
                        Some("250 queued\r\n"),
                    ),
                    closed("quit", Some("221 bye\r\n")),
                ],
            ),
        ],
    );
}

#[test]
fn pipelining_refused_data_sends_no_body_then_rset() {
    run_session(EHLO_PIPELINING, vec![
            submit(1, "a@x.org", &["x@nowhere.invalid"], b"secret body\r\n"),
            submit(2, "a@x.org", &["b@x.org"], b"body 2\r\n"),
            Send(b"MAIL FROM:<a@x.org>\r\nRCPT TO:<x@nowhere.invalid>\r\nDATA\r\n"),
            Recv(
                b"250 2.1.0 Ok\r\n554 5.7.1 Relay access denied\r\n554 5.5.1 Error: no valid recipients\r\n",
                vec![result(
                    1,
                    "250 2.1.0 Ok\r\n",
                    &[Some("554 5.7.1 Relay access denied\r\n")],
                    Some("554 5.5.1 Error: no valid recipients\r\n"),
                )],
            ),
            // Postfix keeps the transaction open after a refused DATA: RSET first.
            Send(b"RSET\r\nMAIL FROM:<a@x.org>\r\nRCPT TO:<b@x.org>\r\nDATA\r\n"),
            Recv(b"250 2.0.0 Ok\r\n250 ok\r\n250 ok\r\n354 go\r\n", vec![]),
            Send(b"body 2\r\n.\r\n"),
            Recv(b"250 queued\r\n", vec![result(2, "250 ok\r\n", &[Some("250 ok\r\n")], Some("250 queued\r\n"))]),
            // The RSET was consumed; no RSET before a later transaction.
            submit(3, "a@x.org", &["b@x.org"], b"3\r\n"),
            Send(b"MAIL FROM:<a@x.org>\r\nRCPT TO:<b@x.org>\r\nDATA\r\n"),
        ]);
}

#[test]
fn all_recipients_refused_but_354_ends_data_properly() {
    run_session(
        EHLO_PIPELINING,
        vec![
            submit(7, "a@x.org", &["b@x.org", "c@x.org"], b"never sent\r\n"),
            Send(b"MAIL FROM:<a@x.org>\r\nRCPT TO:<b@x.org>\r\nRCPT TO:<c@x.org>\r\nDATA\r\n"),
            Recv(b"250 ok\r\n550 no\r\n551 no\r\n354 go\r\n", vec![]),
            Send(b".\r\n"),
            Recv(
                b"554 no valid recipients\r\n",
                vec![result(
                    7,
                    "250 ok\r\n",
                    &[Some("550 no\r\n"), Some("551 no\r\n")],
                    Some("554 no valid recipients\r\n"),
                )],
            ),
            // The data phase ended: no RSET needed.
            submit(8, "a@x.org", &["b@x.org"], b"x\r\n"),
            Send(b"MAIL FROM:<a@x.org>\r\nRCPT TO:<b@x.org>\r\nDATA\r\n"),
        ],
    );
}

#[test]
fn lockstep_without_extensions() {
    run_session(
        EHLO_PLAIN,
        vec![
            submit(1, "a@x.org", &["b@x.org", "c@x.org"], b"hello\r\n"),
            submit(2, "a@x.org", &["bad@x.org"], b"2\r\n"),
            submit(3, "a@x.org", &["d@x.org"], b"3\r\n"),
            call(|c| c.quit().unwrap()),
            Send(b"MAIL FROM:<a@x.org>\r\n"),
            Recv(b"250 ok\r\n", vec![]),
            Send(b"RCPT TO:<b@x.org>\r\n"),
            Recv(b"250 ok\r\n", vec![]),
            Send(b"RCPT TO:<c@x.org>\r\n"),
            Recv(b"550 no\r\n", vec![]),
            Send(b"DATA\r\n"),
            Recv(b"354 go\r\n", vec![]),
            Send(b"hello\r\n.\r\n"),
            Recv(
                b"250 queued\r\n",
                vec![result(
                    1,
                    "250 ok\r\n",
                    &[Some("250 ok\r\n"), Some("550 no\r\n")],
                    Some("250 queued\r\n"),
                )],
            ),
            Send(b"MAIL FROM:<a@x.org>\r\n"),
            Recv(b"250 ok\r\n", vec![]),
            Send(b"RCPT TO:<bad@x.org>\r\n"),
            // Every recipient refused: no DATA at all, the transaction is over, RSET next.
            Recv(
                b"550 no\r\n",
                vec![result(2, "250 ok\r\n", &[Some("550 no\r\n")], None)],
            ),
            Send(b"RSET\r\n"),
            Recv(b"250 reset\r\n", vec![]),
            Send(b"MAIL FROM:<a@x.org>\r\n"),
            Recv(
                b"451 not now\r\n",
                vec![result(3, "451 not now\r\n", &[None], None)],
            ),
            // MAIL refused: no transaction open, so no RSET before QUIT either.
            Send(b"QUIT\r\n"),
            Recv(b"221 bye\r\n", vec![closed("quit", Some("221 bye\r\n"))]),
        ],
    );
}

#[test]
fn chunking_without_pipelining_is_lockstep() {
    run_session(
        EHLO_CHUNKING_ONLY,
        vec![
            submit(1, "a@x.org", &["b@x.org"], b".raw\r\n"),
            Send(b"MAIL FROM:<a@x.org>\r\n"),
            Recv(b"250 ok\r\n", vec![]),
            Send(b"RCPT TO:<b@x.org>\r\n"),
            Recv(b"250 ok\r\n", vec![]),
            Send(b"BDAT 6 LAST\r\n.raw\r\n"),
            Recv(
                b"250 queued\r\n",
                vec![result(
                    1,
                    "250 ok\r\n",
                    &[Some("250 ok\r\n")],
                    Some("250 queued\r\n"),
                )],
            ),
        ],
    );
}

#[test]
fn chunking_nested_mail_is_retried_after_rset() {
    run_session(EHLO_CHUNKING, vec![
            submit(1, "a@x.org", &["x@nowhere.invalid"], b"1\r\n"),
            submit(2, "b@x.org", &["y@x.org"], b"2\r\n"),
            Send(
                b"MAIL FROM:<a@x.org> SIZE=3\r\nRCPT TO:<x@nowhere.invalid>\r\nBDAT 3 LAST\r\n1\r\n\
                  MAIL FROM:<b@x.org> SIZE=3\r\nRCPT TO:<y@x.org>\r\nBDAT 3 LAST\r\n2\r\n",
            ),
            // A server that keeps the failed transaction open after the refused BDAT.
            Recv(
                b"250 ok\r\n554 relay denied\r\n554 no valid recipients\r\n503 nested MAIL command\r\n",
                vec![result(1, "250 ok\r\n", &[Some("554 relay denied\r\n")], Some("554 no valid recipients\r\n"))],
            ),
            Recv(b"250 ok\r\n", vec![]),
            Recv(b"554 something\r\n", vec![]),
            // Transaction 2 is retried after RSET, not reported.
            Send(b"RSET\r\nMAIL FROM:<b@x.org> SIZE=3\r\nRCPT TO:<y@x.org>\r\nBDAT 3 LAST\r\n2\r\n"),
            call(|c| assert_eq!(c.in_flight(), 1)),
            Recv(
                b"250 reset\r\n250 ok\r\n250 ok\r\n250 queued\r\n",
                vec![result(2, "250 ok\r\n", &[Some("250 ok\r\n")], Some("250 queued\r\n"))],
            ),
        ]);
    // Only once: a second 503 is reported.
    run_session(
        EHLO_CHUNKING,
        vec![
            submit(1, "a@x.org", &["b@x.org"], b"1\r\n"),
            Send(b"MAIL FROM:<a@x.org> SIZE=3\r\nRCPT TO:<b@x.org>\r\nBDAT 3 LAST\r\n1\r\n"),
            Recv(
                b"503 auth first\r\n503 need MAIL\r\n503 need RCPT\r\n",
                vec![],
            ),
            Send(
                b"RSET\r\nMAIL FROM:<a@x.org> SIZE=3\r\nRCPT TO:<b@x.org>\r\nBDAT 3 LAST\r\n1\r\n",
            ),
            Recv(
                b"250 ok\r\n503 auth first\r\n503 need MAIL\r\n503 need RCPT\r\n",
                vec![result(
                    1,
                    "503 auth first\r\n",
                    &[Some("503 need MAIL\r\n")],
                    Some("503 need RCPT\r\n"),
                )],
            ),
        ],
    );
}

#[test]
fn unsolicited_421_aborts_with_exact_end_of_data() {
    run_session(
        EHLO_CHUNKING,
        vec![
            submit(1, "a@x.org", &["b@x.org"], b"1\r\n"),
            Send(b"MAIL FROM:<a@x.org> SIZE=3\r\nRCPT TO:<b@x.org>\r\nBDAT 3 LAST\r\n1\r\n"),
            // Submitted but not handed out yet: its BDAT LAST was not sent.
            submit(2, "a@x.org", &["b@x.org"], b"2\r\n"),
            Recv(
                b"250 ok\r\n421 4.3.2 shutting down\r\n",
                vec![
                    aborted(1, true, "421", Some("421 4.3.2 shutting down\r\n")),
                    aborted(2, false, "421", Some("421 4.3.2 shutting down\r\n")),
                    closed("421", Some("421 4.3.2 shutting down\r\n")),
                ],
            ),
            Send(b""),
            call(|c| {
                assert!(c.is_closed());
                assert_eq!(c.in_flight(), 0);
                assert!(matches!(c.quit(), Err(Error::Local(_))));
            }),
            Recv(b"", vec![]),
        ],
    );
    // A 421 when nothing is expected.
    run_session(
        EHLO_PLAIN,
        vec![Recv(
            b"421 idle timeout\r\n",
            vec![closed("421", Some("421 idle timeout\r\n"))],
        )],
    );
    // A 421 as the greeting.
    run(&[Recv(
        b"421 busy\r\n",
        vec![closed("421", Some("421 busy\r\n"))],
    )]);
}

#[test]
fn eof_aborts_pending_data_phase() {
    run_session(
        EHLO_PIPELINING,
        vec![
            submit(1, "a@x.org", &["b@x.org"], b"1\r\n"),
            submit(2, "a@x.org", &["b@x.org"], b"2\r\n"),
            Send(b"MAIL FROM:<a@x.org>\r\nRCPT TO:<b@x.org>\r\nDATA\r\n"),
            Recv(b"250 ok\r\n250 ok\r\n354 go\r\n", vec![]),
            Send(b"1\r\n.\r\nMAIL FROM:<a@x.org>\r\nRCPT TO:<b@x.org>\r\nDATA\r\n"),
            Recv(
                b"",
                vec![
                    aborted(1, true, "eof", None),
                    aborted(2, false, "eof", None),
                    closed("eof", None),
                ],
            ),
        ],
    );
}

fn protocol_error_case(bad: &'static [u8], message_part: &'static str) {
    let check = move |events: Vec<Event>| {
        assert_eq!(events.len(), 2, "{events:?}");
        assert!(matches!(
            &events[0],
            Event::TransactionAborted {
                txn_id: 1,
                end_of_data_sent: true,
                ..
            }
        ));
        match &events[1] {
            Event::Closed {
                reason,
                reply: None,
                error: Some(e),
            } => {
                assert!(reason.starts_with("protocol error"), "{reason}");
                assert!(e.contains(message_part), "{e:?} lacks {message_part:?}");
            }
            other => panic!("{other:?}"),
        }
    };
    for bytewise in [false, true] {
        let mut c = ready_connection(EHLO_CHUNKING, 4096);
        c.submit(
            1,
            Transaction::from_raw("a@x.org", &["b@x.org"], b"1\r\n").unwrap(),
        )
        .unwrap();
        c.data_to_send();
        check(feed(&mut c, bad, bytewise));
        assert_eq!(c.state(), State::Error);
        assert!(matches!(
            c.submit(
                2,
                Transaction::from_raw("a@x.org", &["b@x.org"], b"1").unwrap()
            ),
            Err(Error::Local(_))
        ));
        assert!(c.receive_data(b"250 ok\r\n").is_empty());
        assert!(c.receive_data(b"").is_empty());
    }
}

#[test]
fn protocol_errors_are_sticky() {
    protocol_error_case(b"250 ok\r\nHELLO\r\n", "malformed");
    protocol_error_case(b"250-ok\r\n251 ok\r\n", "changed");
    protocol_error_case(&[b'2'; 3000], "longer than");
    let mut many = Vec::new();
    for _ in 0..200 {
        many.extend_from_slice(b"250-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n");
    }
    protocol_error_case(Box::leak(many.into_boxed_slice()), "reply longer than 4096");
    // Nothing expected and not a 421.
    run_session(
        EHLO_PLAIN,
        vec![
            Recv(
                b"250 surprise\r\n",
                vec![Event::Closed {
                    reason: "protocol error: unexpected reply \"250 surprise\"".into(),
                    reply: None,
                    error: Some("unexpected reply \"250 surprise\"".into()),
                }],
            ),
            call(|c| assert_eq!(c.state(), State::Error)),
        ],
    );
}

#[test]
fn starttls_discards_injected_bytes() {
    let ehlo_after = "250-mx.example.org\r\n250-PIPELINING\r\n250 AUTH PLAIN\r\n";
    run_session(
        EHLO_TLS,
        vec![
            call(|c| {
                assert!(matches!(c.tls_established(), Err(Error::Local(_))));
                c.starttls().unwrap();
                assert!(matches!(c.starttls(), Err(Error::Local(_))));
            }),
            Send(b"STARTTLS\r\n"),
            // CVE-2011-0411: plaintext after the 220 must never be taken as a reply.
            Recv(
                b"220 2.0.0 Ready to start TLS\r\n250 injected\r\n",
                vec![Event::StartTlsReady],
            ),
            Recv(b"250 more injected\r\n", vec![]),
            call(|c| {
                assert_eq!(c.state(), State::TlsHandshake);
                c.tls_established().unwrap();
                assert!(c.tls_active() && c.capabilities().is_none());
            }),
            Send(b"EHLO client.example\r\n"),
            Recv(ehlo_after.as_bytes(), vec![ready(GREETING, ehlo_after)]),
            call(|c| {
                assert!(!c.capabilities().unwrap().starttls);
                c.auth("PLAIN", "u", "p", false).unwrap();
            }),
            Send(b"AUTH PLAIN AHUAcA==\r\n"),
            Recv(
                b"235 2.7.0 ok\r\n",
                vec![Event::AuthSucceeded(r("235 2.7.0 ok\r\n"))],
            ),
        ],
    );
    run_session(
        EHLO_TLS,
        vec![
            call(|c| c.starttls().unwrap()),
            Recv(
                b"454 4.7.0 TLS not available\r\n",
                vec![Event::CommandFailed {
                    command: "starttls",
                    reply: r("454 4.7.0 TLS not available\r\n"),
                }],
            ),
        ],
    );
}

#[test]
fn auth_mechanisms() {
    // No TLS and no explicit permission: nothing is sent.
    run_session(
        EHLO_TLS,
        vec![
            call(|c| {
                assert!(matches!(
                    c.auth("PLAIN", "u", "p", false),
                    Err(Error::Local(_))
                ));
                assert!(matches!(
                    c.auth("GSSAPI", "u", "p", true),
                    Err(Error::Local(_))
                ));
                c.auth("LOGIN", "user", "pass", true).unwrap();
                assert!(matches!(
                    c.submit(1, Transaction::from_raw("a@b", &["c@d"], b"x").unwrap()),
                    Err(Error::Local(_))
                ));
            }),
            Send(b"AUTH LOGIN\r\n"),
            Recv(b"334 VXNlcm5hbWU6\r\n", vec![]),
            Send(b"dXNlcg==\r\n"),
            Recv(b"334 UGFzc3dvcmQ6\r\n", vec![]),
            Send(b"cGFzcw==\r\n"),
            Recv(
                b"535 5.7.8 bad\r\n",
                vec![Event::AuthFailed(r("535 5.7.8 bad\r\n"))],
            ),
            call(|c| {
                assert!(c.is_ready());
                c.auth("xoauth2", "u", "t", true).unwrap();
            }),
            Send(b"AUTH XOAUTH2 dXNlcj11AWF1dGg9QmVhcmVyIHQBAQ==\r\n"),
            Recv(b"334 eyJzdGF0dXMiOiI0MDEifQ==\r\n", vec![]),
            Send(b"\r\n"),
            Recv(
                b"535 5.7.8 token expired\r\n",
                vec![Event::AuthFailed(r("535 5.7.8 token expired\r\n"))],
            ),
            call(|c| c.auth("CRAM-MD5", "tim", "tanstaaftanstaaf", true).unwrap()),
            Send(b"AUTH CRAM-MD5\r\n"),
            Recv(
                b"334 PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+\r\n",
                vec![],
            ),
            Send(b"dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw\r\n"),
            Recv(b"235 ok\r\n", vec![Event::AuthSucceeded(r("235 ok\r\n"))]),
        ],
    );
}

#[test]
fn envelope_checks() {
    let mut c = ClientConnection::new("client.example", 65536).unwrap();
    assert!(matches!(
        c.submit(1, Transaction::from_raw("a@x", &["b@x"], b"").unwrap()),
        Err(Error::Local(_))
    ));
    // The refused submit left nothing behind (checked below).
    c.receive_data(GREETING.as_bytes());
    c.receive_data(EHLO_PIPELINING.as_bytes());
    c.data_to_send();
    let utf8 = Transaction::from_raw("ü@x.org", &["b@x.org"], b"x").unwrap();
    assert!(utf8.smtputf8);
    assert!(matches!(c.submit(1, utf8), Err(Error::Smtputf8Required(_))));
    assert!(matches!(
        Transaction::from_raw("a@x.org", &["b@x.org\r\nRCPT TO:<evil@x.org>"], b"x"),
        Err(Error::InvalidMessage { field: Some(f), .. }) if f == "recipients[0]"
    ));
    assert!(matches!(
        Transaction::from_raw("a b", &["b@x.org"], b"x"),
        Err(Error::InvalidMessage { .. })
    ));
    assert!(matches!(
        Transaction::from_raw::<&str>("a@x.org", &[], b"x"),
        Err(Error::InvalidMessage { .. })
    ));
    assert_eq!(c.data_to_send(), b"");
    assert_eq!(c.in_flight(), 0);

    let mut c = ready_connection(EHLO_CHUNKING, 65536);
    let big = Transaction::from_raw("a@x.org", &["b@x.org"], &[b'x'; 1001]).unwrap();
    assert!(matches!(
        c.submit(1, big),
        Err(Error::InvalidMessage { .. })
    ));
    let utf8 = Transaction::from_raw("a@x.org", &["ü@x.org"], "é".as_bytes()).unwrap();
    c.submit(2, utf8).unwrap();
    assert_eq!(
        String::from_utf8(c.data_to_send()).unwrap(),
        "MAIL FROM:<a@x.org> SIZE=4 BODY=8BITMIME SMTPUTF8\r\nRCPT TO:<ü@x.org>\r\nBDAT 4 LAST\r\né\r\n"
    );
    assert!(ClientConnection::new("bad host", 100).is_err());
}

#[test]
fn quit_waits_for_queued_work_in_lockstep() {
    run_session(
        EHLO_PLAIN,
        vec![
            call(|c| {
                c.quit().unwrap();
                assert!(!c.is_ready());
            }),
            Send(b"QUIT\r\n"),
            Recv(b"221 bye\r\n", vec![closed("quit", Some("221 bye\r\n"))]),
        ],
    );
    // quit() before the session is ready: sent once Ready.
    run(&[
        call(|c| c.quit().unwrap()),
        Recv(GREETING.as_bytes(), vec![]),
        Recv(EHLO_PLAIN.as_bytes(), vec![ready(GREETING, EHLO_PLAIN)]),
        Send(b"EHLO client.example\r\nQUIT\r\n"),
    ]);
}

#[test]
fn noop_checks_an_idle_connection_and_transactions_follow_it() {
    run_session(
        EHLO_PLAIN,
        vec![
            call(|c| c.noop().unwrap()),
            // Lock-step: the transaction waits for the NOOP's reply.
            submit(1, "a@x.org", &["b@x.org"], b"1\r\n"),
            Send(b"NOOP\r\n"),
            call(|c| assert!(matches!(c.noop(), Err(Error::Local(_))))), // not idle now
            Recv(
                b"250 2.0.0 Ok\r\n",
                vec![Event::NoopReplied(r("250 2.0.0 Ok\r\n"))],
            ),
            Send(b"MAIL FROM:<a@x.org>\r\n"),
        ],
    );
    run_session(
        EHLO_CHUNKING,
        vec![
            call(|c| c.noop().unwrap()),
            submit(1, "a@x.org", &["b@x.org"], b"1\r\n"),
            // Pipelined: written right behind it.
            Send(
                b"NOOP\r\nMAIL FROM:<a@x.org> SIZE=3\r\nRCPT TO:<b@x.org>\r\nBDAT 3 LAST\r\n1\r\n",
            ),
            Recv(
                b"421 4.4.2 closing\r\n",
                vec![
                    aborted(1, true, "421", Some("421 4.4.2 closing\r\n")),
                    closed("421", Some("421 4.4.2 closing\r\n")),
                ],
            ),
        ],
    );
}
