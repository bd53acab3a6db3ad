//! Property tests (proptest) of everything that reads hostile bytes or must survive any
//! split: the reply parser, the dot-stuffer and the whole connection.
//!
//! Cases per property: proptest's default (256) or `PROPTEST_CASES`, e.g.
//! `PROPTEST_CASES=100000 cargo test --release fuzz_tests`.

use proptest::prelude::*;

use super::connection::{ClientConnection, Event, Transaction};
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
        ehlo in prop_oneof![
            Just("250-x\r\n250-PIPELINING\r\n250 CHUNKING\r\n"),
            Just("250-x\r\n250 PIPELINING\r\n"),
            Just("250-x\r\n250 CHUNKING\r\n"),
            Just("250 x\r\n"),
        ],
        txns in prop::collection::vec(1usize..4, 0..6),
        server in prop::collection::vec(
            prop_oneof![
                4 => (prop::sample::select(vec![250u16, 251, 354, 220, 235, 334, 421, 450, 503, 550, 554]))
                    .prop_map(|c| format!("{c} x\r\n").into_bytes()),
                1 => replyish(),
            ],
            0..30,
        ),
        cuts in prop::collection::vec(any::<usize>(), 0..10),
        quit_early in any::<bool>(),
    ) {
        let mut conn = ClientConnection::new("client.example", 4096).unwrap();
        let mut events = conn.receive_data(b"220 hi\r\n");
        events.extend(conn.receive_data(ehlo.as_bytes()));
        let mut ids = Vec::new();
        for (i, n) in txns.iter().enumerate() {
            let rcpts: Vec<String> = (0..*n).map(|r| format!("r{r}@x.org")).collect();
            let tx = Transaction::from_raw("a@x.org", &rcpts, b".body\n").unwrap();
            if conn.submit(i as u64, tx).is_ok() {
                ids.push(i as u64);
            }
        }
        if quit_early {
            let _ = conn.quit();
        }
        let stream = server.concat();
        for piece in chunks(&stream, &cuts) {
            conn.data_to_send();
            events.extend(conn.receive_data(&piece));
        }
        events.extend(conn.receive_data(b""));
        prop_assert!(conn.is_closed());
        prop_assert!(conn.receive_data(b"250 x\r\n").is_empty());
        // Exactly one outcome per transaction, exactly one Closed, and it is last.
        let mut outcomes: Vec<u64> = events.iter().filter_map(|e| match e {
            Event::TransactionResult { txn_id, .. } | Event::TransactionAborted { txn_id, .. } => Some(*txn_id),
            _ => None,
        }).collect();
        outcomes.sort_unstable();
        prop_assert_eq!(outcomes, ids);
        let closed = events.iter().filter(|e| matches!(e, Event::Closed { .. })).count();
        prop_assert_eq!(closed, 1);
        let last_is_closed = matches!(events.last(), Some(Event::Closed { .. }));
        prop_assert!(last_is_closed);
        prop_assert_eq!(conn.in_flight(), 0);
    }
}
