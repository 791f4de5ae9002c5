//! Log lines on stderr, as text or JSON (`--log-format`), at the level of `NSGUARD_LOG`.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use super::LogFormat;

/// The variable that sets the level and filters, in `tracing`'s syntax (default `info`).
pub const LEVEL_VARIABLE: &str = "NSGUARD_LOG";

/// A subscriber writing to `writer` in `format`, filtered by `filter`. Text is colored only
/// when `ansi`; JSON never is (one object a line, the event's fields flattened beside
/// `timestamp`, `level`, `target` and `message`, for log collectors).
pub fn subscriber<W>(
    format: LogFormat,
    filter: EnvFilter,
    writer: W,
    ansi: bool,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match format {
        LogFormat::Text => Box::new(builder.with_ansi(ansi).finish()),
        LogFormat::Json => Box::new(
            builder
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(false)
                .finish(),
        ),
    }
}

/// Installs the process's subscriber: stderr, `format`, the level from `NSGUARD_LOG`.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_env(LEVEL_VARIABLE).unwrap_or_else(|_| "info".into());
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    if tracing::subscriber::set_global_default(subscriber(format, filter, std::io::stderr, ansi))
        .is_err()
    {
        eprintln!("nsguard: a log subscriber was already installed");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A writer into a shared buffer.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'w> MakeWriter<'w> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'w self) -> Buffer {
            self.clone()
        }
    }

    fn logged(format: LogFormat) -> String {
        let buffer = Buffer::default();
        let subscriber = subscriber(format, EnvFilter::new("info"), buffer.clone(), false);
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(
                namespace = "team-a",
                verdict = "would-hang",
                "Reviewed a deletion"
            );
            tracing::debug!("below the level: not written");
            tracing::warn!(error = "quote \" and\nnewline", "Index \"stale\"");
        });
        String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn json_lines_parse_as_json_with_their_fields() {
        let text = logged(LogFormat::Json);
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0]["level"], "INFO");
        assert_eq!(lines[0]["message"], "Reviewed a deletion");
        assert_eq!(lines[0]["namespace"], "team-a");
        assert_eq!(lines[0]["verdict"], "would-hang");
        assert!(lines[0]["timestamp"].is_string(), "{}", lines[0]);
        assert_eq!(lines[1]["level"], "WARN");
        assert_eq!(lines[1]["message"], "Index \"stale\"");
        assert_eq!(lines[1]["error"], "quote \" and\nnewline");
    }

    #[test]
    fn text_lines_are_not_json() {
        let text = logged(LogFormat::Text);
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(text.contains("Reviewed a deletion") && text.contains("namespace=\"team-a\""));
        assert!(serde_json::from_str::<serde_json::Value>(text.lines().next().unwrap()).is_err());
        assert!(!text.contains('\x1b'), "no color when not asked: {text:?}");
    }
}
