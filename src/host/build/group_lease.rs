//! The build's lease, shared by its workers, extended in groups: names that workers add while a
//! write of the lease is under way go together in the next write (on a bucket a write is a few
//! round trips: the batch lock taken shared, a lease part, the lock released; one per path made
//! a build of many small paths wait on them one after another).
//!
//! The lease's promise holds for every caller: [`GroupLease::extend`] returns once a write that
//! started after the call, and holds its names, has returned.

use std::io;
use std::sync::{Condvar, Mutex};

use crate::cache::storage::lease::Lease;

pub(super) struct GroupLease {
    lease: Mutex<Box<dyn Lease>>,
    state: Mutex<State>,
    written: Condvar,
}

#[derive(Default)]
struct State {
    /// Names of the group being gathered.
    pending: Vec<String>,
    /// The number of the group being gathered; groups are written in order.
    gathering: u64,
    /// Groups up to this number (exclusive) are written.
    written: u64,
    /// A write is under way (by one of the callers).
    writing: bool,
    /// Why a write failed: the lease no longer holds what it should, every later call fails.
    broken: Option<String>,
}

impl GroupLease {
    pub(super) fn new(lease: Box<dyn Lease>) -> GroupLease {
        GroupLease {
            lease: Mutex::new(lease),
            state: Mutex::new(State::default()),
            written: Condvar::new(),
        }
    }

    /// Adds `names` to the lease; returns once they are written (by this caller or another).
    pub(super) fn extend(&self, names: &[String]) -> io::Result<()> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.pending.extend(names.iter().cloned());
        let mine = state.gathering;
        loop {
            if let Some(why) = &state.broken {
                return Err(io::Error::other(why.clone()));
            }
            if state.written > mine {
                return Ok(());
            }
            if state.writing {
                state = self.written.wait(state).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            // Write the group gathered so far (this caller's among them), others gather the next.
            state.writing = true;
            let group = std::mem::take(&mut state.pending);
            let number = state.gathering;
            state.gathering += 1;
            drop(state);
            let result = self
                .lease
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend(&group);
            state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            state.writing = false;
            match result {
                Ok(()) => state.written = number + 1,
                Err(e) => state.broken = Some(e.to_string()),
            }
            self.written.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A lease recording each write, slow enough for callers to pile up behind one.
    struct Recording(Arc<Mutex<Vec<Vec<String>>>>, bool);

    impl Lease for Recording {
        fn extend(&mut self, names: &[String]) -> io::Result<()> {
            std::thread::sleep(std::time::Duration::from_millis(20));
            if self.1 && names.iter().any(|n| n == "bad") {
                return Err(io::Error::other("the lease could not be written"));
            }
            self.0.lock().unwrap().push(names.to_vec());
            Ok(())
        }
        fn describe(&self) -> String {
            "a recording lease".into()
        }
    }

    #[test]
    fn every_name_is_written_before_its_caller_returns_and_writes_are_grouped() {
        let writes = Arc::new(Mutex::new(Vec::new()));
        let lease = GroupLease::new(Box::new(Recording(writes.clone(), false)));
        std::thread::scope(|s| {
            for t in 0..16 {
                let (lease, writes) = (&lease, &writes);
                s.spawn(move || {
                    for i in 0..10 {
                        let name = format!("{t}-{i}");
                        lease.extend(std::slice::from_ref(&name)).unwrap();
                        let written = writes.lock().unwrap();
                        assert!(
                            written.iter().flatten().any(|n| *n == name),
                            "{name} returned before it was written"
                        );
                    }
                });
            }
        });
        let writes = writes.lock().unwrap();
        let mut all: Vec<&String> = writes.iter().flatten().collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 160, "every name written once");
        assert!(writes.len() < 160, "grouped: {} writes", writes.len());
    }

    #[test]
    fn a_failed_write_fails_its_callers_and_every_later_one() {
        let lease = GroupLease::new(Box::new(Recording(Default::default(), true)));
        lease.extend(&["good".into()]).unwrap();
        let e = lease.extend(&["bad".into()]).unwrap_err();
        assert!(e.to_string().contains("could not be written"), "{e}");
        assert!(lease.extend(&["good".into()]).is_err(), "broken for good");
    }
}
