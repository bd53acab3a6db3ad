//! Table tests of [`ClientConnection`] both ways: user calls -> exact bytes on the wire, and
//! server bytes -> events. Every script runs twice: each server chunk fed whole, then one
//! byte at a time; both runs must give the same bytes and events.

use super::connection::{ClientConnection, Event, Kind, Options, Outcome, Transaction};
use super::error::Error;
use super::reply::{parse_all, Reply};
use super::state::State;
use super::Capabilities;

type Conn = ClientConnection<u64>;
type Ev = Event<u64>;
type Call = Box<dyn Fn(&mut Conn)>;

enum Step {
    /// The server sends these bytes; these events must come out.
    Recv(&'static [u8], Vec<Ev>),
    /// `data_to_send()` must return exactly this.
    Send(&'static [u8]),
    /// A user call (with its own assertions).
    Do(Call),
}
use Step::{Do, Recv, Send};

fn run(script: &[Step]) {
    run_with(Options::default(), script)
}

/// The script with a data window of 64: `BDAT LAST`s pipelined without waiting.
fn run_pipelined_eod(script: &[Step]) {
    let options = Options {
        data_window: 64,
        ..Options::default()
    };
    run_with(options, script)
}

fn run_with(options: Options, script: &[Step]) {
    for bytewise in [false, true] {
        let mut conn = Conn::new("client.example", options).unwrap();
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

fn ready(greeting: &str, ehlo: &str) -> Ev {
    Ev::Ready {
        greeting: r(greeting),
        capabilities: Capabilities::from_ehlo(&r(ehlo)),
    }
}

fn result(id: u64, mail: &str, rcpts: &[Option<&str>], data: Option<&str>) -> Ev {
    let data_reply = data.map(r);
    // Only an end-of-data reply can be 2xx in a result (a refused DATA is 4xx/5xx).
    let delivered = data_reply.as_ref().is_some_and(Reply::is_completion);
    Ev::TransactionResult {
        tag: id,
        outcome: Outcome {
            mail_reply: r(mail),
            rcpt_replies: rcpts.iter().map(|x| x.map(r)).collect(),
            data_reply,
            delivered,
        },
    }
}

fn aborted(id: u64, eod: bool, reason: &str, reply: Option<&str>) -> Ev {
    Ev::TransactionAborted {
        tag: id,
        end_of_data_sent: eod,
        reason: reason.into(),
        reply: reply.map(r),
    }
}

fn closed(reason: &str, reply: Option<&str>) -> Ev {
    Ev::Closed {
        reason: reason.into(),
        reply: reply.map(r),
        error: None,
    }
}

fn submit(id: u64, from: &'static str, to: &'static [&'static str], body: &'static [u8]) -> Step {
    Do(Box::new(move |c| {
        c.submit(id, Transaction::from_raw(from, to, body).unwrap(), false)
            .unwrap()
    }))
}

fn call(f: impl Fn(&mut Conn) + 'static) -> Step {
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

/// `run_session` with a data window of 64.
fn run_session_pipelined_eod(ehlo: &'static str, steps: Vec<Step>) {
    let mut script = session(ehlo);
    script.extend(steps);
    run_pipelined_eod(&script);
}

/// A connection past the greeting and this EHLO reply, its EHLO already taken out.
fn ready_connection(ehlo: &str, max_reply_bytes: usize) -> Conn {
    let mut c = Conn::new(
        "client.example",
        Options {
            max_reply_bytes,
            ..Options::default()
        },
    )
    .unwrap();
    c.receive_data(GREETING.as_bytes());
    c.data_to_send();
    c.receive_data(ehlo.as_bytes());
    c.data_to_send();
    c
}

/// Feed `data` whole, or one byte at a time; the events of all the calls.
fn feed(conn: &mut Conn, data: &[u8], bytewise: bool) -> Vec<Ev> {
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
            vec![Ev::Ready {
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
            vec![Ev::CommandFailed {
                command: "greeting",
                reply: r("554 5.7.1 go away\r\n"),
            }],
        ),
        call(|c| {
            assert_eq!(c.state(), State::Failed);
            assert!(matches!(
                c.submit(
                    1,
                    Transaction::from_raw("a@b", &["c@d"], b"x").unwrap(),
                    false
                ),
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
        Send(b"EHLO client.example\r\n"),
        Recv(b"500 no\r\n", vec![]),
        Send(b"HELO client.example\r\n"),
        Recv(
            b"501 no\r\n",
            vec![Ev::CommandFailed {
                command: "helo",
                reply: r("501 no\r\n"),
            }],
        ),
        Recv(b"", vec![closed("eof", None)]),
    ]);
    run(&[
        Recv(GREETING.as_bytes(), vec![]),
        Send(b"EHLO client.example\r\n"),
        Recv(
            b"454 later\r\n",
            vec![Ev::CommandFailed {
                command: "ehlo",
                reply: r("454 later\r\n"),
            }],
        ),
    ]);
}

#[test]
fn chunking_with_a_wide_data_window_pipelines_everything() {
    run_session_pipelined_eod(EHLO_CHUNKING, vec![
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
    run_session_pipelined_eod(EHLO_CHUNKING, vec![
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
    run_session_pipelined_eod(
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
    run_session_pipelined_eod(
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
    let check = move |events: Vec<Ev>| {
        assert_eq!(events.len(), 2, "{events:?}");
        assert!(matches!(
            &events[0],
            Ev::TransactionAborted {
                tag: 1,
                // Its BDAT LAST waits for the MAIL and RCPT replies (data window 1).
                end_of_data_sent: false,
                ..
            }
        ));
        match &events[1] {
            Ev::Closed {
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
            false,
        )
        .unwrap();
        c.data_to_send();
        check(feed(&mut c, bad, bytewise));
        assert_eq!(c.state(), State::Error);
        assert!(matches!(
            c.submit(
                2,
                Transaction::from_raw("a@x.org", &["b@x.org"], b"1").unwrap(),
                false
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
                vec![Ev::Closed {
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
                vec![Ev::StartTlsReady],
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
                vec![Ev::AuthSucceeded(r("235 2.7.0 ok\r\n"))],
            ),
        ],
    );
    run_session(
        EHLO_TLS,
        vec![
            call(|c| c.starttls().unwrap()),
            Send(b"STARTTLS\r\n"),
            Recv(
                b"454 4.7.0 TLS not available\r\n",
                vec![Ev::CommandFailed {
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
                    c.submit(
                        1,
                        Transaction::from_raw("a@b", &["c@d"], b"x").unwrap(),
                        false
                    ),
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
                vec![Ev::AuthFailed(r("535 5.7.8 bad\r\n"))],
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
                vec![Ev::AuthFailed(r("535 5.7.8 token expired\r\n"))],
            ),
            call(|c| c.auth("CRAM-MD5", "tim", "tanstaaftanstaaf", true).unwrap()),
            Send(b"AUTH CRAM-MD5\r\n"),
            Recv(
                b"334 PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+\r\n",
                vec![],
            ),
            Send(b"dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw\r\n"),
            Recv(b"235 ok\r\n", vec![Ev::AuthSucceeded(r("235 ok\r\n"))]),
        ],
    );
}

#[test]
fn envelope_checks() {
    let mut c = Conn::new("client.example", Options::default()).unwrap();
    assert!(matches!(
        c.submit(
            1,
            Transaction::from_raw("a@x", &["b@x"], b"").unwrap(),
            false
        ),
        Err(Error::Local(_))
    ));
    // The refused submit left nothing behind (checked below).
    c.receive_data(GREETING.as_bytes());
    c.data_to_send();
    c.receive_data(EHLO_PIPELINING.as_bytes());
    let utf8 = Transaction::from_raw("ü@x.org", &["b@x.org"], b"x").unwrap();
    assert!(utf8.smtputf8);
    assert!(matches!(
        c.submit(1, utf8, false),
        Err(Error::Smtputf8Required(_))
    ));
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
        c.submit(1, big, false),
        Err(Error::InvalidMessage { .. })
    ));
    let utf8 = Transaction::from_raw("a@x.org", &["ü@x.org"], "é".as_bytes()).unwrap();
    c.submit(2, utf8, false).unwrap();
    assert_eq!(
        String::from_utf8(c.data_to_send()).unwrap(),
        "MAIL FROM:<a@x.org> SIZE=4 BODY=8BITMIME SMTPUTF8\r\nRCPT TO:<ü@x.org>\r\n"
    );
    c.receive_data(b"250 ok\r\n250 ok\r\n");
    assert_eq!(c.data_to_send(), b"BDAT 4 LAST\r\n\xc3\xa9\r\n");
    assert!(Conn::new("bad host", Options::default()).is_err());
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
        Send(b"EHLO client.example\r\n"),
        Recv(EHLO_PLAIN.as_bytes(), vec![ready(GREETING, EHLO_PLAIN)]),
        Send(b"QUIT\r\n"),
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
                vec![Ev::NoopReplied(r("250 2.0.0 Ok\r\n"))],
            ),
            Send(b"MAIL FROM:<a@x.org>\r\n"),
        ],
    );
    run_session(
        EHLO_CHUNKING,
        vec![
            call(|c| c.noop().unwrap()),
            submit(1, "a@x.org", &["b@x.org"], b"1\r\n"),
            // Pipelined: written right behind it (the BDAT LAST waits for the replies).
            Send(b"NOOP\r\nMAIL FROM:<a@x.org> SIZE=3\r\nRCPT TO:<b@x.org>\r\n"),
            Recv(
                b"421 4.4.2 closing\r\n",
                vec![
                    aborted(1, false, "421", Some("421 4.4.2 closing\r\n")),
                    closed("421", Some("421 4.4.2 closing\r\n")),
                ],
            ),
        ],
    );
}

#[test]
fn chunking_window_one_sends_each_bdat_after_every_earlier_reply() {
    run_session(
        EHLO_CHUNKING,
        vec![
            submit(1, "a@x.org", &["b@x.org"], b"1\r\n"),
            submit(2, "a@x.org", &["c@x.org"], b"2\r\n"),
            submit(3, "a@x.org", &["d@x.org"], b"3\r\n"),
            Send(b"MAIL FROM:<a@x.org> SIZE=3\r\nRCPT TO:<b@x.org>\r\n"),
            Recv(b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n", vec![]),
            // Its BDAT LAST, with the next transaction's MAIL and RCPT behind it.
            Send(b"BDAT 3 LAST\r\n1\r\nMAIL FROM:<a@x.org> SIZE=3\r\nRCPT TO:<c@x.org>\r\n"),
            Recv(
                b"250 2.0.0 queued\r\n",
                vec![result(
                    1,
                    "250 2.1.0 Ok\r\n",
                    &[Some("250 2.1.5 Ok\r\n")],
                    Some("250 2.0.0 queued\r\n"),
                )],
            ),
            Send(b""),
            // Every recipient refused: no body; RSET before the next MAIL.
            Recv(
                b"250 2.1.0 Ok\r\n550 5.1.1 unknown\r\n",
                vec![result(
                    2,
                    "250 2.1.0 Ok\r\n",
                    &[Some("550 5.1.1 unknown\r\n")],
                    None,
                )],
            ),
            Send(b"RSET\r\nMAIL FROM:<a@x.org> SIZE=3\r\nRCPT TO:<d@x.org>\r\n"),
            Recv(b"250 2.0.0 Ok\r\n250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n", vec![]),
            Send(b"BDAT 3 LAST\r\n3\r\n"),
            // The connection breaks: only the one unanswered end of data is in doubt.
            Recv(
                b"",
                vec![aborted(3, true, "eof", None), closed("eof", None)],
            ),
        ],
    );
}

/// A script that must end in a protocol error naming `what`, with transaction 1 aborted
/// (`eod`: its end of data had gone out).
fn misplaced_case(
    ehlo: &'static str,
    window: usize,
    steps: Vec<Step>,
    eod: bool,
    what: &'static str,
) {
    let mut script = session(ehlo);
    script.push(submit(1, "a@x.org", &["b@x.org"], b"1\r\n"));
    script.extend(steps);
    script.push(call(move |c| assert_eq!(c.state(), State::Error)));
    let check = move |events: &[Ev]| match events {
        [Ev::TransactionAborted {
            tag: 1,
            end_of_data_sent,
            reason,
            reply: None,
        }, Ev::Closed {
            error: Some(error), ..
        }] => {
            assert_eq!(*end_of_data_sent, eod, "{reason}");
            assert!(error.contains(what), "{error:?} lacks {what:?}");
        }
        other => panic!("{other:?}"),
    };
    for bytewise in [false, true] {
        let options = Options {
            data_window: window,
            ..Options::default()
        };
        let mut conn = Conn::new("client.example", options).unwrap();
        let mut last = Vec::new();
        for step in &script {
            match step {
                Recv(data, _) => last = feed(&mut conn, data, bytewise),
                Send(_) => {
                    conn.data_to_send();
                }
                Do(f) => f(&mut conn),
            }
        }
        check(&last);
    }
}

#[test]
fn misplaced_replies_are_protocol_errors_never_acceptances() {
    let s = |b: &'static [u8]| Send(b);
    let r = |b: &'static [u8]| Recv(b, vec![]);
    // DATA answered 250: no body was sent, nothing was accepted.
    misplaced_case(
        EHLO_PIPELINING,
        1,
        vec![s(b""), r(b"250 ok\r\n250 ok\r\n250 ok\r\n")],
        false,
        "reply \"250 ok\" to DATA",
    );
    // 3xx to MAIL or RCPT.
    misplaced_case(
        EHLO_PIPELINING,
        1,
        vec![s(b""), r(b"354 ok\r\n")],
        false,
        "to MAIL FROM",
    );
    misplaced_case(
        EHLO_PIPELINING,
        1,
        vec![s(b""), r(b"250 ok\r\n334 ok\r\n")],
        false,
        "to RCPT TO",
    );
    // 3xx to the end of data, DATA and BDAT: the message may be there (in doubt).
    misplaced_case(
        EHLO_PIPELINING,
        1,
        vec![
            s(b""),
            r(b"250 ok\r\n250 ok\r\n354 go\r\n"),
            s(b""),
            r(b"354 again\r\n"),
        ],
        true,
        "to the end of data",
    );
    misplaced_case(
        EHLO_CHUNKING,
        1,
        vec![
            s(b""),
            r(b"250 ok\r\n250 ok\r\n"),
            s(b""),
            r(b"354 what\r\n"),
        ],
        true,
        "to BDAT LAST",
    );
    // One reply too many after MAIL, DATA mode: the RCPT's reply lands on DATA.
    misplaced_case(
        EHLO_PIPELINING,
        1,
        vec![
            s(b""),
            r(b"250 2.1.0 Ok\r\n250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 go\r\n"),
        ],
        false,
        "to DATA",
    );
    // The same with CHUNKING: the surplus lands on the BDAT LAST not yet sent.
    misplaced_case(
        EHLO_CHUNKING,
        1,
        vec![
            s(b""),
            r(b"250 2.1.0 Ok\r\n250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n554 5.7.1 no\r\n"),
        ],
        false,
        "before BDAT LAST was sent",
    );
    // With a wide window the BDAT LAST went out at once; the RCPT's 2.1.5 shifted onto
    // it is still not taken for an acceptance.
    misplaced_case(
        EHLO_CHUNKING,
        8,
        vec![
            s(b""),
            r(b"250 2.1.0 Ok\r\n250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n554 5.7.1 no\r\n"),
        ],
        true,
        "\"250 2.1.5 Ok\" to BDAT LAST",
    );
    // A refused RSET: the old transaction may still be open.
    let mut script = session(EHLO_PIPELINING);
    script.extend([
        submit(1, "a@x.org", &["b@x.org"], b"1\r\n"),
        Send(b"MAIL FROM:<a@x.org>\r\nRCPT TO:<b@x.org>\r\nDATA\r\n"),
        Recv(
            b"250 ok\r\n250 ok\r\n554 no valid recipients\r\n",
            vec![result(
                1,
                "250 ok\r\n",
                &[Some("250 ok\r\n")],
                Some("554 no valid recipients\r\n"),
            )],
        ),
        submit(2, "a@x.org", &["b@x.org"], b"2\r\n"),
        Send(b"RSET\r\nMAIL FROM:<a@x.org>\r\nRCPT TO:<b@x.org>\r\nDATA\r\n"),
        Recv(
            b"500 what\r\n",
            vec![
                aborted(2, false, "protocol error: RSET refused: \"500 what\"", None),
                Ev::Closed {
                    reason: "protocol error: RSET refused: \"500 what\"".into(),
                    reply: None,
                    error: Some("RSET refused: \"500 what\"".into()),
                },
            ],
        ),
    ]);
    run(&script);
}

#[test]
fn count_only_acceptances_of_one_batch_are_merged() {
    let options = Options {
        data_window: 64,
        ..Options::default()
    };
    let mut c = Conn::new("client.example", options).unwrap();
    c.receive_data(GREETING.as_bytes());
    c.data_to_send();
    c.receive_data(EHLO_CHUNKING.as_bytes());
    // Tags 7, 7, 9, 7, 7: batches by equality (the u64 Tag).
    for (tag, to) in [
        (7, "b@x.org"),
        (7, "c@x.org"),
        (9, "d@x.org"),
        (7, "e@x.org"),
        (7, "f@x.org"),
    ] {
        let tx = Transaction::from_raw("a@x.org", &[to], b"x\r\n").unwrap();
        c.submit(tag, tx, true).unwrap();
    }
    c.data_to_send();
    let ok3 = "250 ok\r\n250 ok\r\n250 ok\r\n";
    let replies = format!("{ok3}{ok3}{ok3}{ok3}250 ok\r\n550 no\r\n250 ok\r\n");
    // Merged within one read only: each read is reported as it comes.
    assert_eq!(
        c.receive_data(replies.as_bytes()),
        vec![
            Ev::Accepted {
                tag: 7,
                transactions: 2,
                recipients: 2,
            },
            Ev::Accepted {
                tag: 9,
                transactions: 1,
                recipients: 1,
            },
            Ev::Accepted {
                tag: 7,
                transactions: 1,
                recipients: 1,
            },
            // Not every recipient accepted: a full result, even when count-only.
            result(7, "250 ok\r\n", &[Some("550 no\r\n")], Some("250 ok\r\n")),
        ]
    );
}

#[test]
fn reply_deadlines_count_from_when_the_command_was_sent() {
    let mut c = Conn::new("client.example", Options::default()).unwrap();
    assert_eq!(c.oldest_unanswered(), None); // the greeting: nothing sent yet
    c.take_data_to_send(1.0, |_| ());
    assert_eq!(c.oldest_unanswered(), Some((Kind::Greeting, 1.0)));
    c.receive_data(GREETING.as_bytes());
    assert_eq!(c.oldest_unanswered(), None); // EHLO framed, not handed out
    c.take_data_to_send(2.0, |_| ());
    c.receive_data(EHLO_PIPELINING.as_bytes());
    c.submit(
        1,
        Transaction::from_raw("a@x.org", &["b@x.org"], b"1\r\n").unwrap(),
        false,
    )
    .unwrap();
    c.take_data_to_send(5.0, |_| ());
    assert_eq!(c.oldest_unanswered(), Some((Kind::Mail, 5.0)));
    // Half a reply does not move the deadline; the whole one does.
    c.receive_data(b"250 o");
    assert_eq!(c.oldest_unanswered(), Some((Kind::Mail, 5.0)));
    c.receive_data(b"k\r\n");
    assert_eq!(c.oldest_unanswered(), Some((Kind::Rcpt, 5.0)));
    let events = c.abort("timed out after 2s waiting for the reply to RCPT TO");
    assert_eq!(
        events,
        vec![
            aborted(
                1,
                false,
                "timed out after 2s waiting for the reply to RCPT TO",
                None
            ),
            closed("timed out after 2s waiting for the reply to RCPT TO", None),
        ]
    );
    assert_eq!(c.state(), State::Closed);
}

#[test]
fn large_bodies_go_out_in_pieces_and_their_end_counts_only_once_handed_out() {
    const EHLO_BIG: &str = "250-mx.example.org\r\n250-PIPELINING\r\n250 CHUNKING\r\n";
    let body: Vec<u8> = b"..line\r\n"
        .iter()
        .copied()
        .cycle()
        .take(8 * 400_000)
        .collect();
    for ehlo in [EHLO_BIG, EHLO_PIPELINING] {
        let chunking = ehlo == EHLO_BIG;
        let mut c = ready_connection(ehlo, 65536);
        let before = c.bytes_sent();
        let tx = Transaction::from_raw("a@x.org", &["b@x.org"], &body).unwrap();
        c.submit(1, tx, false).unwrap();
        let mut wire = c.data_to_send();
        let go: &[u8] = if chunking {
            b"250 ok\r\n250 ok\r\n"
        } else {
            b"250 ok\r\n250 ok\r\n354 go\r\n"
        };
        assert!(c.receive_data(go).is_empty());
        let mut pieces = 0;
        while c.has_data_to_send() {
            let piece = c.take_data_to_send(0.0, <[u8]>::to_vec);
            // A piece of the body, which dot-stuffing can at most double.
            assert!(piece.len() <= 2 * super::output::PIECE + 64);
            wire.extend(piece);
            pieces += 1;
        }
        assert!(pieces > 4, "{pieces}");
        let end: &[u8] = if chunking {
            b"..line\r\n"
        } else {
            b"...line\r\n.\r\n"
        };
        assert!(wire.ends_with(end));
        assert_eq!(c.bytes_sent() - before, wire.len() as u64);
        let events = c.receive_data(b"");
        assert!(matches!(
            events[0],
            Ev::TransactionAborted {
                end_of_data_sent: true,
                ..
            }
        ));
    }
    // Broken off while half the body is out: the end of data never went, not in doubt.
    let mut c = ready_connection(EHLO_BIG, 65536);
    let tx = Transaction::from_raw("a@x.org", &["b@x.org"], &body).unwrap();
    c.submit(1, tx, false).unwrap();
    c.data_to_send();
    c.receive_data(b"250 ok\r\n250 ok\r\n");
    c.take_data_to_send(0.0, |_| ());
    assert!(c.has_data_to_send());
    let events = c.receive_data(b"");
    assert!(matches!(
        events[0],
        Ev::TransactionAborted {
            end_of_data_sent: false,
            ..
        }
    ));
}
