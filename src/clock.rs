//! Wall-clock time as UNIX seconds, and the text forms the tool reads or writes.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Where time comes from; tests pass their own.
pub type Clock = fn() -> u64;

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `2026-11-30T07:33:03Z`
pub fn format_utc(epoch: u64) -> String {
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
    fn spans_read_naturally() {
        assert_eq!(format_span(45), "45 s");
        assert_eq!(format_span(600), "10 min");
        assert_eq!(format_span(3 * 3600), "3 h");
        assert_eq!(format_span(3 * 86_400), "3 d");
    }
}
