//! The progress bar on stderr, shown while [`crate::run`] works through the rows.
//!
//! Its own module so that the data flows one way: `run` computes (and ticks this bar),
//! `report` formats what `run` returns; neither imports the other back.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

/// A progress bar over `rows` rows on stderr, hidden when stderr is not a terminal.
pub fn progress_bar(rows: usize) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let style = ProgressStyle::with_template("{spinner} {wide_bar} {pos}/{len} rows ({per_sec}, eta {eta})")
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    ProgressBar::new(rows as u64).with_style(style)
}
