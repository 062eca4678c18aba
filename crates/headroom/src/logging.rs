//! Where log lines go: journald (with structured fields) when systemd
//! started headroom with stderr connected to the journal, readable text on
//! a terminal or a file, JSON when asked. Libraries only emit `tracing`
//! events; this is the one place a subscriber is installed.

use tracing_subscriber::EnvFilter;

use crate::cli::LogFormat;

/// Where the lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sink {
    /// journald's native protocol: every field its own journal field
    /// (`DECISION_ID`, `ACTION`, `OUTCOME`, `TARGET`), so `journalctl -u
    /// headroom DECISION_ID=…` finds one decision's story.
    Journald,
    /// Text on stderr, coloured only on a terminal.
    Text {
        /// ANSI colours.
        ansi: bool,
    },
    /// One JSON object per line on stderr.
    Json,
}

/// The sink for `format`: `Auto` is journald when `JOURNAL_STREAM`
/// (`device:inode`, set by systemd) names the very stream stderr is —
/// systemd's documented test, so a child that inherited the variable but
/// writes elsewhere is not fooled — and text otherwise.
pub fn sink(format: LogFormat, journal_stream: Option<&str>, stderr: Option<(u64, u64)>, terminal: bool) -> Sink {
    let connected = || {
        let (dev, ino) = journal_stream?.split_once(':')?;
        let ours = (dev.parse::<u64>().ok()?, ino.parse::<u64>().ok()?);
        Some(Some(ours) == stderr)
    };
    match format {
        LogFormat::Journald => Sink::Journald,
        LogFormat::Json => Sink::Json,
        LogFormat::Text => Sink::Text { ansi: terminal },
        LogFormat::Auto if connected() == Some(true) => Sink::Journald,
        LogFormat::Auto => Sink::Text { ansi: terminal },
    }
}

/// stderr's device and inode.
#[cfg(unix)]
fn stderr_identity() -> Option<(u64, u64)> {
    use std::os::fd::AsFd as _;
    use std::os::unix::fs::MetadataExt as _;
    let fd = std::io::stderr().as_fd().try_clone_to_owned().ok()?;
    let meta = std::fs::File::from(fd).metadata().ok()?;
    Some((meta.dev(), meta.ino()))
}

#[cfg(not(unix))]
fn stderr_identity() -> Option<(u64, u64)> {
    None
}

/// Installs the subscriber: `filter` through the sink `format` chooses.
/// journald unreachable (no socket) falls back to text on stderr, saying so.
pub fn init(format: LogFormat, filter: EnvFilter) {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let stream = std::env::var("JOURNAL_STREAM").ok();
    let text = |ansi: bool| tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(ansi);
    match sink(format, stream.as_deref(), stderr_identity(), terminal) {
        Sink::Journald => match journald() {
            Ok(layer) => tracing_subscriber::registry().with(filter).with(layer).init(),
            Err(e) => {
                tracing_subscriber::registry().with(filter).with(text(terminal)).init();
                tracing::warn!("journald cannot be reached ({e}): logging to stderr");
            }
        },
        Sink::Text { ansi } => tracing_subscriber::registry().with(filter).with(text(ansi)).init(),
        Sink::Json => tracing_subscriber::registry().with(filter).with(text(false).json()).init(),
    }
}

#[cfg(unix)]
fn journald() -> std::io::Result<tracing_journald::Layer> {
    // No prefix: the fields are DECISION_ID, ACTION, … as the events name them.
    Ok(tracing_journald::layer()?.with_field_prefix(None).with_syslog_identifier("headroom".into()))
}

#[cfg(not(unix))]
fn journald() -> std::io::Result<tracing_subscriber::layer::Identity> {
    Err(std::io::Error::other("journald exists only on Linux"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journald_only_when_stderr_is_the_stream_systemd_named() {
        let me = Some((64769, 12345));
        assert_eq!(sink(LogFormat::Auto, Some("64769:12345"), me, false), Sink::Journald);
        // Inherited by a child that writes elsewhere; malformed; absent.
        assert_eq!(sink(LogFormat::Auto, Some("64769:99"), me, false), Sink::Text { ansi: false });
        assert_eq!(sink(LogFormat::Auto, Some("nonsense"), me, true), Sink::Text { ansi: true });
        assert_eq!(sink(LogFormat::Auto, None, me, true), Sink::Text { ansi: true });
        // Asked for: given.
        assert_eq!(sink(LogFormat::Json, Some("64769:12345"), me, false), Sink::Json);
        assert_eq!(sink(LogFormat::Journald, None, None, true), Sink::Journald);
        assert_eq!(sink(LogFormat::Text, Some("64769:12345"), me, false), Sink::Text { ansi: false });
    }
}
