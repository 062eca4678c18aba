//! Entity templates: how a result series' labels name its entity.

use std::collections::BTreeMap;

/// An entity template such as `k8s/{namespace}/{workload}`: literal text and
/// `{label}` placeholders (label names as in Prometheus: `[a-zA-Z_][a-zA-Z0-9_]*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntityTemplate {
    text: String,
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Label(String),
}

impl EntityTemplate {
    /// Parses a template; the error says what is wrong with it.
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        if text.trim().is_empty() {
            return Err("the entity template is empty".into());
        }
        let mut parts = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            match rest.find(['{', '}']) {
                None => {
                    parts.push(Part::Text(rest.to_owned()));
                    break;
                }
                Some(i) if rest.as_bytes()[i] == b'}' => {
                    return Err(format!("'}}' at byte {} has no matching '{{'", text.len() - rest.len() + i));
                }
                Some(i) => {
                    if i > 0 {
                        parts.push(Part::Text(rest[..i].to_owned()));
                    }
                    let after = &rest[i + 1..];
                    let Some(close) = after.find('}') else {
                        return Err(format!("'{{' at byte {} is not closed", text.len() - rest.len() + i));
                    };
                    let label = &after[..close];
                    if !is_label_name(label) {
                        return Err(format!(
                            "{{{label}}} is not a label name (letters, digits and '_', not starting with a digit)"
                        ));
                    }
                    parts.push(Part::Label(label.to_owned()));
                    rest = &after[close + 1..];
                }
            }
        }
        Ok(Self { text: text.to_owned(), parts })
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Fills the template from `labels`; `Err(label)` names the first missing label.
    pub fn render(&self, labels: &BTreeMap<String, String>) -> std::result::Result<String, &str> {
        let mut out = String::with_capacity(self.text.len() + 32);
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Label(l) => out.push_str(labels.get(l).ok_or(l.as_str())?),
            }
        }
        Ok(out)
    }
}

fn is_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `{a="x", b="y"}`, as Prometheus prints a label set.
pub(super) fn fmt_labels(labels: &BTreeMap<String, String>) -> String {
    let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", inner.join(", "))
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::labels;
    use super::*;

    #[test]
    fn templates_fill_labels() {
        let t = EntityTemplate::parse("k8s/{namespace}/{workload_kind}/{workload}").unwrap();
        let l = labels(&[("namespace", "shop"), ("workload_kind", "deployment"), ("workload", "cart"), ("x", "y")]);
        assert_eq!(t.render(&l).unwrap(), "k8s/shop/deployment/cart");
        let t = EntityTemplate::parse("host/{instance}").unwrap();
        assert_eq!(t.render(&labels(&[("instance", "10.0.0.1:9100")])).unwrap(), "host/10.0.0.1:9100");
        let t = EntityTemplate::parse("cluster/total").unwrap();
        assert_eq!(t.render(&BTreeMap::new()).unwrap(), "cluster/total");
        let t = EntityTemplate::parse("{__name__}").unwrap();
        assert_eq!(t.render(&labels(&[("__name__", "up")])).unwrap(), "up");
    }

    #[test]
    fn template_errors_say_what_is_wrong() {
        assert_eq!(EntityTemplate::parse("host/{instance").unwrap_err(), "'{' at byte 5 is not closed");
        assert_eq!(EntityTemplate::parse("host/instance}").unwrap_err(), "'}' at byte 13 has no matching '{'");
        assert!(EntityTemplate::parse("host/{}").unwrap_err().contains("{} is not a label name"));
        assert!(EntityTemplate::parse("host/{1a}").unwrap_err().contains("{1a} is not a label name"));
        assert!(EntityTemplate::parse("host/{a-b}").unwrap_err().contains("not a label name"));
        assert!(EntityTemplate::parse(" ").unwrap_err().contains("empty"));
        let t = EntityTemplate::parse("k8s/{namespace}/{pod}").unwrap();
        assert_eq!(t.render(&labels(&[("namespace", "shop")])), Err("pod"));
    }
}
