//! The wall clock, for the Date of a message built without one: the current second and the
//! local time zone's UTC offset at it, as `email.utils.formatdate(localtime=True)` showed
//! them when Python made the Date (about 23 µs a message; this is a cached lookup).
//!
//! The local zone is jiff's system time zone: the `TZ` environment variable, else
//! `/etc/localtime` (the zone database on Windows), the sources the C library's
//! `localtime_r` reads for Python; jiff caches it and looks again after a few seconds.
//! The offset is looked up once per second and shared by every message of that second.

use std::sync::Mutex;

use jiff::tz::TimeZone;
use jiff::Timestamp;

use crate::mime::DateSpec;

/// The second last looked up and the local UTC offset then (seconds east of UTC).
static LAST: Mutex<Option<(i64, i32)>> = Mutex::new(None);

/// Now, in the local time zone.
pub(crate) fn now() -> DateSpec {
    let now = Timestamp::now();
    let unix = now.as_second();
    let mut last = LAST.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let offset_seconds = match *last {
        Some((second, offset)) if second == unix => offset,
        _ => {
            let offset = TimeZone::system().to_offset(now).seconds();
            *last = Some((unix, offset));
            offset
        }
    };
    DateSpec::At {
        unix,
        offset_seconds,
    }
}
