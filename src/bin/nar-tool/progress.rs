//! Progress bars on stderr (indicatif), shown only when stderr is a terminal.

use std::io::{self, IsTerminal, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use nar_tool::cache::verify::report::human_bytes;
use nar_tool::cache::verify::CacheStorage;
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
    // The bar takes what the text leaves of the terminal's width: the line never wraps (the
    // text is at most ~70 columns, tested below at 80).
    const BYTES: &'static str =
        "{spinner} {wide_bar} {binary_bytes}/{binary_total_bytes} NAR {binary_bytes_per_sec} {msg} ETA {eta_precise}";
    const PATHS: &'static str = "{spinner} {wide_bar} {pos}/{len} paths {msg} ETA {eta_precise}";

    pub fn new(enabled: bool) -> BuildProgress {
        BuildProgress::with_bar(progress_bar(enabled, 0, Self::PATHS))
    }

    fn with_bar(bar: Option<ProgressBar>) -> BuildProgress {
        BuildProgress {
            bar,
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
                        bar.set_message(format!("{}/{paths} paths", self.paths_done));
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
                        "{} {}/s",
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

/// The progress bar of `verify` (on a TTY only): in bytes of NAR files read, with rate and ETA,
/// when NARs are read (a large NAR then shows its progress); else in paths.
pub struct VerifyProgress {
    bar: Option<ProgressBar>,
    contents: bool,
    paths: AtomicU64,
    paths_done: AtomicU64,
}

impl VerifyProgress {
    const BYTES: &'static str =
        "{spinner} {wide_bar} {binary_bytes}/{binary_total_bytes} read {binary_bytes_per_sec} {msg} ETA {eta_precise}";
    const PATHS: &'static str = "{spinner} {wide_bar} {pos}/{len} paths ETA {eta_precise}";

    pub fn new(enabled: bool, contents: bool) -> VerifyProgress {
        let template = if contents { Self::BYTES } else { Self::PATHS };
        VerifyProgress::with_bar(progress_bar(enabled, 0, template), contents)
    }

    fn with_bar(bar: Option<ProgressBar>, contents: bool) -> VerifyProgress {
        if let Some(bar) = &bar {
            // Redrawn while a large NAR is read, though no path ends.
            bar.enable_steady_tick(Duration::from_millis(200));
        }
        VerifyProgress {
            bar,
            contents,
            paths: AtomicU64::new(0),
            paths_done: AtomicU64::new(0),
        }
    }

    /// `storage`, its reads counted on the bar.
    pub fn count_reads<'a>(&'a self, storage: &'a dyn CacheStorage) -> CountedStorage<'a> {
        CountedStorage {
            inner: storage,
            bar: self.bar.as_ref().filter(|_| self.contents),
        }
    }

    /// The narinfos are listed (`paths` of them): the bar's length is known.
    pub fn listed(&self, storage: &dyn CacheStorage, paths: usize) {
        let Some(bar) = &self.bar else { return };
        self.paths.store(paths as u64, Ordering::Relaxed);
        if !self.contents {
            bar.set_length(paths as u64);
            return;
        }
        // What there is to read: the files under nar/ (one stat each).
        let total: u64 = storage
            .list_nar_files()
            .unwrap_or_default()
            .iter()
            .filter_map(|f| storage.size(f).ok().flatten())
            .sum();
        bar.set_length(total.max(bar.position()));
        bar.set_message(format!("0/{paths} paths"));
    }

    pub fn path_done(&self) {
        let Some(bar) = &self.bar else { return };
        let done = self.paths_done.fetch_add(1, Ordering::Relaxed) + 1;
        if self.contents {
            let paths = self.paths.load(Ordering::Relaxed);
            bar.set_message(format!("{done}/{paths} paths"));
        } else {
            bar.inc(1);
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// A cache storage whose streams add what they read to a progress bar.
pub struct CountedStorage<'a> {
    inner: &'a dyn CacheStorage,
    bar: Option<&'a ProgressBar>,
}

impl<'a> CountedStorage<'a> {
    fn counted<'b>(&self, inner: Box<dyn Read + 'b>) -> Box<dyn Read + 'b> {
        match self.bar {
            Some(bar) => Box::new(CountedRead {
                inner,
                bar: bar.clone(),
            }),
            None => inner,
        }
    }
}

impl CacheStorage for CountedStorage<'_> {
    fn read_small(&self, rel: &str, limit: usize) -> io::Result<Option<Vec<u8>>> {
        self.inner.read_small(rel, limit)
    }
    fn open(&self, rel: &str) -> io::Result<Option<Box<dyn Read + '_>>> {
        Ok(self.inner.open(rel)?.map(|inner| self.counted(inner)))
    }
    fn open_sized(&self, rel: &str) -> io::Result<Option<(Box<dyn Read + '_>, u64)>> {
        Ok(self
            .inner
            .open_sized(rel)?
            .map(|(inner, size)| (self.counted(inner), size)))
    }
    fn size(&self, rel: &str) -> io::Result<Option<u64>> {
        self.inner.size(rel)
    }
    fn list_narinfos(&self) -> io::Result<Vec<String>> {
        self.inner.list_narinfos()
    }
    fn list_nar_files(&self) -> io::Result<Vec<String>> {
        self.inner.list_nar_files()
    }
}

struct CountedRead<'a> {
    inner: Box<dyn Read + 'a>,
    bar: ProgressBar,
}

impl Read for CountedRead<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bar.inc(n as u64);
        if self.bar.position() > self.bar.length().unwrap_or(0) {
            self.bar.set_length(self.bar.position());
        }
        Ok(n)
    }
}

/// A progress bar on stderr when it is a terminal and `enabled`, else none.
pub fn progress_bar(enabled: bool, len: u64, template: &str) -> Option<ProgressBar> {
    if !enabled || !io::stderr().is_terminal() {
        return None;
    }
    Some(styled_bar(ProgressDrawTarget::stderr(), len, template))
}

fn styled_bar(target: ProgressDrawTarget, len: u64, template: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(len), target);
    bar.set_style(ProgressStyle::with_template(template).expect("valid template"));
    bar
}

#[cfg(test)]
mod tests {
    use super::*;
    use indicatif::TermLike;
    use std::sync::{Arc, Mutex};

    /// An 80-column terminal that keeps the lines drawn.
    #[derive(Debug, Clone, Default)]
    struct Term80(Arc<Mutex<Vec<String>>>);

    impl TermLike for Term80 {
        fn width(&self) -> u16 {
            80
        }
        fn move_cursor_up(&self, _: usize) -> io::Result<()> {
            Ok(())
        }
        fn move_cursor_down(&self, _: usize) -> io::Result<()> {
            Ok(())
        }
        fn move_cursor_right(&self, _: usize) -> io::Result<()> {
            Ok(())
        }
        fn move_cursor_left(&self, _: usize) -> io::Result<()> {
            Ok(())
        }
        fn write_line(&self, s: &str) -> io::Result<()> {
            self.0.lock().unwrap().push(s.to_string());
            Ok(())
        }
        fn write_str(&self, s: &str) -> io::Result<()> {
            self.write_line(s)
        }
        fn clear_line(&self) -> io::Result<()> {
            Ok(())
        }
        fn flush(&self) -> io::Result<()> {
            Ok(())
        }
    }

    /// The widest line each template draws, at its largest values, on an 80-column terminal.
    fn widest(template: &str, len: u64, pos: u64, msg: &str) -> usize {
        let term = Term80::default();
        let bar = styled_bar(
            ProgressDrawTarget::term_like(Box::new(term.clone())),
            len,
            template,
        );
        bar.set_message(msg.to_string());
        bar.set_position(pos);
        bar.tick();
        bar.abandon();
        let lines = term.0.lock().unwrap().clone();
        assert!(!lines.is_empty(), "{template}: nothing drawn");
        lines.iter().map(|l| l.chars().count()).max().unwrap()
    }

    #[test]
    fn bars_fit_80_columns() {
        const TIB: u64 = 1 << 40;
        let cases = [
            (
                BuildProgress::BYTES,
                999 * TIB,
                123 * TIB,
                "123456/1234567 paths",
            ),
            (
                BuildProgress::PATHS,
                1_234_567,
                123_456,
                "1023.99 GiB 1023.99 MiB/s",
            ),
            (
                VerifyProgress::BYTES,
                999 * TIB,
                123 * TIB,
                "123456/1234567 paths",
            ),
            (VerifyProgress::PATHS, 1_234_567, 123_456, ""),
        ];
        for (template, len, pos, msg) in cases {
            let width = widest(template, len, pos, msg);
            assert!(width <= 80, "{template}: {width} columns");
            // And the bar is there: at least 10 columns of it.
            assert!(width >= 70, "{template}: only {width} columns");
        }
    }
}
