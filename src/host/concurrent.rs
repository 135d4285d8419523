//! Work that waits rather than computes (requests to a bucket), done a few at a time on threads
//! of its own: the CPU pools stay for the CPU work.

use std::sync::Mutex;

/// `f` of every item, at most `at_once` at a time, the results in the items' order. With
/// `at_once` ≤ 1 (or one item) it runs on the calling thread.
pub fn map_concurrently<T: Send, R: Send>(
    items: Vec<T>,
    at_once: usize,
    f: impl Fn(T) -> R + Sync,
) -> Vec<R> {
    let count = items.len();
    let threads = at_once.min(count);
    if threads <= 1 {
        return items.into_iter().map(f).collect();
    }
    let todo = Mutex::new(items.into_iter().enumerate());
    let results: Mutex<Vec<Option<R>>> = Mutex::new((0..count).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let next = todo.lock().unwrap_or_else(|e| e.into_inner()).next();
                let Some((i, item)) = next else { break };
                let r = f(item);
                results.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(r);
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .map(|r| r.expect("every item was mapped"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn keeps_the_order_and_maps_each_item_once() {
        let items: Vec<u64> = (0..500).collect();
        let calls = AtomicUsize::new(0);
        for at_once in [0, 1, 2, 16, 1000] {
            calls.store(0, Ordering::Relaxed);
            let out = map_concurrently(items.clone(), at_once, |i| {
                calls.fetch_add(1, Ordering::Relaxed);
                // Uneven work, so that the threads finish out of order.
                std::thread::sleep(std::time::Duration::from_micros(i % 7 * 50));
                i * 2
            });
            assert_eq!(out, items.iter().map(|i| i * 2).collect::<Vec<_>>());
            assert_eq!(calls.load(Ordering::Relaxed), items.len());
        }
        assert!(map_concurrently(Vec::<u8>::new(), 8, |_| 0).is_empty());
    }

    #[test]
    fn runs_at_most_at_once_items_together() {
        let items = vec![(); 64];
        let running = AtomicUsize::new(0);
        let most = AtomicUsize::new(0);
        map_concurrently(items, 4, |_| {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(2));
            running.fetch_sub(1, Ordering::SeqCst);
        });
        let most = most.load(Ordering::SeqCst);
        assert!((2..=4).contains(&most), "{most} at once");
    }
}
