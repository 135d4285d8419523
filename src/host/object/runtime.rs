//! The runtime object storage runs on: one multi-threaded tokio runtime for the process, shared by
//! every bucket, so a sync caller (a build worker, a verifier thread, a `serve` handler thread)
//! can wait for a request without owning a runtime, and an async caller can await one without
//! blocking its own.

use std::future::Future;
use std::io;
use std::sync::{mpsc, OnceLock};

use tokio::runtime::{Handle, Runtime};

fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("nar-tool-object-io")
            .enable_all()
            .build()
            .expect("the object storage runtime starts")
    })
}

/// The runtime's handle, to spawn background work (uploads in flight, read-ahead).
pub fn handle() -> &'static Handle {
    static HANDLE: OnceLock<Handle> = OnceLock::new();
    HANDLE.get_or_init(|| runtime().handle().clone())
}

/// Runs `future` on the object runtime and waits for its end, from any thread (inside another
/// runtime's blocking section too: nothing here enters a runtime).
pub fn block_on<F>(future: F) -> io::Result<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let (tx, rx) = mpsc::sync_channel(1);
    handle().spawn(async move {
        let _ = tx.send(future.await);
    });
    rx.recv().map_err(|_| {
        io::Error::other("an object storage request was cancelled (its task ended early)")
    })
}

/// How long a process spends removing what it leaves when it is done with it (lease parts, lock
/// markers, its owner record): past that, on a server gone or slow, they are left for whoever
/// next finds their owner gone.
pub const CLEANUP_BUDGET: std::time::Duration = std::time::Duration::from_secs(3);

/// Runs a best-effort cleanup for at most [`CLEANUP_BUDGET`], its outcome ignored.
pub fn cleanup<F>(future: F)
where
    F: Future + Send + 'static,
{
    let _ = block_on(async move {
        let _ = tokio::time::timeout(CLEANUP_BUDGET, future).await;
    });
}

/// Runs `future` on the object runtime from async code (of any runtime).
pub async fn run<F>(future: F) -> io::Result<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    handle()
        .spawn(future)
        .await
        .map_err(|e| io::Error::other(format!("an object storage request failed: {e}")))
}
