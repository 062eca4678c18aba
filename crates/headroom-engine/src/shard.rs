//! `--shard i/n`: splitting the series among `n` jobs (a Kubernetes Indexed
//! Job, n cron entries) so that together they cover every series exactly
//! once. A series belongs to shard `hash(entity, metric) mod n`, with a
//! stable hash (FNV-1a 64 of `entity`, a NUL byte and `metric`): the same
//! series lands in the same shard on every machine, in every release.

use std::hash::Hasher;
use std::str::FromStr;

use headroom_core::{Fnv1a64, SeriesKey};

/// One of `count` shards, numbered from 0 (as `JOB_COMPLETION_INDEX` is).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// This shard, `0 ≤ index < count`.
    pub index: u64,
    /// How many shards there are.
    pub count: u64,
}

impl Shard {
    /// The shard that holds every series.
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// Whether `key` belongs to this shard.
    pub fn holds(&self, key: &SeriesKey) -> bool {
        let mut h = Fnv1a64::default();
        h.write(key.entity.as_bytes());
        h.write(&[0]);
        h.write(key.metric.as_bytes());
        h.finish() % self.count == self.index
    }
}

impl FromStr for Shard {
    type Err = String;

    /// `i/n`, e.g. `0/4` … `3/4`.
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?}: a shard is i/n with 0 ≤ i < n, e.g. 0/4 (the first of four)");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count) = (i.trim().parse::<u64>().map_err(|_| bad())?, n.trim().parse::<u64>().map_err(|_| bad())?);
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn n_shards_hold_every_series_exactly_once_and_roughly_evenly() {
        let keys: Vec<SeriesKey> = (0..2_000)
            .map(|i| SeriesKey {
                entity: format!("k8s/shop/deployment/app-{i}"),
                metric: ["cpu", "memory"][i % 2].into(),
            })
            .collect();
        for n in [1, 2, 3, 7] {
            let shards: Vec<Shard> = (0..n).map(|i| format!("{i}/{n}").parse().unwrap()).collect();
            let mut sizes = vec![0; n as usize];
            for k in &keys {
                let holders: Vec<_> = shards.iter().filter(|s| s.holds(k)).collect();
                assert_eq!(holders.len(), 1, "{k} in {holders:?}");
                sizes[holders[0].index as usize] += 1;
            }
            let even = keys.len() / n as usize;
            assert!(sizes.iter().all(|&s| s > even * 8 / 10 && s < even * 12 / 10), "{n}: {sizes:?}");
        }
        // Stable: the same series, the same shard, in every release.
        let k = SeriesKey { entity: "host/web-1".into(), metric: "cpu".into() };
        assert_eq!((0..4).find(|&i| Shard { index: i, count: 4 }.holds(&k)), Some(2));
    }

    #[test]
    fn bad_shards_are_refused_saying_what_a_shard_is() {
        for bad in ["", "1", "4/4", "1/0", "-1/3", "a/b"] {
            let err = bad.parse::<Shard>().unwrap_err();
            assert!(err.contains("i/n"), "{bad}: {err}");
        }
        assert_eq!("2/5".parse::<Shard>().unwrap().to_string(), "2/5");
    }
}
