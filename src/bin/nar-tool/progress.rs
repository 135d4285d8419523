//! Progress bars on stderr (indicatif), shown only when stderr is a terminal.

use std::io::{self, IsTerminal};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use nar_tool::cache::verify::report::human_bytes;
use nar_tool::host::build::Progress;

/// The progress bar of `build-cache` (on a TTY only): in NAR bytes, with rate and ETA, when the
/// metadata gives every path's size up front; in paths when scanning.
pub struct BuildProgress {
    bar: Option<ProgressBar>,
    in_bytes: bool,
    paths: u64,
    paths_done: u64,
    nar_bytes_done: u64,
    /// Whether the rate estimate was restarted after the paths already in the cache, which
    /// come at once and would make the rate and ETA far too optimistic.
    eta_restarted: bool,
}

impl BuildProgress {
    const BYTES: &'static str = "{spinner} [{elapsed_precise}] {bar:30} {bytes}/{total_bytes} NAR, {binary_bytes_per_sec}, {msg} (ETA {eta})";
    const PATHS: &'static str =
        "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} paths, {msg} (ETA {eta})";

    pub fn new(enabled: bool) -> BuildProgress {
        BuildProgress {
            bar: progress_bar(enabled, 0, Self::PATHS),
            in_bytes: false,
            paths: 0,
            paths_done: 0,
            nar_bytes_done: 0,
            eta_restarted: false,
        }
    }

    pub fn update(&mut self, event: Progress) {
        let Some(bar) = &self.bar else { return };
        match event {
            Progress::Total { paths, nar_bytes } => {
                self.paths = paths;
                match nar_bytes {
                    Some(total) => {
                        if !self.in_bytes {
                            self.in_bytes = true;
                            bar.set_style(
                                ProgressStyle::with_template(Self::BYTES).expect("valid template"),
                            );
                        }
                        bar.set_length(total);
                        bar.set_message(format!("{}/{} paths", self.paths_done, paths));
                    }
                    None => bar.set_length(paths),
                }
            }
            Progress::Bytes { nar_bytes } => {
                if self.in_bytes {
                    bar.set_position(bar.position().max(nar_bytes));
                    if !self.eta_restarted {
                        self.eta_restarted = true;
                        bar.reset_eta();
                    }
                }
            }
            Progress::PathDone { nar_size, .. } => {
                self.paths_done += 1;
                self.nar_bytes_done += nar_size;
                if self.in_bytes {
                    bar.set_position(bar.position().max(self.nar_bytes_done));
                    bar.set_message(format!("{}/{} paths", self.paths_done, self.paths));
                } else {
                    let secs = bar.elapsed().as_secs_f64().max(1e-3);
                    bar.set_message(format!(
                        "{} NAR, {}/s",
                        human_bytes(self.nar_bytes_done),
                        human_bytes((self.nar_bytes_done as f64 / secs) as u64)
                    ));
                    bar.inc(1);
                }
            }
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// A progress bar on stderr when it is a terminal and `enabled`, else none.
pub fn progress_bar(enabled: bool, len: u64, template: &str) -> Option<ProgressBar> {
    if !enabled || !io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    bar.set_style(ProgressStyle::with_template(template).expect("valid template"));
    Some(bar)
}
