//! Wall-clock time as UNIX seconds, and the text forms the tool reads or writes.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Where time comes from; tests pass their own.
pub type Clock = fn() -> u64;

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The last second RFC 3339 can write (9999-12-31T23:59:59Z).
const LAST_WRITABLE: u64 = 253_402_300_799;

/// `2026-11-30T07:33:03Z`. A time past year 9999 (from a server, or a damaged store) is shown
/// as the last second of 9999 instead of ending the run.
pub fn format_utc(epoch: u64) -> String {
    let epoch = epoch.min(LAST_WRITABLE);
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(epoch)).to_string()
}

/// A duration for people: `45 s`, `12 min`, `3 h`, `2 d`.
pub fn format_span(secs: u64) -> String {
    match secs {
        0..120 => format!("{secs} s"),
        120..7200 => format!("{} min", secs / 60),
        7200..172_800 => format!("{} h", secs / 3600),
        _ => format!("{} d", secs / 86_400),
    }
}

/// Where the wall clock stood against the time since boot, which no clock setting moves:
/// two marks of one boot tell how far the wall clock was set between them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Mark {
    pub boot_id: String,
    /// Seconds since boot (suspend included).
    pub uptime: u64,
    pub wall: u64,
}

impl Mark {
    /// The mark for `wall`, if /proc tells the boot and the uptime.
    pub fn now(wall: u64) -> Option<Self> {
        let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
        let uptime = std::fs::read_to_string("/proc/uptime").ok()?;
        let uptime = uptime.split(['.', ' ']).next()?.parse().ok()?;
        Some(Self {
            boot_id: boot_id.trim().to_string(),
            uptime,
            wall,
        })
    }

    /// How far the wall clock was set (positive: forward) between `earlier` and this mark,
    /// when both are of one boot.
    pub fn clock_shift_since(&self, earlier: &Mark) -> Option<i64> {
        if self.boot_id != earlier.boot_id || self.uptime < earlier.uptime {
            return None;
        }
        let real = i64::try_from(self.uptime - earlier.uptime).ok()?;
        let wall = i64::try_from(self.wall).ok()? - i64::try_from(earlier.wall).ok()?;
        Some(wall - real)
    }
}

/// `t` moved by a signed number of seconds, within range.
pub fn shifted(t: u64, by: i64) -> u64 {
    t.saturating_add_signed(by)
}

/// Parses an HTTP date in any of the three forms RFC 9110 §5.6.7 obliges a recipient to
/// accept: IMF-fixdate, RFC 850 and asctime.
pub fn parse_http_date(text: &str) -> Option<u64> {
    let at = httpdate::parse_http_date(text.trim()).ok()?;
    at.duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absurd_times_are_shown_not_fatal() {
        assert_eq!(format_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_utc(253_402_300_800), "9999-12-31T23:59:59Z");
        assert_eq!(format_utc(u64::MAX), "9999-12-31T23:59:59Z");
    }

    #[test]
    fn formats_known_instants() {
        assert_eq!(format_utc(0), "1970-01-01T00:00:00Z");
        // `date -u -d @1796083200` prints Tue Dec  1 00:00:00 UTC 2026.
        assert_eq!(format_utc(1_796_083_200), "2026-12-01T00:00:00Z");
        assert_eq!(format_utc(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn parses_all_three_http_date_forms() {
        // RFC 9110 §5.6.7 gives these three spellings of one instant.
        for form in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
        ] {
            assert_eq!(parse_http_date(form), Some(784_111_777), "{form}");
        }
        assert_eq!(
            parse_http_date("Tue, 01 Dec 2026 00:00:00 GMT"),
            Some(1_796_083_200)
        );
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 PST"), None);
        assert_eq!(parse_http_date("yesterday"), None);
    }

    #[test]
    fn marks_of_one_boot_tell_how_far_the_clock_was_set() {
        let mark = |boot: &str, uptime, wall| Mark {
            boot_id: boot.into(),
            uptime,
            wall,
        };
        let earlier = mark("a", 1000, 5000);
        assert_eq!(mark("a", 1060, 5060).clock_shift_since(&earlier), Some(0));
        assert_eq!(
            mark("a", 1060, 5060 + 432_000).clock_shift_since(&earlier),
            Some(432_000)
        );
        assert_eq!(mark("a", 1060, 60).clock_shift_since(&earlier), Some(-5000));
        assert_eq!(mark("b", 1060, 5060).clock_shift_since(&earlier), None);
        assert!(Mark::now(5).is_some(), "/proc tells boot and uptime");
    }

    #[test]
    fn spans_read_naturally() {
        assert_eq!(format_span(45), "45 s");
        assert_eq!(format_span(600), "10 min");
        assert_eq!(format_span(3 * 3600), "3 h");
        assert_eq!(format_span(3 * 86_400), "3 d");
    }
}
