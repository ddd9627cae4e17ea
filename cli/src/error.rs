//! The command's one error type.
//!
//! Every failure that is not a failed reference check (bad options, unreadable or malformed
//! files, inputs the kernels refuse) becomes a [`CliError`]; `main` prints it as one line
//! on stderr and exits with code 2.

use std::fmt;
use std::path::PathBuf;

use tokenmath_core::TmError;

/// Why the command could not do its job.
#[derive(Debug)]
pub enum CliError {
    /// An option value that cannot be used (the message says which and why).
    Usage(String),
    /// The input file could not be opened or mapped.
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The input file is not a usable safetensors logits dump.
    Input {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// The GPU could not be opened or failed (the message says why).
    Device(String),
    /// A kernel refused the data (e.g. a row whose logits are all `-inf`).
    Kernel {
        /// Where the data came from (a file name or "default batch").
        origin: String,
        /// The kernel's error, with row numbers relative to the whole input.
        error: TmError,
    },
}

impl CliError {
    /// An [`CliError::Input`] for `path`.
    pub fn input(path: impl Into<PathBuf>, message: impl Into<String>) -> CliError {
        CliError::Input { path: path.into(), message: message.into() }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Usage(message) => f.write_str(message),
            CliError::Io { path, source } => write!(f, "cannot read {}: {source}", path.display()),
            CliError::Input { path, message } => write!(f, "{}: {message}", path.display()),
            CliError::Kernel { origin, error } => write!(f, "{origin}: {error}"),
            CliError::Device(message) => write!(f, "--device: {message}"),
        }
    }
}

impl std::error::Error for CliError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CliError::Io { source, .. } => Some(source),
            CliError::Kernel { error, .. } => Some(error),
            CliError::Usage(_) | CliError::Input { .. } | CliError::Device(_) => None,
        }
    }
}
