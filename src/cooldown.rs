//! The cooldown decision: a report goes through while it adds a category not reported for
//! its IP within the window; the same IP banned again and again by one jail is reported
//! once per window. The table itself lives in the store; this is the pure rule over one
//! IP's rows.

use crate::categories::Categories;

/// Category key of an entry that covers every category: what 0.1's cooldown recorded before
/// it knew categories (no real category has ID 0).
pub const ANY_CATEGORY: u8 = 0;

/// One IP's cooldown rows: category and when it was reported or queued (UNIX seconds).
pub type Seen = Vec<(u8, u64)>;

/// When the categories of this report were reported for the IP, if all of them were within
/// `window` seconds: the earliest such time (the first to expire). `None` means the report
/// adds something and goes through. A time after `now` (the clock was ahead) counts as
/// `now`.
pub fn covered_since(
    seen: &[(u8, u64)],
    categories: &Categories,
    now: u64,
    window: u64,
) -> Option<u64> {
    let live = |at: u64| now.saturating_sub(at) < window;
    let latest = |id: u8| {
        seen.iter()
            .filter(|(category, at)| *category == id && live(*at))
            .map(|(_, at)| *at)
            .max()
    };
    let any = latest(ANY_CATEGORY);
    categories
        .ids()
        .iter()
        .map(|id| match (latest(*id), any) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        })
        .try_fold(u64::MAX, |earliest, at| Some(earliest.min(at?.min(now))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cats(list: &str) -> Categories {
        Categories::parse(list).unwrap()
    }

    const DAY: u64 = 86_400;

    #[test]
    fn the_decision_table() {
        let seen: Seen = vec![(18, 1000), (22, 1000), (15, 6000)];
        let whole_ip: Seen = vec![(ANY_CATEGORY, 1000), (18, 1200)];
        // (rows, categories, now, window, expected)
        let cases: &[(&Seen, &str, u64, u64, Option<u64>)] = &[
            (&seen, "22,18", 5000, DAY, Some(1000)),
            (&seen, "18", 5000, DAY, Some(1000)),
            (&seen, "15,18", 7000, DAY, Some(1000)),
            // recidive adds 13: reported again.
            (&seen, "13,18", 5000, DAY, None),
            (&vec![], "18", 5000, DAY, None),
            // The window has passed.
            (&seen, "18", 1000 + DAY, DAY, None),
            // A zero window keeps nothing.
            (&seen, "18", 1000, 0, None),
            // A 0.1 whole-IP entry covers every category until it expires.
            (&whole_ip, "15,18", 1500, 900, Some(1000)),
            (&whole_ip, "15", 1950, 900, None),
            (&whole_ip, "18", 1950, 900, Some(1200)),
            // A stamp from a clock that was ahead counts as now.
            (&vec![(18, 1000 + 30 * DAY)], "18", 1000, DAY, Some(1000)),
        ];
        for (rows, categories, now, window, expected) in cases {
            assert_eq!(
                covered_since(rows, &cats(categories), *now, *window),
                *expected,
                "{rows:?} {categories} at {now} window {window}"
            );
        }
    }
}
