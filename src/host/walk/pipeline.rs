//! The two-thread pipeline: one thread walks the tree and writes the archive into chunks, the
//! other writes or hashes them, in bounded memory.

use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread;

use super::*;
use crate::nar::listing::Listing;

/// Writes the archive on a helper thread that walks `path` and reads the files straight into
/// chunks, while the calling thread writes the chunks to `out` (which therefore need not be
/// `Send`). Returns `out`, flushed, and the `.ls` listing if `listing`. Falls back to one thread
/// if no thread can be started.
///
/// Where the data is copied matters as much as overlapping the work. Into a sink that costs CPU
/// time (a hash, a compressor), file contents are best read by the helper thread, in parallel.
/// Into a cheap one (a pipe, a file, `/dev/null`: a copy or nothing), a copy from a chunk another
/// core has just filled costs about three times a copy from a buffer still in this core's cache,
/// so there the helper thread hands large files over to be read by the calling thread itself,
/// with a small buffer, as `nix-store --dump` does (small files, where system calls dominate,
/// stay with the helper). The calling thread tells the two apart by measuring the CPU time its
/// writes take.
pub(crate) fn pipelined<W: Write>(
    path: &Path,
    mut out: W,
    case_hack: CaseHack,
    listing: bool,
) -> Result<(W, Option<Listing>), DumpError> {
    let (full_tx, full_rx) = mpsc::sync_channel::<Chunk>(QUEUE_DEPTH);
    let (free_tx, free_rx) = mpsc::channel::<Chunk>();
    let cheap_sink = AtomicBool::new(false);
    let outcome = thread::scope(|s| {
        let cheap_sink = &cheap_sink;
        let producer = thread::Builder::new()
            .name("nar-dump-read".into())
            .spawn_scoped(s, move || {
                let mut sink = ChunkSink {
                    chunk: Chunk::new(),
                    full: full_tx,
                    free: free_rx,
                    hand_over: cheap_sink,
                };
                let walked = produce(path, &mut sink, case_hack, listing);
                // Hand over what was produced even after an error: the output then stops where
                // it would have without the pipeline.
                let sent = sink.send();
                walked.and_then(|l| sent.map(|()| l).map_err(io_err(path)))
            });
        let Ok(producer) = producer else {
            return None;
        };
        let mut meter = SinkMeter::default();
        let mut buf = Vec::new();
        let mut written = Ok(());
        for mut chunk in full_rx.iter() {
            if let Err(e) = meter.write(&mut out, &chunk.data[..chunk.len]) {
                written = Err(io_err(path)(e));
                break;
            }
            if let Some(rest) = chunk.then.take() {
                if let Err(e) = rest.copy(&mut out, &mut buf, &mut meter, path) {
                    written = Err(e);
                    break;
                }
            }
            cheap_sink.store(meter.is_cheap(), Ordering::Relaxed);
            // The producer may be gone already; the chunk is then simply freed.
            let _ = free_tx.send(chunk);
        }
        // After a write error, stops the producer at its next chunk.
        drop(full_rx);
        let produced = match producer.join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        Some((written, produced))
    });
    match outcome {
        None => {
            let mut w = NarWriter::new(out).map_err(nar_err(path))?;
            if listing {
                w = w.record_listing();
            }
            walk(path, w, case_hack, |w, x, size, f, _| w.regular(x, size, f))?
                .finish_with_listing()
                .map_err(nar_err(path))
        }
        // A failed write stops the producer with an error of its own; the write's is the cause.
        Some((Err(e), _)) => Err(e),
        Some((Ok(()), Err(e))) => Err(e),
        Some((Ok(()), Ok(listing))) => {
            out.flush().map_err(io_err(path))?;
            Ok((out, listing))
        }
    }
}

/// The producer's side: the whole archive into the chunks.
fn produce(
    path: &Path,
    sink: &mut ChunkSink,
    case_hack: CaseHack,
    listing: bool,
) -> Result<Option<Listing>, DumpError> {
    let mut w = NarWriter::new(sink).map_err(nar_err(path))?;
    if listing {
        w = w.record_listing();
    }
    let w = walk(path, w, case_hack, |w, executable, size, file, path| {
        w.regular_with(executable, size, |sink| sink.read_file(file, size, path))
    })?;
    let (_, listing) = w.finish_with_listing().map_err(nar_err(path))?;
    Ok(listing)
}

/// A piece of the archive; `data` always has `CHUNK_SIZE` bytes, of which `len` are filled.
struct Chunk {
    data: Box<[u8]>,
    len: usize,
    /// The rest of a file, for the writing thread to read itself after `data`.
    then: Option<Rest>,
}

impl Chunk {
    fn new() -> Chunk {
        Chunk {
            data: vec![0u8; CHUNK_SIZE].into_boxed_slice(),
            len: 0,
            then: None,
        }
    }
}

/// Files with at least this much left to read are read by the writing thread when the sink is
/// cheap; smaller ones cost more in system calls than in copying.
const HAND_OVER_MIN: u64 = 512 << 10;
/// A sink whose writes take less CPU time than this per byte (a copy or less: 2 GB/s) is cheap.
const CHEAP_NS_PER_MIB: u64 = 500_000;
/// The writing thread's own buffer for the files it reads: small enough to stay in the core's
/// cache, large enough that a `BufWriter` of the usual sizes (up to 256 KiB) passes the writes
/// through instead of copying them.
const HAND_OVER_BUF: usize = 256 << 10;

/// The end of a regular file, handed over to the writing thread.
struct Rest {
    file: File,
    path: PathBuf,
    /// The file's size as announced, and how much of it is in the chunks already.
    size: u64,
    done: u64,
}

impl Rest {
    /// Reads the rest of the file (it must end exactly at its announced size) into `out`.
    fn copy(
        mut self,
        out: &mut impl Write,
        buf: &mut Vec<u8>,
        meter: &mut SinkMeter,
        root: &Path,
    ) -> Result<(), DumpError> {
        if buf.is_empty() {
            buf.resize(HAND_OVER_BUF, 0);
        }
        let mismatch = |found| DumpError::Nar {
            path: self.path.clone(),
            source: WriteError::SizeMismatch {
                expected: self.size,
                found,
            },
        };
        let mut done = self.done;
        loop {
            let left = self.size - done;
            // One byte more than is left, as in `ChunkSink::read_file`.
            let want = usize::try_from(left.saturating_add(1))
                .unwrap_or(usize::MAX)
                .min(buf.len());
            let n = match self.file.read(&mut buf[..want]) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_err(&self.path)(e)),
            };
            if n as u64 > left {
                return Err(mismatch(done + n as u64));
            }
            meter.write(out, &buf[..n]).map_err(io_err(root))?;
            done += n as u64;
            if n == 0 || (done == self.size && n < want) {
                break;
            }
        }
        if done != self.size {
            return Err(mismatch(done));
        }
        Ok(())
    }
}

/// The CPU time the writing thread's writes take, to tell a cheap sink from a costly one.
#[derive(Default)]
struct SinkMeter {
    bytes: u64,
    nanos: u64,
}

impl SinkMeter {
    fn write(&mut self, out: &mut impl Write, data: &[u8]) -> io::Result<()> {
        let start = thread_cpu_nanos();
        out.write_all(data)?;
        self.nanos += thread_cpu_nanos().saturating_sub(start);
        self.bytes += data.len() as u64;
        Ok(())
    }

    /// Whether the writes so far (1 MiB at least) cost less than a copy.
    fn is_cheap(&self) -> bool {
        self.bytes >= 1 << 20 && self.nanos < (self.bytes >> 20) * CHEAP_NS_PER_MIB
    }
}

/// CPU time of the calling thread, in nanoseconds.
fn thread_cpu_nanos() -> u64 {
    let mut ts = MaybeUninit::<libc::timespec>::uninit();
    // SAFETY: `ts` is large enough for a `timespec`.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, ts.as_mut_ptr()) } != 0 {
        return 0;
    }
    // SAFETY: clock_gettime succeeded, so it filled `ts`.
    let ts = unsafe { ts.assume_init() };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The producer's end of the pipeline: fills a chunk, queues it when full (waiting while
/// `QUEUE_DEPTH` chunks wait) and reuses the chunks the writer gives back.
struct ChunkSink<'a> {
    chunk: Chunk,
    full: mpsc::SyncSender<Chunk>,
    free: mpsc::Receiver<Chunk>,
    /// Set by the writing thread while the sink is cheap: then large files are handed over.
    hand_over: &'a AtomicBool,
}

impl ChunkSink<'_> {
    /// Queues the current chunk (unless empty) and takes a free one.
    fn send(&mut self) -> io::Result<()> {
        if self.chunk.len == 0 && self.chunk.then.is_none() {
            return Ok(());
        }
        // Queue first, then take the next chunk: so no more than `QUEUE_DEPTH + 2` ever exist.
        let empty = Chunk {
            data: Box::default(),
            len: 0,
            then: None,
        };
        let full = std::mem::replace(&mut self.chunk, empty);
        self.full.send(full).map_err(|_| {
            io::Error::new(io::ErrorKind::BrokenPipe, "the archive's writer stopped")
        })?;
        self.chunk = match self.free.try_recv() {
            Ok(mut chunk) => {
                chunk.len = 0;
                chunk
            }
            Err(_) => Chunk::new(),
        };
        Ok(())
    }

    /// Reads a file of `size` bytes straight into the chunks, or hands the rest of it over to the
    /// writing thread; returns how many bytes the file has (or is announced to have, if handed
    /// over: the writing thread then checks).
    fn read_file(
        &mut self,
        file: &mut File,
        size: u64,
        path: &dyn Fn() -> PathBuf,
    ) -> Result<u64, WriteError> {
        let mut copied = 0u64;
        loop {
            let left = size - copied;
            if left >= HAND_OVER_MIN && self.hand_over.load(Ordering::Relaxed) {
                if let Ok(file) = file.try_clone() {
                    #[cfg(test)]
                    tests::HANDED_OVER.fetch_add(1, Ordering::Relaxed);
                    self.chunk.then = Some(Rest {
                        file,
                        path: path(),
                        size,
                        done: copied,
                    });
                    self.send()?;
                    return Ok(size);
                }
            }
            if self.chunk.len == CHUNK_SIZE {
                self.send()?;
            }
            let start = self.chunk.len;
            // Ask for one byte more than is left: a file that grew is noticed, and a read that
            // comes back short by that byte shows the end of the file without one more call (a
            // regular file reads short only at its end).
            let want = usize::try_from(left.saturating_add(1))
                .unwrap_or(usize::MAX)
                .min(CHUNK_SIZE - start);
            let n = match file.read(&mut self.chunk.data[start..start + want]) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            if n as u64 > left {
                return Err(WriteError::SizeMismatch {
                    expected: size,
                    found: copied + n as u64,
                });
            }
            self.chunk.len += n;
            copied += n as u64;
            if n == 0 || (copied == size && n < want) {
                return Ok(copied);
            }
        }
    }
}

impl Write for ChunkSink<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.chunk.len == CHUNK_SIZE {
            self.send()?;
        }
        let start = self.chunk.len;
        let n = data.len().min(CHUNK_SIZE - start);
        self.chunk.data[start..start + n].copy_from_slice(&data[..n]);
        self.chunk.len += n;
        Ok(n)
    }

    /// The last chunk is queued by [`ChunkSink::send`] once the archive is complete.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::testing::FailingSink;
    use std::os::unix::fs::{symlink, PermissionsExt};

    static NEVER: AtomicBool = AtomicBool::new(false);
    static ALWAYS: AtomicBool = AtomicBool::new(true);
    pub(super) static HANDED_OVER: std::sync::atomic::AtomicUsize =
        std::sync::atomic::AtomicUsize::new(0);

    fn sink() -> (
        ChunkSink<'static>,
        mpsc::Receiver<Chunk>,
        mpsc::Sender<Chunk>,
    ) {
        let (full_tx, full_rx) = mpsc::sync_channel(1024);
        let (free_tx, free_rx) = mpsc::channel();
        let sink = ChunkSink {
            chunk: Chunk::new(),
            full: full_tx,
            free: free_rx,
            hand_over: &NEVER,
        };
        (sink, full_rx, free_tx)
    }

    fn drain(mut sink: ChunkSink<'_>, rx: mpsc::Receiver<Chunk>) -> Vec<u8> {
        sink.send().unwrap();
        drop(sink);
        rx.iter().flat_map(|c| c.data[..c.len].to_vec()).collect()
    }

    #[test]
    fn read_file_across_chunks_and_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..3 * CHUNK_SIZE + 17)
            .map(|i| (i * 7 + i / 251) as u8)
            .collect();
        let path = dir.path().join("f");
        fs::write(&path, &data).unwrap();
        let (mut s, rx, _free) = sink();
        s.write_all(b"head").unwrap();
        let n = s
            .read_file(&mut File::open(&path).unwrap(), data.len() as u64, &|| {
                path.clone()
            })
            .unwrap();
        assert_eq!(n, data.len() as u64);
        s.write_all(b"tail").unwrap();
        let out = drain(s, rx);
        assert_eq!(&out[..4], b"head");
        assert!(out[4..4 + data.len()] == data[..]);
        assert_eq!(&out[4 + data.len()..], b"tail");

        // A file longer than announced (it grew) and one shorter (it shrank).
        for (announced, found_more) in [
            (data.len() as u64 - 1, true),
            (data.len() as u64 + 5, false),
        ] {
            let (mut s, _rx, _free) = sink();
            match s.read_file(&mut File::open(&path).unwrap(), announced, &|| path.clone()) {
                Err(WriteError::SizeMismatch { expected, found }) if found_more => {
                    assert_eq!(expected, announced);
                    assert!(found > announced);
                }
                Ok(n) if !found_more => assert_eq!(n, data.len() as u64),
                other => panic!("announced {announced}: {other:?}"),
            }
        }
    }

    #[test]
    fn hand_over_rest_of_file() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..3 * CHUNK_SIZE + 5).map(|i| (i % 253) as u8).collect();
        let path = dir.path().join("f");
        fs::write(&path, &data).unwrap();
        // Announced right, shorter (the file grew) and longer (it shrank).
        for announced in [
            data.len() as u64,
            data.len() as u64 - 1,
            data.len() as u64 + 9,
        ] {
            let (mut s, rx, _free) = sink();
            s.hand_over = &ALWAYS;
            s.write_all(b"head").unwrap();
            let n = s.read_file(&mut File::open(&path).unwrap(), announced, &|| path.clone());
            assert_eq!(n.unwrap(), announced);
            s.write_all(b"tail").unwrap();
            s.send().unwrap();
            drop(s);
            let (mut out, mut buf, mut meter) = (Vec::new(), Vec::new(), SinkMeter::default());
            let mut result = Ok(());
            for mut chunk in rx.iter() {
                out.extend_from_slice(&chunk.data[..chunk.len]);
                if let Some(rest) = chunk.then.take() {
                    assert_eq!((rest.done, rest.size), (0, announced));
                    result = rest.copy(&mut out, &mut buf, &mut meter, dir.path());
                }
            }
            match result {
                Ok(()) => {
                    assert_eq!(announced, data.len() as u64);
                    assert!(out[4..4 + data.len()] == data[..]);
                    assert_eq!(&out[4 + data.len()..], b"tail");
                }
                Err(DumpError::Nar {
                    path: p,
                    source: WriteError::SizeMismatch { expected, found },
                }) => {
                    assert_eq!(p, path);
                    assert_eq!(expected, announced);
                    assert!(found > announced || found == data.len() as u64);
                }
                Err(e) => panic!("{e}"),
            }
        }
    }

    /// Into a cheap sink, large files are handed over to the writing thread: the archive is the same.
    #[test]
    fn pipelined_with_hand_over_equals_serial() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        fs::create_dir(&root).unwrap();
        for i in 0..24 {
            let size = CHUNK_SIZE + i * 100_003;
            fs::write(root.join(format!("f{i:02}")), vec![i as u8; size]).unwrap();
            fs::write(root.join(format!("g{i:02}")), vec![i as u8; i * 3]).unwrap();
        }
        let serial = crate::host::fs::dump_path_serial(&root, Vec::new(), CaseHack(false)).unwrap();
        let before = HANDED_OVER.load(Ordering::Relaxed);
        let (piped, _) = pipelined(&root, Vec::new(), CaseHack(false), false).unwrap();
        assert!(serial == piped);
        assert!(
            HANDED_OVER.load(Ordering::Relaxed) > before,
            "no file was handed over"
        );
    }

    /// A tree with every kind of node, sizes around the chunk size, and nesting deeper than
    /// `MAX_OPEN_DIRS`.
    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        fs::create_dir(&root).unwrap();
        for (i, size) in [
            0,
            1,
            7,
            8,
            9,
            4096,
            CHUNK_SIZE - 1,
            CHUNK_SIZE,
            CHUNK_SIZE + 1,
            2 * CHUNK_SIZE + 3,
        ]
        .into_iter()
        .enumerate()
        {
            let p = root.join(format!("f{i}"));
            fs::write(&p, vec![i as u8 + 1; size]).unwrap();
            if i % 3 == 0 {
                fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
            }
        }
        symlink("f1", root.join("link")).unwrap();
        symlink("/nowhere/at/all", root.join("dangling")).unwrap();
        fs::create_dir(root.join("empty")).unwrap();
        let mut deep = root.join("deep");
        for i in 0..MAX_OPEN_DIRS + 10 {
            fs::create_dir(&deep).unwrap();
            fs::write(deep.join("x"), format!("level {i}")).unwrap();
            symlink("x", deep.join("y")).unwrap();
            deep = deep.join("d");
        }
        dir
    }

    #[test]
    fn pipelined_equals_serial() {
        let dir = tree();
        let root = dir.path().join("root");
        let serial = crate::host::fs::dump_path_serial(&root, Vec::new(), CaseHack(false)).unwrap();
        let (piped, listing) = pipelined(&root, Vec::new(), CaseHack(false), true).unwrap();
        assert!(serial == piped);
        let from_nar = Listing::from_nar(&serial[..]).unwrap();
        assert_eq!(listing.unwrap().to_json(), from_nar.to_json());
        // A single file and a symlink as roots.
        for name in ["f8", "link"] {
            let p = root.join(name);
            let serial =
                crate::host::fs::dump_path_serial(&p, Vec::new(), CaseHack(false)).unwrap();
            let (piped, _) = pipelined(&p, Vec::new(), CaseHack(false), false).unwrap();
            assert!(serial == piped, "{name}");
        }
    }

    #[test]
    fn errors_stop_both_threads() {
        let dir = tree();
        let root = dir.path().join("root");
        // The writer fails: the error is the write's, reported with the root.
        for left in [0, 100, CHUNK_SIZE + 5] {
            match pipelined(&root, FailingSink { left }, CaseHack(false), false) {
                Err(DumpError::Io { path, source }) => {
                    assert_eq!(path, root);
                    assert_eq!(source.kind(), io::ErrorKind::BrokenPipe);
                }
                other => panic!("{:?}", other.map(|_| ())),
            }
        }
        // The tree cannot be archived: the error names the entry, and what came before it is
        // written, as without the pipeline.
        let deep = (0..MAX_OPEN_DIRS + 5).fold(root.join("deep"), |p, _| p.join("d"));
        for (fifo, min_len) in [
            (deep.join("fifo"), 0),
            (root.join("zz-fifo"), 3 * CHUNK_SIZE),
        ] {
            let c = CString::new(fifo.as_os_str().as_bytes()).unwrap();
            // SAFETY: a NUL-terminated path.
            assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
            let mut out = Vec::new();
            match pipelined(&root, &mut out, CaseHack(false), false) {
                Err(DumpError::Unsupported { path, .. }) => assert_eq!(path, fifo),
                other => panic!("{:?}", other.map(|_| ())),
            }
            let mut serial = Vec::new();
            assert!(
                crate::host::fs::dump_path_serial(&root, &mut serial, CaseHack(false)).is_err()
            );
            assert!(out == serial && out.len() > min_len);
            fs::remove_file(&fifo).unwrap();
        }
    }
}
