//! The cooldown table: per IP, when each category was last reported or queued. A report
//! goes through while it adds a category not reported for that IP within the window; the
//! same IP banned again and again by one jail is reported once per window.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

use crate::categories::Categories;

/// Category key of an entry that covers every category: what the cooldown recorded before
/// it knew categories (no real category has ID 0).
const ANY_CATEGORY: u8 = 0;

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Cooldown(BTreeMap<String, BTreeMap<u8, u64>>);

impl Cooldown {
    /// When the categories of this report were reported for `ip`, if all of them were
    /// within `window` seconds: the earliest such time (the first to expire). `None` means
    /// the report adds something and goes through. A time after `now` (the clock was
    /// ahead) counts as `now`.
    pub fn covered_since(
        &self,
        ip: &str,
        categories: &Categories,
        now: u64,
        window: u64,
    ) -> Option<u64> {
        let seen = self.0.get(ip)?;
        let live = |at: &u64| now.saturating_sub(*at) < window;
        let any = seen.get(&ANY_CATEGORY).filter(|at| live(at)).copied();
        categories
            .ids()
            .iter()
            .map(|id| {
                let own = seen.get(id).filter(|at| live(at)).copied();
                match (own, any) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    (a, b) => a.or(b),
                }
            })
            .try_fold(u64::MAX, |earliest, at| Some(earliest.min(at?.min(now))))
    }

    /// Records the report's categories for `ip` at `now` and forgets what has expired.
    pub fn note(&mut self, ip: &str, categories: &Categories, now: u64, window: u64) {
        self.prune(now, window);
        if window == 0 {
            return;
        }
        let seen = self.0.entry(ip.to_string()).or_default();
        for id in categories.ids() {
            seen.insert(*id, now);
        }
    }

    /// IPs with at least one category still in the window.
    pub fn entries(&self, now: u64, window: u64) -> usize {
        self.0
            .values()
            .filter(|seen| seen.values().any(|at| now.saturating_sub(*at) < window))
            .count()
    }

    /// Moves every stamp by `by` seconds (the clock was set).
    pub fn shift(&mut self, by: i64) {
        for seen in self.0.values_mut() {
            for at in seen.values_mut() {
                *at = crate::clock::shifted(*at, by);
            }
        }
    }

    /// Brings stamps after `now` back to `now`; whether there were any.
    pub fn clamp_future(&mut self, now: u64) -> bool {
        let mut clamped = false;
        for seen in self.0.values_mut() {
            for at in seen.values_mut().filter(|at| **at > now) {
                *at = now;
                clamped = true;
            }
        }
        clamped
    }

    /// Drops what has expired, and brings times stamped in the future (a clock that was
    /// ahead) back to `now`, so they cannot hold for longer than one window.
    fn prune(&mut self, now: u64, window: u64) {
        for seen in self.0.values_mut() {
            for at in seen.values_mut() {
                *at = (*at).min(now);
            }
            seen.retain(|_, at| now.saturating_sub(*at) < window);
        }
        self.0.retain(|_, seen| !seen.is_empty());
    }
}

/// Reads both forms: `{"ip": {"18": t, …}}`, and the older `{"ip": t}` (the IP as a whole),
/// which becomes an entry that covers every category until it expires.
impl<'de> Deserialize<'de> for Cooldown {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Stored {
            // Keys as text: an untagged enum sees JSON object keys only as strings.
            Categories(BTreeMap<String, u64>),
            WholeIp(u64),
        }
        let stored = BTreeMap::<String, Stored>::deserialize(de)?;
        Ok(Self(
            stored
                .into_iter()
                .map(|(ip, entry)| {
                    let seen = match entry {
                        Stored::Categories(seen) => seen
                            .into_iter()
                            .filter_map(|(id, at)| Some((id.parse().ok()?, at)))
                            .collect(),
                        Stored::WholeIp(at) => BTreeMap::from([(ANY_CATEGORY, at)]),
                    };
                    (ip, seen)
                })
                .collect(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cats(list: &str) -> Categories {
        Categories::parse(list).unwrap()
    }

    const DAY: u64 = 86_400;

    #[test]
    fn the_same_categories_wait_and_new_ones_go_through() {
        let mut table = Cooldown::default();
        table.note("45.1.1.1", &cats("18,22"), 1000, DAY);
        assert_eq!(
            table.covered_since("45.1.1.1", &cats("22,18"), 5000, DAY),
            Some(1000)
        );
        assert_eq!(
            table.covered_since("45.1.1.1", &cats("18"), 5000, DAY),
            Some(1000)
        );
        // recidive adds 15: reported again.
        assert_eq!(
            table.covered_since("45.1.1.1", &cats("15,18"), 5000, DAY),
            None
        );
        assert_eq!(
            table.covered_since("45.9.9.9", &cats("18"), 5000, DAY),
            None
        );
        assert_eq!(
            table.covered_since("45.1.1.1", &cats("18"), 1000 + DAY, DAY),
            None
        );
        table.note("45.1.1.1", &cats("15"), 6000, DAY);
        assert_eq!(
            table.covered_since("45.1.1.1", &cats("15,18"), 7000, DAY),
            Some(1000)
        );
        assert_eq!(table.entries(7000, DAY), 1);
    }

    #[test]
    fn old_whole_ip_entries_are_read_and_cover_every_category() {
        let table: Cooldown =
            serde_json::from_str(r#"{"45.1.1.1":1000,"45.2.2.2":{"18":1200}}"#).unwrap();
        assert_eq!(
            table.covered_since("45.1.1.1", &cats("15,18"), 1500, 900),
            Some(1000)
        );
        assert_eq!(
            table.covered_since("45.1.1.1", &cats("15"), 1900, 900),
            None
        );
        assert_eq!(
            table.covered_since("45.2.2.2", &cats("18"), 1300, 900),
            Some(1200)
        );
        let mut table = table;
        table.note("45.3.3.3", &cats("18"), 1500, 900);
        assert_eq!(
            serde_json::to_string(&table).unwrap(),
            r#"{"45.1.1.1":{"0":1000},"45.2.2.2":{"18":1200},"45.3.3.3":{"18":1500}}"#
        );
    }

    #[test]
    fn a_time_from_a_clock_that_was_ahead_holds_one_window_at_most() {
        let mut table = Cooldown::default();
        table.note("45.1.1.1", &cats("18"), 1000 + 30 * DAY, DAY);
        assert_eq!(
            table.covered_since("45.1.1.1", &cats("18"), 1000, DAY),
            Some(1000)
        );
        table.note("45.2.2.2", &cats("18"), 1000, DAY);
        assert_eq!(
            table.covered_since("45.1.1.1", &cats("18"), 1000 + DAY, DAY),
            None
        );
    }

    #[test]
    fn a_zero_window_keeps_nothing() {
        let mut table = Cooldown::default();
        table.note("45.1.1.1", &cats("18"), 1000, 0);
        assert_eq!(table.covered_since("45.1.1.1", &cats("18"), 1000, 0), None);
        assert_eq!(table, Cooldown::default());
    }
}
