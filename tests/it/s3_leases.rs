//! A bucket's lease against a collection's deletion batch, on a real S3 server: a lease written
//! while a batch runs returns only once that batch has ended (its names may have been read
//! before they were written), and a batch that starts after it returned reads them.

use std::sync::mpsc;
use std::time::Duration;

use crate::common::s3::server;
use nar_tool::cache::storage::lease;
use nar_tool::cache::storage::StorageWrite;

const NAR: &str = "nar/1bqldrl7h73xxzx3wvsmhqi88b90dmx93ddb6xg5d1w4yqvqaqjc.nar.zst";

/// The NARs the live leases of the cache name, read as a collection reads them.
fn leased_nars(storage: &dyn StorageWrite) -> Vec<String> {
    storage
        .live_leases(false)
        .unwrap()
        .iter()
        .flat_map(|text| lease::parse(text).nars)
        .map(|k| k.to_string())
        .collect()
}

#[test]
fn a_lease_written_during_a_deletion_batch_returns_after_it() {
    let srv = server();
    let prefix = srv.fresh_prefix("lease-batch");
    let collector = srv.storage(&prefix);
    let holder = srv.storage(&prefix);
    holder.prepare().unwrap();

    // No batch running: the lease is written at once, and a batch that starts after reads it.
    let mut first = holder.lease().unwrap();
    first.extend(&[NAR.to_string()]).unwrap();
    {
        let _batch = collector.gc_batch_lock(true).unwrap();
        assert_eq!(leased_nars(&collector), [NAR]);
    }
    drop(first);

    // A batch running: the extension waits for its end.
    let batch = collector.gc_batch_lock(true).unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut lease = holder.lease().unwrap();
            let result = lease.extend(&[NAR.to_string()]);
            tx.send(result.map_err(|e| e.to_string())).unwrap();
            // Held until the batch below has read it.
            std::thread::sleep(Duration::from_secs(2));
        });
        assert!(
            rx.recv_timeout(Duration::from_millis(700)).is_err(),
            "the lease returned while a deletion batch ran"
        );
        drop(batch);
        rx.recv_timeout(Duration::from_secs(10))
            .expect("the lease returns once the batch has ended")
            .unwrap();
        let _next = collector.gc_batch_lock(true).unwrap();
        assert_eq!(leased_nars(&collector), [NAR], "the next batch reads it");
    });
}
