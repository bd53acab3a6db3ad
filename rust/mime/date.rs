//! The Date header's value: an RFC 5322 date-time the caller wrote, checked and written
//! again in canonical form, or an instant and the UTC offset to show it in.
//!
//! RFC 5322 3.3: `date-time = [ day-of-week "," ] date time [CFWS]`, with
//! `date = day month year`, `time = time-of-day zone`, `zone = (FWS ( "+" / "-" ) 4DIGIT)`;
//! "the day-of-week (if included) MUST be the day implied by the date", the year "MUST be
//! 1900 or later", and obsolete forms (named zones such as `GMT` or `EST`, two-digit years,
//! a trailing comment) are read but "MUST NOT be generated" (RFC 5322 4), so every date is
//! written as `Thu, 01 Jan 2026 00:00:00 +0000` (a two-digit day, as Python's `email.utils`
//! and most mail software write it). Parsing is jiff's RFC 2822 support (RFC 5322 keeps
//! RFC 2822's date-time syntax).
//!
//! The core has no clock: "now" is the caller's instant (the Python binding reads the
//! clock and the local time zone).

use jiff::civil::DateTime;
use jiff::fmt::rfc2822;
use jiff::tz::Offset;
use jiff::Timestamp;

/// A message's date, as the caller gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DateSpec {
    /// An RFC 5322 date-time, checked and written in canonical form.
    Text(String),
    /// An instant (seconds since the Unix epoch), shown at `offset_seconds` from UTC
    /// (a zone offset is whole minutes: seconds beyond are dropped).
    At {
        /// Seconds since 1970-01-01T00:00:00Z.
        unix: i64,
        /// The UTC offset the date is written in, e.g. 3600 for `+0100`.
        offset_seconds: i32,
    },
}

/// RFC 5322 3.3: the year "MUST be 1900 or later".
const MIN_YEAR: i16 = 1900;

/// The Date header value for `spec`, or why it cannot be one.
pub fn header_value(spec: &DateSpec) -> Result<String, String> {
    let (wall, offset) = match spec {
        DateSpec::Text(text) => {
            let zoned = rfc2822::parse(text.trim())
                .map_err(|e| format!("invalid date {text:?}: not an RFC 5322 date-time ({e})"))?;
            (zoned.datetime(), zoned.offset())
        }
        DateSpec::At {
            unix,
            offset_seconds,
        } => {
            let at = Timestamp::from_second(*unix).map_err(|e| format!("invalid date: {e}"))?;
            let offset = Offset::from_seconds(offset_seconds / 60 * 60)
                .map_err(|e| format!("invalid UTC offset {offset_seconds} s: {e}"))?;
            (offset.to_datetime(at), offset)
        }
    };
    if wall.year() < MIN_YEAR {
        return Err(format!(
            "invalid date: the year {} is before 1900 (RFC 5322 3.3)",
            wall.year()
        ));
    }
    Ok(canonical(wall, offset))
}

const WEEKDAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `Thu, 01 Jan 2026 00:00:00 +0000`: RFC 5322 3.3 without its optional or obsolete parts.
/// Written digit by digit: `format!` took most of a microsecond, the header's whole cost.
fn canonical(wall: DateTime, offset: Offset) -> String {
    fn two(out: &mut String, n: i32) {
        out.push(char::from(b'0' + (n / 10 % 10) as u8));
        out.push(char::from(b'0' + (n % 10) as u8));
    }
    let mut out = String::with_capacity(31);
    out.push_str(WEEKDAYS[usize::from(wall.weekday().to_monday_zero_offset().unsigned_abs())]);
    out.push_str(", ");
    two(&mut out, wall.day().into());
    out.push(' ');
    out.push_str(MONTHS[usize::from(wall.month().unsigned_abs()) - 1]);
    out.push(' ');
    let year = i32::from(wall.year());
    two(&mut out, year / 100);
    two(&mut out, year % 100);
    out.push(' ');
    two(&mut out, wall.hour().into());
    out.push(':');
    two(&mut out, wall.minute().into());
    out.push(':');
    two(&mut out, wall.second().into());
    let minutes = offset.seconds() / 60;
    out.push_str(if minutes < 0 { " -" } else { " +" });
    two(&mut out, minutes.abs() / 60);
    two(&mut out, minutes.abs() % 60);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Result<String, String> {
        header_value(&DateSpec::Text(s.to_owned()))
    }

    #[test]
    fn canonical_forms() {
        for (input, want) in [
            (
                "Thu, 01 Jan 2026 00:00:00 +0000",
                "Thu, 01 Jan 2026 00:00:00 +0000",
            ),
            (
                "  01 Jan 2026 00:00 +0000 ",
                "Thu, 01 Jan 2026 00:00:00 +0000",
            ),
            (
                "Mon, 01 Jan 2024 10:00:00 GMT",
                "Mon, 01 Jan 2024 10:00:00 +0000",
            ),
            (
                "Sat, 13 Jul 2024 15:09:59 EDT",
                "Sat, 13 Jul 2024 15:09:59 -0400",
            ),
            (
                "Sat, 13 Jul 2024 15:09:59 +0530 (IST)",
                "Sat, 13 Jul 2024 15:09:59 +0530",
            ),
            (
                "mon, 01 jan 2024 10:00:00 +0000",
                "Mon, 01 Jan 2024 10:00:00 +0000",
            ),
        ] {
            assert_eq!(text(input).as_deref(), Ok(want), "{input:?}");
        }
    }

    #[test]
    fn refused() {
        for input in [
            "",
            "   ",
            "Montag, 1. März 2024",
            "2024-01-01T10:00:00Z",
            "Tue, 01 Jan 2024 10:00:00 +0000", // 1 Jan 2024 was a Monday
            "Mon, 32 Jan 2024 10:00:00 +0000",
            "Thu, 29 Feb 2023 10:00:00 +0000",
            "Mon, 01 Jan 2024 24:00:00 +0000",
            "Mon, 01 Jan 2024 10:60:00 +0000",
            "Mon, 01 Jan 2024 10:00:00",
            "Mon, 01 Jan 2024 10:00:00 +0000 trailing",
            "Mon, 01 Jan 2024 10:00:00 +0075",
            "Fri, 01 Jan 1800 10:00:00 +0000",
        ] {
            assert!(text(input).is_err(), "accepted {input:?}");
        }
        assert!(text("Thu, 29 Feb 2024 10:00:00 +0000").is_ok()); // a leap day
    }

    #[test]
    fn instants() {
        for (unix, offset, want) in [
            (1_767_225_600, 0, "Thu, 01 Jan 2026 00:00:00 +0000"),
            (1_767_225_600, 3600, "Thu, 01 Jan 2026 01:00:00 +0100"),
            (
                1_767_225_600,
                -(5 * 3600 + 30 * 60),
                "Wed, 31 Dec 2025 18:30:00 -0530",
            ),
            (
                1_767_225_600,
                19_800 + 17,
                "Thu, 01 Jan 2026 05:30:00 +0530",
            ),
        ] {
            let got = header_value(&DateSpec::At {
                unix,
                offset_seconds: offset,
            });
            assert_eq!(got.as_deref(), Ok(want), "{unix} {offset}");
        }
        assert!(header_value(&DateSpec::At {
            unix: -2_300_000_000,
            offset_seconds: 0
        })
        .is_err());
    }
}
