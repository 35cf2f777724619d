//! Logging set-up: human-readable or one JSON object per line, on stderr,
//! filtered by `RUST_LOG` (default `info`, which includes the access log under
//! the target `strangler::access`), written off the request path.

use tracing_subscriber::EnvFilter;

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Pretty,
    Json,
}

/// Log lines waiting for the writer thread before new ones are dropped: at
/// the access log's one line per request, a fraction of a second at tens of
/// thousands of requests a second, which the writer drains in batches.
/// Dropping lines beats making requests wait on a stalled terminal or pipe;
/// the queue's slots are allocated up front, so it is kept modest.
const BUFFERED_LINES: usize = 16 * 1024;

/// Keeps the log writer alive; dropping it flushes what is still buffered.
/// Hold it until the process exits.
#[must_use = "dropping the guard stops the log writer"]
pub struct LogGuard {
    _writer: Option<tracing_appender::non_blocking::WorkerGuard>,
}

/// Installs the global subscriber. Lines are formatted on the calling thread
/// and written by a background thread in batches, so a request never waits
/// for a write to stderr. Later calls are ignored (tests may call it more
/// than once).
pub fn init(format: LogFormat) -> LogGuard {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .buffered_lines_limit(BUFFERED_LINES)
        .lossy(true)
        .thread_name("strangler-log")
        .finish(std::io::BufWriter::with_capacity(
            64 * 1024,
            std::io::stderr(),
        ));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let installed = match format {
        LogFormat::Pretty => builder.with_target(true).try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
    LogGuard {
        _writer: installed.is_ok().then_some(guard),
    }
}
