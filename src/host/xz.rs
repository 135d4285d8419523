//! The xz encoder, straight on liblzma's C API for the two things the `liblzma` crate does not
//! expose: how much of its input the encoder has really compressed (`lzma_get_progress`; the
//! multi-threaded encoder takes whole blocks in long before it has compressed them), and a
//! timeout on its waits, so that this progress is reported while a block is being compressed.

use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use liblzma_sys as sys;

/// How long the multi-threaded encoder may wait for a block before handing control back.
const WAIT_MS: u32 = 200;

/// LZMA2 settings: a preset and the overrides applied to it.
#[derive(Debug, Clone, Copy)]
pub struct Lzma2 {
    pub preset: u32,
    pub dict_size: u32,
    pub nice_len: Option<u32>,
    pub depth: Option<u32>,
}

/// An `.xz` stream (LZMA2, CRC64, no BCJ filter) written to `out`.
pub struct XzWriter<W: Write> {
    stream: Box<sys::lzma_stream>,
    /// liblzma copies the filter options when the encoder starts; kept anyway, at no cost.
    _options: Box<sys::lzma_options_lzma>,
    out: Option<W>,
    buf: Vec<u8>,
    /// Uncompressed bytes compressed so far are added here as they are.
    progress: Option<Arc<AtomicU64>>,
    reported: u64,
    /// A step failed: liblzma may have taken input whose output was lost, so the stream can
    /// only be abandoned.
    failed: bool,
}

// SAFETY: the stream is only ever used through `&mut self`, from one thread at a time;
// liblzma's encoders keep no thread-affine state.
unsafe impl<W: Write + Send> Send for XzWriter<W> {}

fn lzma_error(what: &str, ret: sys::lzma_ret) -> io::Error {
    let why = match ret {
        sys::LZMA_MEM_ERROR => "out of memory",
        sys::LZMA_OPTIONS_ERROR => "unsupported options",
        sys::LZMA_PROG_ERROR => "invalid use of liblzma",
        _ => "liblzma error",
    };
    io::Error::other(format!("xz {what}: {why} (code {ret})"))
}

/// The LZMA2 options for `settings`.
fn lzma2_options(settings: Lzma2) -> io::Result<Box<sys::lzma_options_lzma>> {
    // SAFETY: all-zero is a valid starting value (reserved fields must be zero); the preset
    // then fills the options.
    let mut options: Box<sys::lzma_options_lzma> = Box::new(unsafe { std::mem::zeroed() });
    if unsafe { sys::lzma_lzma_preset(&mut *options, settings.preset) } != 0 {
        return Err(lzma_error("preset", sys::LZMA_OPTIONS_ERROR));
    }
    options.dict_size = settings.dict_size;
    if let Some(nice) = settings.nice_len {
        options.nice_len = nice;
    }
    if let Some(depth) = settings.depth {
        options.depth = depth;
    }
    Ok(options)
}

/// The filter chain: LZMA2 with `options` alone (which must outlive it).
fn lzma2_filters(options: &mut sys::lzma_options_lzma) -> [sys::lzma_filter; 2] {
    [
        sys::lzma_filter {
            id: sys::LZMA_FILTER_LZMA2,
            options: (options as *mut sys::lzma_options_lzma).cast(),
        },
        sys::lzma_filter {
            id: sys::LZMA_VLI_UNKNOWN,
            options: std::ptr::null_mut(),
        },
    ]
}

/// The memory (bytes) liblzma says the encoder [`XzWriter::new`] makes with these arguments
/// needs: the match finder's tables and, multi-threaded, each thread's input and output blocks.
pub fn encoder_memory(settings: Lzma2, block_size: Option<u64>, threads: u32) -> io::Result<u64> {
    let mut options = lzma2_options(settings)?;
    let filters = lzma2_filters(&mut options);
    // SAFETY: the filters (and the options they point at) are alive and terminated.
    let bytes = match block_size {
        None => unsafe { sys::lzma_raw_encoder_memusage(filters.as_ptr()) },
        Some(block_size) => {
            // SAFETY: all-zero is a valid lzma_mt (reserved fields must be zero).
            let mut mt: sys::lzma_mt = unsafe { std::mem::zeroed() };
            mt.threads = threads.max(1);
            mt.block_size = block_size;
            mt.filters = filters.as_ptr();
            mt.check = sys::LZMA_CHECK_CRC64;
            unsafe { sys::lzma_stream_encoder_mt_memusage(&mt) }
        }
    };
    if bytes == u64::MAX {
        return Err(lzma_error("memory estimate", sys::LZMA_OPTIONS_ERROR));
    }
    Ok(bytes)
}

impl<W: Write> XzWriter<W> {
    /// One block (the single-threaded encoder) when `block_size` is None, else blocks of
    /// `block_size` uncompressed bytes compressed by up to `threads` threads: the bytes depend
    /// on the settings and `block_size`, never on `threads`.
    pub fn new(
        settings: Lzma2,
        block_size: Option<u64>,
        threads: u32,
        out: W,
    ) -> io::Result<XzWriter<W>> {
        let mut options = lzma2_options(settings)?;
        let filters = lzma2_filters(&mut options);
        let mut stream: Box<sys::lzma_stream> = Box::new(unsafe { std::mem::zeroed() });
        let ret = match block_size {
            None => unsafe {
                sys::lzma_stream_encoder(&mut *stream, filters.as_ptr(), sys::LZMA_CHECK_CRC64)
            },
            Some(block_size) => {
                let mut mt: sys::lzma_mt = unsafe { std::mem::zeroed() };
                mt.threads = threads.max(1);
                mt.block_size = block_size;
                mt.timeout = WAIT_MS;
                mt.filters = filters.as_ptr();
                mt.check = sys::LZMA_CHECK_CRC64;
                unsafe { sys::lzma_stream_encoder_mt(&mut *stream, &mt) }
            }
        };
        if ret != sys::LZMA_OK {
            return Err(lzma_error("encoder", ret));
        }
        Ok(XzWriter {
            stream,
            _options: options,
            out: Some(out),
            buf: vec![0; 256 * 1024],
            progress: None,
            reported: 0,
            failed: false,
        })
    }

    /// Adds the uncompressed bytes compressed, as they are, to `counter`.
    pub fn report_progress(&mut self, counter: Arc<AtomicU64>) {
        self.progress = Some(counter);
    }

    /// One `lzma_code` call on what `next_in` points at; writes out what it produced.
    fn step(&mut self, action: sys::lzma_action) -> io::Result<sys::lzma_ret> {
        if self.failed {
            return Err(io::Error::other(
                "xz: the stream failed earlier and cannot go on",
            ));
        }
        let result = self.step_once(action);
        self.failed = result.is_err();
        result
    }

    fn step_once(&mut self, action: sys::lzma_action) -> io::Result<sys::lzma_ret> {
        self.stream.next_out = self.buf.as_mut_ptr();
        self.stream.avail_out = self.buf.len();
        // SAFETY: the stream was initialised by an encoder; next_in/avail_in describe a live
        // slice (or nothing) and next_out/avail_out our buffer.
        let ret = unsafe { sys::lzma_code(&mut *self.stream, action) };
        let produced = self.buf.len() - self.stream.avail_out;
        if produced > 0 {
            let out = self.out.as_mut().expect("the writer is not finished");
            out.write_all(&self.buf[..produced])?;
        }
        if let Some(counter) = &self.progress {
            let (mut done_in, mut done_out) = (0u64, 0u64);
            // SAFETY: as above; the call only reads the encoder's counters.
            unsafe { sys::lzma_get_progress(&mut *self.stream, &mut done_in, &mut done_out) };
            if done_in > self.reported {
                counter.fetch_add(done_in - self.reported, Ordering::Relaxed);
                self.reported = done_in;
            }
        }
        match ret {
            sys::LZMA_OK | sys::LZMA_STREAM_END => Ok(ret),
            _ => Err(lzma_error("compression", ret)),
        }
    }

    /// Ends the stream and gives back the sink.
    pub fn finish(mut self) -> io::Result<W> {
        self.stream.next_in = std::ptr::null();
        self.stream.avail_in = 0;
        while self.step(sys::LZMA_FINISH)? != sys::LZMA_STREAM_END {}
        Ok(self.out.take().expect("finished once"))
    }
}

impl<W: Write> Write for XzWriter<W> {
    fn write(&mut self, input: &[u8]) -> io::Result<usize> {
        self.stream.next_in = input.as_ptr();
        self.stream.avail_in = input.len();
        let result = (|| {
            while self.stream.avail_in > 0 {
                self.step(sys::LZMA_RUN)?;
            }
            Ok(())
        })();
        self.stream.next_in = std::ptr::null();
        self.stream.avail_in = 0;
        result.map(|()| input.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        // Flushing an xz stream would end a block: only the sink is flushed.
        self.out.as_mut().map_or(Ok(()), |o| o.flush())
    }
}

impl<W: Write> Drop for XzWriter<W> {
    fn drop(&mut self) {
        // SAFETY: the stream was initialised; lzma_end frees it (and stops its threads).
        unsafe { sys::lzma_end(&mut *self.stream) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::testing::FailingSink;
    use std::io::Read;

    fn settings() -> Lzma2 {
        Lzma2 {
            preset: 6,
            dict_size: 1 << 20,
            nice_len: Some(32),
            depth: Some(12),
        }
    }

    #[test]
    fn progress_counts_what_was_compressed_and_the_stream_decodes() {
        let data: Vec<u8> = (0..(3u32 << 20))
            .map(|i| (i % 251) as u8 ^ (i >> 13) as u8)
            .collect();
        for blocks in [None, Some(1 << 20)] {
            let counter = Arc::new(AtomicU64::new(0));
            let mut w = XzWriter::new(settings(), blocks, 2, Vec::new()).unwrap();
            w.report_progress(Arc::clone(&counter));
            for piece in data.chunks(100_000) {
                w.write_all(piece).unwrap();
                assert!(counter.load(Ordering::Relaxed) <= data.len() as u64);
            }
            let packed = w.finish().unwrap();
            assert_eq!(
                counter.load(Ordering::Relaxed),
                data.len() as u64,
                "{blocks:?}"
            );
            let mut out = Vec::new();
            crate::compression::decoder(crate::compression::Compression::Xz, &packed[..])
                .unwrap()
                .read_to_end(&mut out)
                .unwrap();
            assert!(out == data, "{blocks:?}: round trip");
        }
    }

    #[test]
    fn after_a_failed_write_the_stream_refuses_to_go_on() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let noise: Vec<u8> = (0..(2 << 20))
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 32) as u8
            })
            .collect();
        let mut w = XzWriter::new(settings(), None, 1, FailingSink { left: 1000 }).unwrap();
        assert!(w.write_all(&noise).is_err(), "the sink filled up");
        let again = w.write_all(b"more").unwrap_err();
        assert!(again.to_string().contains("failed earlier"), "{again}");
        assert!(w.finish().is_err());
    }

    #[test]
    fn an_unfinished_stream_is_freed_and_a_bad_preset_refused() {
        let mut w = XzWriter::new(settings(), Some(1 << 16), 2, Vec::new()).unwrap();
        w.write_all(&[7u8; 300_000]).unwrap();
        drop(w);
        let bad = Lzma2 {
            preset: 42,
            ..settings()
        };
        let err = XzWriter::new(bad, None, 1, Vec::new()).err().unwrap();
        assert!(err.to_string().contains("preset"), "{err}");
    }
}
