//! Property tests (proptest) of everything that reads hostile bytes or must survive any
//! split: the reply parser, the dot-stuffer and the whole connection.
//!
//! Cases per property: proptest's default (256) or `PROPTEST_CASES`, e.g.
//! `PROPTEST_CASES=100000 cargo test --release fuzz_tests`.

use proptest::prelude::*;

use super::connection::{ClientConnection, Event, Options, Transaction, Verdict};
use super::dotstuff::{dot_stuff, dot_unstuff, normalize, DotStuffer};
use super::reply::{parse_all, Reply, ReplyParser};

/// Cut `data` at the given (unsorted, possibly repeated) points.
fn chunks(data: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (data.len() + 1)).collect();
    points.sort_unstable();
    let mut out = Vec::new();
    let mut at = 0;
    for p in points.into_iter().chain([data.len()]) {
        out.push(data[at..p].to_vec());
        at = p;
    }
    out
}

/// Replies parsed from `pieces` fed one after another, and whether an error ended it.
fn parse_pieces(pieces: &[Vec<u8>]) -> (Vec<Reply>, bool) {
    let mut parser = ReplyParser::new(4096);
    let mut replies = Vec::new();
    for piece in pieces {
        parser.feed(piece);
        loop {
            match parser.next_reply() {
                Ok(Some(r)) => replies.push(r),
                Ok(None) => break,
                Err(_) => return (replies, true),
            }
        }
    }
    (replies, false)
}

/// Bytes that look like SMTP replies often enough to reach deep parser states.
fn replyish() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"250".to_vec()),
        Just(b"354".to_vec()),
        Just(b"421".to_vec()),
        Just(b"550".to_vec()),
        Just(b"-".to_vec()),
        Just(b" ".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r".to_vec()),
        Just(b"2.1.5 ".to_vec()),
        Just(b"5.7.1".to_vec()),
        prop::collection::vec(any::<u8>(), 0..8),
        "[ -~]{0,20}".prop_map(String::into_bytes),
    ];
    prop::collection::vec(piece, 0..40).prop_map(|v| v.concat())
}

proptest! {
    #[test]
    fn reply_parser_never_panics(data in prop::collection::vec(any::<u8>(), 0..600)) {
        let _ = parse_all(&data, 4096);
    }

    #[test]
    fn reply_parser_split_invariant(data in replyish(), cuts in prop::collection::vec(any::<usize>(), 0..12)) {
        let whole = parse_pieces(std::slice::from_ref(&data));
        prop_assert_eq!(&parse_pieces(&chunks(&data, &cuts)), &whole);
        let bytewise: Vec<Vec<u8>> = data.iter().map(|b| vec![*b]).collect();
        prop_assert_eq!(&parse_pieces(&bytewise), &whole);
    }

    #[test]
    fn reply_roundtrip(
        code in 200u16..600,
        lines in prop::collection::vec("[A-Za-z][ -~]{0,60}", 1..6),
    ) {
        let mut wire = Vec::new();
        for (i, line) in lines.iter().enumerate() {
            let sep = if i + 1 == lines.len() { ' ' } else { '-' };
            wire.extend_from_slice(format!("{code}{sep}{line}\r\n").as_bytes());
        }
        let replies = parse_all(&wire, 65536).unwrap();
        prop_assert_eq!(replies, vec![Reply { code, enhanced: None, text: lines.join("\n") }]);
    }

    #[test]
    fn dot_stuff_roundtrip(
        body in prop::collection::vec(prop_oneof![Just(b'.'), Just(b'\r'), Just(b'\n'), any::<u8>()], 0..300),
        cuts in prop::collection::vec(any::<usize>(), 0..8),
    ) {
        let wire = dot_stuff(&body);
        // decode(encode(x)) == normalize(x)
        prop_assert_eq!(dot_unstuff(&wire), normalize(&body).into_owned());
        // CRLF only, ends with CRLF, and the terminator can never appear inside.
        prop_assert!(super::dotstuff::is_normalized(&wire));
        prop_assert!(!wire.starts_with(b".\r\n"));
        prop_assert!(!wire.windows(5).any(|w| w == b"\r\n.\r\n"));
        // Any split gives the same bytes.
        let mut out = Vec::new();
        let mut stuffer = DotStuffer::new();
        for piece in chunks(&body, &cuts) {
            stuffer.encode(&piece, &mut out);
        }
        stuffer.finish(&mut out);
        prop_assert_eq!(out, wire);
    }

    #[test]
    fn connection_survives_anything(
        ehlo in ehlos(),
        txns in prop::collection::vec(1usize..4, 0..6),
        server in server_stream(),
        cuts in prop::collection::vec(any::<usize>(), 0..10),
        quit_early in any::<bool>(),
        data_window in 1usize..4,
        count_only in any::<bool>(),
    ) {
        let mut session = Session::new(ehlo, &txns, data_window, count_only);
        if quit_early {
            let _ = session.conn.quit();
        }
        session.play(&server, &cuts);
        let Session { mut conn, events, ids, .. } = session;
        prop_assert!(conn.is_closed());
        prop_assert!(conn.receive_data(b"250 x\r\n").is_empty());
        // Exactly one outcome per transaction, exactly one Closed, and it is last.
        let mut outcomes: Vec<u64> = Vec::new();
        for e in &events {
            match e {
                Event::TransactionResult { tag, .. } | Event::TransactionAborted { tag, .. } => {
                    outcomes.push(*tag)
                }
                Event::Accepted { tag, transactions, .. } => {
                    // Distinct tags are never one batch: one transaction each.
                    prop_assert_eq!(*transactions, 1);
                    outcomes.push(*tag);
                }
                _ => {}
            }
        }
        outcomes.sort_unstable();
        prop_assert_eq!(outcomes, ids);
        let closed = events.iter().filter(|e| matches!(e, Event::Closed { .. })).count();
        prop_assert_eq!(closed, 1);
        let last_is_closed = matches!(events.last(), Some(Event::Closed { .. }));
        prop_assert!(last_is_closed);
        prop_assert_eq!(conn.in_flight(), 0);
    }

    /// Never a false "accepted": whatever the server sends, a transaction reported
    /// accepted had its end of data on the wire before the reply taken for it arrived, and
    /// that reply, the one at its end of data's position in the reply stream (RFC 2920
    /// 3.1, computed here independently from the bytes the client wrote), is a 2xx.
    #[test]
    fn accepted_only_by_a_2xx_to_its_own_end_of_data(
        ehlo in ehlos(),
        txns in prop::collection::vec(1usize..4, 1..6),
        server in server_stream(),
        cuts in prop::collection::vec(any::<usize>(), 0..10),
        data_window in 1usize..4,
        count_only in any::<bool>(),
    ) {
        let mut session = Session::new(ehlo, &txns, data_window, count_only);
        session.play(&server, &cuts);
        let accepted: Vec<u64> = session.events.iter().filter_map(|e| match e {
            Event::Accepted { tag, .. } => Some(*tag),
            Event::TransactionResult { tag, outcome }
                if (0..outcome.rcpt_replies.len())
                    .any(|i| matches!(outcome.verdict(i), Verdict::Accepted(_))) =>
            {
                Some(*tag)
            }
            _ => None,
        }).collect();
        let commands = parse_commands(&session.written);
        let replies = parse_fed_replies(&session.fed);
        for tag in accepted {
            let sender = format!("s{tag}@x.org");
            // Its end of data: the last one after its last MAIL.
            let mail = commands.iter().rposition(|c| c.text.contains(&sender));
            prop_assert!(mail.is_some(), "accepted {} without a MAIL", tag);
            let mail = mail.unwrap();
            let eod = commands[mail..].iter().position(|c| c.ends_data).map(|i| i + mail);
            prop_assert!(eod.is_some(), "accepted {} without an end of data", tag);
            let eod = eod.unwrap();
            // Reply 0 is the greeting; reply n answers command n.
            let reply = replies.get(eod + 1);
            prop_assert!(reply.is_some(), "accepted {} without a reply to its end of data", tag);
            let (code, fed_in) = *reply.unwrap();
            prop_assert!((200..300).contains(&code), "accepted {} by a {}", tag, code);
            prop_assert!(fed_in >= commands[eod].written_in,
                "accepted {} by a reply fed before its end of data was written", tag);
        }
    }
}

fn ehlos() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        Just("250-x\r\n250-PIPELINING\r\n250 CHUNKING\r\n"),
        Just("250-x\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n250 CHUNKING\r\n"),
        Just("250-x\r\n250 PIPELINING\r\n"),
        Just("250-x\r\n250 CHUNKING\r\n"),
        Just("250 x\r\n"),
    ]
}

/// Replies a server might send, right and wrong, as one stream.
fn server_stream() -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop::collection::vec(
        prop_oneof![
            6 => prop::sample::select(vec![
                "250 x", "250 2.1.0 x", "250 2.1.5 x", "250 2.0.0 x", "251 x", "354 x",
                "220 x", "235 x", "334 x", "421 x", "450 x", "451 4.3.0 x", "503 x",
                "550 5.1.1 x", "554 x",
            ])
            .prop_map(|line| format!("{line}\r\n").into_bytes()),
            1 => replyish(),
        ],
        0..40,
    )
}

/// One connection driven through a server stream, with what crossed the wire.
struct Session {
    conn: ClientConnection<u64>,
    events: Vec<Event<u64>>,
    ids: Vec<u64>,
    /// Every byte the client wrote, with the number of the piece fed after it.
    written: Vec<(usize, Vec<u8>)>,
    /// Every byte fed, with its piece number (the greeting and EHLO reply are piece 0).
    fed: Vec<(usize, Vec<u8>)>,
}

impl Session {
    fn new(ehlo: &str, txns: &[usize], data_window: usize, count_only: bool) -> Self {
        let options = Options {
            max_reply_bytes: 4096,
            data_window,
        };
        let mut conn = ClientConnection::new("client.example", options).unwrap();
        let mut written = Vec::new();
        let mut fed = vec![(0, b"220 hi\r\n".to_vec())];
        let mut events = conn.receive_data(b"220 hi\r\n");
        written.push((1, conn.data_to_send()));
        fed.push((1, ehlo.as_bytes().to_vec()));
        events.extend(conn.receive_data(ehlo.as_bytes()));
        let mut ids = Vec::new();
        for (i, n) in txns.iter().enumerate() {
            let rcpts: Vec<String> = (0..*n).map(|r| format!("r{r}@x.org")).collect();
            let sender = format!("s{i}@x.org");
            let tx = Transaction::from_raw(&sender, &rcpts, b".body\n").unwrap();
            if conn.submit(i as u64, tx, count_only).is_ok() {
                ids.push(i as u64);
            }
        }
        Session {
            conn,
            events,
            ids,
            written,
            fed,
        }
    }

    /// Feed `server` cut at `cuts`, taking the client's bytes before each piece, then EOF.
    fn play(&mut self, server: &[Vec<u8>], cuts: &[usize]) {
        let stream = server.concat();
        for (n, piece) in chunks(&stream, cuts).into_iter().enumerate() {
            let number = n + 2;
            self.written.push((number, self.conn.data_to_send()));
            self.fed.push((number, piece.clone()));
            let events = self.conn.receive_data(&piece);
            self.events.extend(events);
        }
        let events = self.conn.receive_data(b"");
        self.events.extend(events);
    }
}

/// A command the client wrote, as this test's own reading of the bytes.
struct Command {
    text: String,
    ends_data: bool,
    /// The number of the piece it was written before.
    written_in: usize,
}

/// The client's commands in order, read from its bytes: command lines, `BDAT n` followed
/// by n octets, and a DATA body (every body here is ".body", stuffed to "..body") up to
/// its "." line, which is one command (the end of data).
fn parse_commands(written: &[(usize, Vec<u8>)]) -> Vec<Command> {
    let mut stream = Vec::new();
    let mut marks = Vec::new();
    for (number, bytes) in written.iter().filter(|(_, b)| !b.is_empty()) {
        marks.push((stream.len(), *number));
        stream.extend_from_slice(bytes);
    }
    let piece_of = |offset: usize| {
        marks
            .iter()
            .rev()
            .find(|(at, _)| *at <= offset)
            .map_or(0, |m| m.1)
    };
    let mut commands = Vec::new();
    let mut at = 0;
    while at < stream.len() {
        let end = match stream[at..].windows(2).position(|w| w == b"\r\n") {
            Some(i) => at + i + 2,
            None => break,
        };
        let line = String::from_utf8_lossy(&stream[at..end - 2]).into_owned();
        if line == "..body" {
            at = end; // body line: part of the end of data that follows
            continue;
        }
        let mut last = end;
        let mut ends_data = line == ".";
        if let Some(size) = line
            .strip_prefix("BDAT ")
            .and_then(|r| r.strip_suffix(" LAST"))
        {
            last = end + size.parse::<usize>().unwrap();
            ends_data = true;
        }
        commands.push(Command {
            text: line,
            ends_data,
            written_in: piece_of(last - 1),
        });
        at = last;
    }
    commands
}

/// The code of each complete reply fed, with the piece it was completed in.
fn parse_fed_replies(fed: &[(usize, Vec<u8>)]) -> Vec<(u16, usize)> {
    let mut parser = ReplyParser::new(4096);
    let mut replies = Vec::new();
    for (number, piece) in fed {
        parser.feed(piece);
        while let Ok(Some(reply)) = parser.next_reply() {
            replies.push((reply.code, *number));
        }
    }
    replies
}
