//! The limits file: `entity,metric,threshold` per row, optionally `capacity`
//! and `replicas`, into [`Limits`].

use std::path::Path;

use headroom_core::{Limit, Limits, SeriesKey};

use crate::error::{Error, Result};

/// Reads a limits CSV. Every bad row is an error naming the file, row, column
/// and value; a series listed twice is an error naming both rows.
pub fn read_limits(path: &Path) -> Result<Limits> {
    let file = std::fs::File::open(path).map_err(Error::io(path))?;
    limits_from(path, file)
}

/// [`read_limits`] on contents already in memory (`path` names them in
/// errors). For the fuzz targets.
#[doc(hidden)]
pub fn parse_limits(path: &Path, bytes: &[u8]) -> Result<Limits> {
    limits_from(path, bytes)
}

fn limits_from(path: &Path, file: impl std::io::Read) -> Result<Limits> {
    let mut reader = csv::ReaderBuilder::new().has_headers(true).from_reader(file);
    let csv_err = |e: csv::Error| {
        let row = e.position().map_or(0, |p| p.record() as usize);
        Error::File { path: path.into(), why: format!("row {row}: {e}") }
    };
    let header: Vec<String> = reader.headers().map_err(csv_err)?.iter().map(|h| h.trim().to_owned()).collect();
    let find = |name: &str| header.iter().position(|h| h == name);
    let (Some(entity), Some(metric), Some(threshold)) = (find("entity"), find("metric"), find("threshold")) else {
        return Err(Error::File {
            path: path.into(),
            why: format!("a limits file needs columns entity, metric, threshold (columns: {})", header.join(", ")),
        });
    };
    let (capacity, replicas) = (find("capacity"), find("replicas"));
    if let Some(extra) =
        header.iter().find(|h| !["entity", "metric", "threshold", "capacity", "replicas"].contains(&h.as_str()))
    {
        return Err(Error::File {
            path: path.into(),
            why: format!("unexpected column {extra:?}; columns are entity, metric, threshold[, capacity, replicas]"),
        });
    }

    let mut limits = Limits::new();
    let mut first_row = std::collections::HashMap::new();
    for (i, record) in reader.records().enumerate() {
        let record = record.map_err(csv_err)?;
        let row = i + 1;
        let bad = |column: &str, value: &str, why: &str| Error::Parse {
            path: path.into(),
            row,
            column: column.into(),
            value: value.into(),
            why: why.into(),
        };
        let key = SeriesKey::new(record[entity].trim(), record[metric].trim())
            .map_err(|e| bad("entity/metric", &format!("{}/{}", &record[entity], &record[metric]), &e.to_string()))?;
        let positive = |column: &str, cell: &str| -> Result<f64> {
            match cell.trim().parse::<f64>() {
                Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
                Ok(_) => Err(bad(column, cell, "must be a positive finite number")),
                Err(_) => Err(bad(column, cell, "not a number")),
            }
        };
        let mut limit = Limit::threshold(positive("threshold", &record[threshold])?);
        if let Some(c) = capacity.filter(|&c| !record[c].trim().is_empty()) {
            limit.capacity = Some(positive("capacity", &record[c])?);
        }
        if let Some(c) = replicas.filter(|&c| !record[c].trim().is_empty()) {
            limit.replicas =
                Some(record[c].trim().parse().map_err(|_| bad("replicas", &record[c], "not a whole number"))?);
        }
        if let Some(prev) = first_row.insert(key.clone(), row) {
            return Err(bad("entity/metric", &key.to_string(), &format!("listed twice (first at row {prev})")));
        }
        limits.insert(key, limit);
    }
    Ok(limits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<Limits> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("limits.csv");
        std::fs::write(&p, text).unwrap();
        read_limits(&p)
    }

    #[test]
    fn reads_thresholds_and_optional_capacity() {
        let l = read("entity,metric,threshold,capacity,replicas\nnab/x,cpu_pct,80,,\nk8s/a/deployment/b,cpu,1.6,2,3\n")
            .unwrap();
        assert_eq!(l.len(), 2);
        let k = SeriesKey::new("k8s/a/deployment/b", "cpu").unwrap();
        assert_eq!(l.get(&k), Some(&Limit { threshold: 1.6, capacity: Some(2.0), replicas: Some(3) }));
        assert_eq!(l.get(&SeriesKey::new("nab/x", "cpu_pct").unwrap()), Some(&Limit::threshold(80.0)));
    }

    #[test]
    fn the_shipped_limits_file_reads() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/sample/limits.csv");
        assert_eq!(read_limits(&p).unwrap().len(), 157);
    }

    #[test]
    fn bad_rows_are_named() {
        let e = read("entity,metric\na,b\n").unwrap_err().to_string();
        assert!(e.contains("needs columns entity, metric, threshold"), "{e}");
        let e = read("entity,metric,threshold\na,cpu,80\nb,cpu,high\n").unwrap_err().to_string();
        assert!(e.ends_with("row 2, column \"threshold\": not a number (value \"high\")"), "{e}");
        let e = read("entity,metric,threshold\na,cpu,-1\n").unwrap_err().to_string();
        assert!(e.contains("positive"), "{e}");
        let e = read("entity,metric,threshold\na,cpu,80\na,cpu,90\n").unwrap_err().to_string();
        assert!(e.contains("row 2") && e.contains("listed twice (first at row 1)"), "{e}");
        let e = read("entity,metric,threshold,owner\na,cpu,80,me\n").unwrap_err().to_string();
        assert!(e.contains("unexpected column \"owner\""), "{e}");
    }
}
