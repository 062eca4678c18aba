//! Capacity and saturation threshold per series.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::series::SeriesKey;

/// What "full" means for one series.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Limit {
    /// The value at or above which the series counts as saturated, in the series' unit
    /// (e.g. 80 for a CPU-percent series, a byte count for memory).
    pub threshold: f64,
    /// The hard capacity (cores or bytes per replica), where known; utilisation = value / capacity.
    pub capacity: Option<f64>,
    /// Current replicas, where the entity is scalable and this is known.
    pub replicas: Option<u32>,
}

impl Limit {
    /// A limit with only a saturation threshold.
    pub fn threshold(threshold: f64) -> Self {
        Self { threshold, capacity: None, replicas: None }
    }
}

/// Limits of many series, looked up by key.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    by_key: BTreeMap<SeriesKey, Limit>,
}

impl Limits {
    /// No limits.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the limit of `key`, returning the one it replaced.
    pub fn insert(&mut self, key: SeriesKey, limit: Limit) -> Option<Limit> {
        self.by_key.insert(key, limit)
    }

    /// The limit of `key`, if known.
    pub fn get(&self, key: &SeriesKey) -> Option<&Limit> {
        self.by_key.get(key)
    }

    /// Number of series with a limit.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// Whether no series has a limit.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// Every (key, limit), ordered by key.
    pub fn iter(&self) -> impl Iterator<Item = (&SeriesKey, &Limit)> {
        self.by_key.iter()
    }
}
