//! The daemon's logs in the Windows Event Log, as plain functions and a
//! `tracing` layer generic over where the events go.
//!
//! * **Levels** ([`event_type`]): `ERROR` → Error, `WARN` → Warning, `INFO`
//!   → Information. `DEBUG` and `TRACE` are **not** written: the Event Log is
//!   the operators' record, shared with every other service, and a debug
//!   filter left on would flood it; read debug output from a console run
//!   (`headroom run`) instead.
//! * **Text** ([`message`]): one line, `message key=value … (module)`, with
//!   the fields of the event and of the spans it is in (outermost first), so
//!   `target`, `decision_id`, `action`, `outcome` stay readable in Event
//!   Viewer and searchable with its filter.
//! * **Layer** ([`EventLogLayer`]) over a [`Sink`]: the Windows sink
//!   (`windows::EventLogSink`) calls `ReportEvent`; tests use an in-memory one.
//! * **Source registration** ([`source_key`], [`source_values`]): the
//!   registry key install creates under [`EVENTLOG_KEY_PARENT`], whose
//!   `EventMessageFile` is Windows' own `EventCreate.exe`: its message table
//!   holds, for every event id 1–1000, a template that shows the inserted
//!   string as it is, so no message DLL of headroom's is needed (without a
//!   registered message file, Event Viewer prefixes every event with "The
//!   description for Event ID … cannot be found").

use std::fmt;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// The registry key, under `HKEY_LOCAL_MACHINE`, holding the event sources
/// of the Application log.
pub const EVENTLOG_KEY_PARENT: &str = r"SYSTEM\CurrentControlSet\Services\EventLog\Application";

/// The message file install registers: Windows' `EventCreate.exe`, whose
/// message table echoes the inserted string for event ids 1–1000.
pub const EVENT_MESSAGE_FILE: &str = r"%SystemRoot%\System32\EventCreate.exe";

/// `TypesSupported`: error (1) | warning (2) | information (4).
pub const TYPES_SUPPORTED: u32 = 7;

/// The longest string `ReportEvent` takes, in UTF-16 units; longer texts are
/// cut ([`message`]).
pub const MAX_EVENT_CHARS: usize = 31_839;

/// What ends a text [`message`] had to cut.
pub const TRUNCATED: &str = " … [truncated]";

/// The type of an Event Log entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    /// `EVENTLOG_ERROR_TYPE`.
    Error,
    /// `EVENTLOG_WARNING_TYPE`.
    Warning,
    /// `EVENTLOG_INFORMATION_TYPE`.
    Information,
}

/// The Event Log type of a `tracing` level: ERROR → Error, WARN → Warning,
/// INFO → Information; DEBUG and TRACE → `None`, not written (see the module
/// docs).
pub fn event_type(level: &Level) -> Option<EventType> {
    match *level {
        Level::ERROR => Some(EventType::Error),
        Level::WARN => Some(EventType::Warning),
        Level::INFO => Some(EventType::Information),
        _ => None,
    }
}

/// The event id written with each type: information 1, warning 2, error 3
/// (all within the 1–1000 `EventCreate.exe` has templates for), so Event
/// Viewer can filter on it too.
pub fn event_id(kind: EventType) -> u32 {
    match kind {
        EventType::Information => 1,
        EventType::Warning => 2,
        EventType::Error => 3,
    }
}

/// A field value as it appears after `key=`: as it is, or quoted (with `"`
/// and `\` escaped, newlines shown as `\n`) when empty or containing
/// whitespace, `"` or `=`.
fn value_text(value: &str) -> String {
    if !value.is_empty() && !value.chars().any(|c| c.is_whitespace() || c == '"' || c == '=') {
        return value.to_owned();
    }
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn cut_utf16(s: &str, max: usize) -> &str {
    let mut units = 0;
    for (i, c) in s.char_indices() {
        units += c.len_utf16();
        if units > max {
            return &s[..i];
        }
    }
    s
}

/// The text of one event: `message key=value key="two words" … (module)`.
/// Fields keep their order; the module (the event's `tracing` target) comes
/// last, in parentheses, when not empty. A text longer than
/// [`MAX_EVENT_CHARS`] is cut in its message, so the fields are kept, and
/// ends with [`TRUNCATED`].
pub fn message(target_module: &str, fields: &[(String, String)], message: &str) -> String {
    let mut tail = String::new();
    for (key, value) in fields {
        tail.push(' ');
        tail.push_str(key);
        tail.push('=');
        tail.push_str(&value_text(value));
    }
    if !target_module.is_empty() {
        tail.push_str(" (");
        tail.push_str(target_module);
        tail.push(')');
    }
    let message = message.trim();
    let tail_len = tail.encode_utf16().count();
    let text = if message.is_empty() { tail.trim_start().to_owned() } else { format!("{message}{tail}") };
    if text.encode_utf16().count() <= MAX_EVENT_CHARS {
        return text;
    }
    let marker_len = TRUNCATED.encode_utf16().count();
    match MAX_EVENT_CHARS.checked_sub(tail_len + marker_len) {
        Some(room) if room > 0 && !message.is_empty() => format!("{}{TRUNCATED}{tail}", cut_utf16(message, room)),
        _ => format!("{}{TRUNCATED}", cut_utf16(&text, MAX_EVENT_CHARS - marker_len)),
    }
}

/// Where [`EventLogLayer`] sends each event.
pub trait Sink: Send + Sync + 'static {
    /// Writes one event of type `kind` with text `text`. Errors are dropped:
    /// a logger has nowhere to report its own failure.
    fn report(&self, kind: EventType, text: &str);
}

/// Collects a span's or an event's fields; the `message` field apart.
#[derive(Debug, Default)]
struct Fields {
    fields: Vec<(String, String)>,
    message: Option<String>,
}

impl Fields {
    fn set(&mut self, field: &Field, value: String) {
        if field.name() == "message" {
            self.message = Some(value);
        } else if let Some(slot) = self.fields.iter_mut().find(|(k, _)| k == field.name()) {
            slot.1 = value;
        } else {
            self.fields.push((field.name().to_owned(), value));
        }
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.set(field, value.to_owned());
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.set(field, value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.set(field, format!("{value:?}"));
    }
}

/// The fields of a span, kept in its extensions for the events inside it.
#[derive(Debug)]
struct SpanFields(Vec<(String, String)>);

/// A `tracing_subscriber` layer writing INFO, WARN and ERROR events to a
/// [`Sink`] as [`message`] texts (see the module docs).
pub struct EventLogLayer<S: Sink> {
    sink: S,
}

impl<S: Sink> EventLogLayer<S> {
    /// A layer writing to `sink`.
    pub fn new(sink: S) -> Self {
        Self { sink }
    }

    /// The sink.
    pub fn sink(&self) -> &S {
        &self.sink
    }
}

impl<S: Sink> fmt::Debug for EventLogLayer<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventLogLayer").finish_non_exhaustive()
    }
}

impl<S: Sink, C> Layer<C> for EventLogLayer<S>
where
    C: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, C>) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanFields(fields.fields));
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, C>) {
        let Some(span) = ctx.span(id) else { return };
        let mut extensions = span.extensions_mut();
        if let Some(SpanFields(kept)) = extensions.get_mut::<SpanFields>() {
            let mut fields = Fields { fields: std::mem::take(kept), message: None };
            values.record(&mut fields);
            *kept = fields.fields;
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, C>) {
        let metadata = event.metadata();
        let Some(kind) = event_type(metadata.level()) else { return };
        let mut all = Fields::default();
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(SpanFields(kept)) = span.extensions().get::<SpanFields>() {
                    all.fields.extend(kept.iter().cloned());
                }
            }
        }
        let mut own = Fields::default();
        event.record(&mut own);
        all.fields.extend(own.fields);
        let text = message(metadata.target(), &all.fields, own.message.as_deref().unwrap_or(""));
        self.sink.report(kind, &text);
    }
}

/// A registry value of the Event Log source key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegValue {
    /// `REG_EXPAND_SZ`: a string with `%VARIABLES%` expanded when read.
    ExpandSz(String),
    /// `REG_DWORD`.
    Dword(u32),
}

impl fmt::Display for RegValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegValue::ExpandSz(s) => write!(f, "(REG_EXPAND_SZ) {s}"),
            RegValue::Dword(n) => write!(f, "(REG_DWORD) {n}"),
        }
    }
}

/// The source's key, relative to `HKEY_LOCAL_MACHINE`.
pub fn source_key(name: &str) -> String {
    format!(r"{EVENTLOG_KEY_PARENT}\{name}")
}

/// The source's key as people write it: `HKLM\SYSTEM\…\Application\<name>`.
pub fn source_key_display(name: &str) -> String {
    format!(r"HKLM\{}", source_key(name))
}

/// The values install writes in the source's key: `EventMessageFile` =
/// `message_file` (install passes [`EVENT_MESSAGE_FILE`]) and
/// `TypesSupported` = [`TYPES_SUPPORTED`].
pub fn source_values(message_file: &str) -> Vec<(&'static str, RegValue)> {
    vec![
        ("EventMessageFile", RegValue::ExpandSz(message_file.to_owned())),
        ("TypesSupported", RegValue::Dword(TYPES_SUPPORTED)),
    ]
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    #[derive(Debug, Clone, Default)]
    struct Memory(Arc<Mutex<Vec<(EventType, String)>>>);

    impl Sink for Memory {
        fn report(&self, kind: EventType, text: &str) {
            self.0.lock().expect("lock").push((kind, text.to_owned()));
        }
    }

    impl Memory {
        fn take(&self) -> Vec<(EventType, String)> {
            std::mem::take(&mut *self.0.lock().expect("lock"))
        }
    }

    fn with_layer(f: impl FnOnce()) -> Vec<(EventType, String)> {
        let sink = Memory::default();
        let subscriber = tracing_subscriber::registry().with(EventLogLayer::new(sink.clone()));
        tracing::subscriber::with_default(subscriber, f);
        sink.take()
    }

    fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn levels_map_to_event_types() {
        assert_eq!(event_type(&Level::ERROR), Some(EventType::Error));
        assert_eq!(event_type(&Level::WARN), Some(EventType::Warning));
        assert_eq!(event_type(&Level::INFO), Some(EventType::Information));
        assert_eq!(event_type(&Level::DEBUG), None);
        assert_eq!(event_type(&Level::TRACE), None);
        assert_eq!(
            [EventType::Information, EventType::Warning, EventType::Error].map(event_id),
            [1, 2, 3],
            "ids EventCreate.exe has templates for (1-1000)"
        );
    }

    #[test]
    fn message_reads_as_text_then_fields_then_module() {
        let text = message(
            "headroom_daemon::jobs",
            &kv(&[("target", "web"), ("decision_id", "d-1"), ("action", "restart"), ("outcome", "timed out")]),
            "action failed",
        );
        assert_eq!(
            text,
            r#"action failed target=web decision_id=d-1 action=restart outcome="timed out" (headroom_daemon::jobs)"#
        );
        assert_eq!(message("", &kv(&[("a", "1")]), ""), "a=1");
        assert_eq!(message("m", &[], "  just text \n"), "just text (m)");
        assert_eq!(
            message("", &kv(&[("why", "say \"no\"\nnow"), ("empty", ""), ("eq", "a=b")]), "x"),
            r#"x why="say \"no\"\nnow" empty="" eq="a=b""#
        );
    }

    #[test]
    fn a_long_message_is_cut_but_keeps_its_fields() {
        let long = "é".repeat(40_000);
        let text = message("mod", &kv(&[("decision_id", "d-9")]), &long);
        assert!(text.encode_utf16().count() <= MAX_EVENT_CHARS);
        assert!(text.ends_with(&format!("{TRUNCATED} decision_id=d-9 (mod)")), "{}", &text[text.len() - 60..]);
        let huge_field = kv(&[("blob", &"x".repeat(40_000))]);
        let text = message("mod", &huge_field, "m");
        assert!(text.encode_utf16().count() <= MAX_EVENT_CHARS);
        assert!(text.starts_with("m blob=") && text.ends_with(TRUNCATED));
    }

    #[test]
    fn the_layer_writes_warnings_with_their_fields() {
        let got = with_layer(|| {
            tracing::warn!(target = "x", decision_id = "d-1", "restart refused");
        });
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, EventType::Warning);
        assert!(got[0].1.starts_with("restart refused target=x decision_id=d-1 ("), "{}", got[0].1);
        assert!(got[0].1.ends_with("(headroom_service::eventlog::tests)"), "{}", got[0].1);
    }

    #[test]
    fn the_layer_maps_each_level_and_skips_debug() {
        let got = with_layer(|| {
            tracing::error!("e");
            tracing::warn!("w");
            tracing::info!(count = 3, ratio = 0.5, ok = true, "i {}", "formatted");
            tracing::debug!("d");
            tracing::trace!("t");
        });
        let kinds: Vec<_> = got.iter().map(|(k, _)| *k).collect();
        assert_eq!(kinds, [EventType::Error, EventType::Warning, EventType::Information]);
        assert!(got[2].1.starts_with("i formatted count=3 ratio=0.5 ok=true ("), "{}", got[2].1);
    }

    #[test]
    fn the_layer_keeps_the_fields_of_enclosing_spans() {
        let got = with_layer(|| {
            let outer = tracing::info_span!("apply", target = "web", decision = tracing::field::Empty);
            let _o = outer.enter();
            outer.record("decision", "d-7");
            let inner = tracing::info_span!("restart", service = "W3SVC");
            let _i = inner.enter();
            let e = std::io::Error::other("denied");
            tracing::error!(error = &e as &(dyn std::error::Error + 'static), outcome = %"failed", "restart failed");
        });
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, EventType::Error);
        assert!(
            got[0].1.starts_with("restart failed target=web decision=d-7 service=W3SVC error=denied outcome=failed ("),
            "{}",
            got[0].1
        );
    }

    #[test]
    fn the_source_key_and_values() {
        assert_eq!(source_key("headroom"), r"SYSTEM\CurrentControlSet\Services\EventLog\Application\headroom");
        assert_eq!(
            source_key_display("headroom"),
            r"HKLM\SYSTEM\CurrentControlSet\Services\EventLog\Application\headroom"
        );
        assert_eq!(
            source_values(EVENT_MESSAGE_FILE),
            vec![
                ("EventMessageFile", RegValue::ExpandSz(r"%SystemRoot%\System32\EventCreate.exe".into())),
                ("TypesSupported", RegValue::Dword(7)),
            ]
        );
        assert_eq!(RegValue::Dword(7).to_string(), "(REG_DWORD) 7");
    }
}
