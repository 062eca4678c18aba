//! Reading `query_range` answers.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::entity::fmt_labels;

/// How much of an unusable answer is quoted in an error.
const SNIPPET_CHARS: usize = 200;

/// One series of a matrix answer, owned.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct PulledSeries {
    pub(super) labels: BTreeMap<String, String>,
    pub(super) ts: Vec<i64>,
    pub(super) values: Vec<f64>,
}

/// What a `query_range` answer said.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Answer {
    /// `"status":"success"` with a matrix.
    Matrix { series: Vec<PulledSeries>, warnings: Vec<String> },
    /// `"status":"error"`.
    Error { error_type: String, message: String },
}

#[derive(Deserialize)]
struct ApiAnswer<'a> {
    status: String,
    #[serde(default, borrow)]
    data: Option<ApiData<'a>>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    warnings: Vec<String>,
}

#[derive(Deserialize)]
struct ApiData<'a> {
    #[serde(rename = "resultType")]
    result_type: String,
    /// Read as a matrix: `query_range` answers nothing else.
    #[serde(borrow)]
    result: Vec<ApiSeries<'a>>,
}

#[derive(Deserialize)]
struct ApiSeries<'a> {
    metric: BTreeMap<String, String>,
    /// `[seconds, "value"]` pairs; value strings never hold escapes, so they borrow.
    #[serde(default, borrow)]
    values: Vec<(f64, &'a str)>,
}

/// A Prometheus sample value: decimal text, `NaN`, `+Inf` or `-Inf` (kept non-finite).
fn parse_value(text: &str) -> Option<f64> {
    match text {
        "NaN" => Some(f64::NAN),
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        _ => text.parse().ok(),
    }
}

/// The first characters of an answer, for error messages.
pub(super) fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut out: String = text.chars().take(SNIPPET_CHARS).map(|c| if c.is_control() { ' ' } else { c }).collect();
    if text.chars().nth(SNIPPET_CHARS).is_some() {
        out.push('…');
    }
    out
}

/// Parses a `query_range` answer. The error says what is wrong and quotes the
/// start of the body.
pub(super) fn parse_answer(body: &[u8]) -> std::result::Result<Answer, String> {
    let bad = |why: String| format!("{why}; the answer starts with {:?}", snippet(body));
    let answer: ApiAnswer<'_> =
        serde_json::from_slice(body).map_err(|e| bad(format!("not a Prometheus query_range answer ({e})")))?;
    match answer.status.as_str() {
        "success" => {}
        "error" => {
            return Ok(Answer::Error {
                error_type: answer.error_type.unwrap_or_else(|| "unknown".into()),
                message: answer.error.unwrap_or_default(),
            });
        }
        other => return Err(bad(format!("unknown status {other:?}"))),
    }
    let Some(data) = answer.data else {
        return Err(bad("a success answer without `data`".into()));
    };
    if data.result_type != "matrix" {
        return Err(bad(format!("resultType is {:?}, expected \"matrix\"", data.result_type)));
    }
    let mut series = Vec::with_capacity(data.result.len());
    for s in data.result {
        let mut ts = Vec::with_capacity(s.values.len());
        let mut values = Vec::with_capacity(s.values.len());
        for (secs, text) in s.values {
            let v = parse_value(text).ok_or_else(|| {
                bad(format!("series {} has value {text:?} at {secs}, not a number", fmt_labels(&s.metric)))
            })?;
            ts.push((secs * 1000.0).round() as i64);
            values.push(v);
        }
        series.push(PulledSeries { labels: s.metric, ts, values });
    }
    Ok(Answer::Matrix { series, warnings: answer.warnings })
}

/// [`parse_answer`] for the fuzz targets (its types stay private): the number
/// of series of a matrix answer, zero for an error answer, or why the body is
/// not an answer. Also takes the [`snippet`] every failed request quotes.
#[doc(hidden)]
pub fn parse_answer_for_fuzzing(body: &[u8]) -> std::result::Result<usize, String> {
    let _ = snippet(body);
    match parse_answer(body)? {
        Answer::Matrix { series, .. } => Ok(series.len()),
        Answer::Error { .. } => Ok(0),
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{MIN, T0, labels};
    use super::*;

    #[test]
    fn matrix_answers_are_parsed() {
        let body = br#"{"status":"success","data":{"resultType":"matrix","result":[
            {"metric":{"__name__":"x","instance":"a"},"values":[[1704067200,"0.5"],[1704067260.5,"NaN"],[1704067320,"+Inf"],[1704067380,"-Inf"],[1704067440,"1e-3"]]},
            {"metric":{"instance":"b"},"values":[]}]},"warnings":["careful"]}"#;
        let Answer::Matrix { series, warnings } = parse_answer(body).unwrap() else { panic!("not a matrix") };
        assert_eq!(warnings, vec!["careful".to_string()]);
        assert_eq!(series.len(), 2);
        assert_eq!(series[0].labels, labels(&[("__name__", "x"), ("instance", "a")]));
        assert_eq!(series[0].ts, vec![T0, T0 + 60_500, T0 + 2 * MIN, T0 + 3 * MIN, T0 + 4 * MIN]);
        let v = &series[0].values;
        assert_eq!(v[0], 0.5);
        assert!(v[1].is_nan());
        assert_eq!((v[2], v[3], v[4]), (f64::INFINITY, f64::NEG_INFINITY, 0.001));
        assert!(series[1].ts.is_empty());
        let empty = parse_answer(br#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#).unwrap();
        assert_eq!(empty, Answer::Matrix { series: vec![], warnings: vec![] });
    }

    #[test]
    fn error_answers_are_parsed() {
        let body =
            br#"{"status":"error","errorType":"bad_data","error":"1:14: parse error: unclosed left parenthesis"}"#;
        assert_eq!(
            parse_answer(body).unwrap(),
            Answer::Error {
                error_type: "bad_data".into(),
                message: "1:14: parse error: unclosed left parenthesis".into()
            }
        );
    }

    #[test]
    fn unusable_answers_quote_the_body() {
        let err = parse_answer(b"<html><body>502 Bad Gateway</body></html>").unwrap_err();
        assert!(err.contains("not a Prometheus query_range answer"), "{err}");
        assert!(err.contains("starts with \"<html><body>502 Bad Gateway"), "{err}");
        let long = format!(r#"{{"status":"success","data":{}"#, "x".repeat(1000));
        let err = parse_answer(long.as_bytes()).unwrap_err();
        assert!(err.contains('…') && err.len() < 600, "{err}");
        let err = parse_answer(br#"{"status":"success","data":{"resultType":"vector","result":[]}}"#).unwrap_err();
        assert!(err.contains("resultType is \"vector\""), "{err}");
        let err = parse_answer(
            br#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,"abc"]]}]}}"#,
        )
        .unwrap_err();
        assert!(err.contains("value \"abc\""), "{err}");
        let err = parse_answer(br#"{"status":"maybe"}"#).unwrap_err();
        assert!(err.contains("unknown status \"maybe\""), "{err}");
    }
}
