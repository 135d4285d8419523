//! Who is writing to a bucket, so that what a killed writer left behind (multipart uploads,
//! staged objects, lock markers) is cleaned up by the next one, and never what a live writer
//! still uses.
//!
//! A writer registers an owner record `.nar-tool/owners/<id>` naming its machine (the kernel's
//! boot id) and process (pid and start time), and rewrites it every minute while it lives. An
//! owner is gone when its record is missing, when it names a process of this machine that no
//! longer runs, or when the record has not been rewritten for [`STALE_AFTER`] by the server's
//! clock (the server's own `Last-Modified` of a fresh record gives "now", so no client clock
//! is trusted).

use std::fs;
use std::io;
use std::sync::{Arc, Weak};
use std::time::Duration;

use object_store::ObjectStoreExt;

use super::{runtime, Shared};

/// The server's clock when it is not known (a reader that registered nothing): no record is
/// stale by age.
pub const SERVER_TIME_UNKNOWN: i64 = i64::MIN;

/// How long a record of a writer on another machine may go without a rewrite.
pub const STALE_AFTER: Duration = Duration::from_secs(10 * 60);
const HEARTBEAT: Duration = Duration::from_secs(60);

/// This process as an owner.
pub struct Owner {
    pub id: String,
    /// The server's time when the record was first written (seconds since the epoch).
    pub server_now: i64,
}

fn boot_id() -> String {
    fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// A process's start time (clock ticks since boot), from `/proc/PID/stat`.
fn start_time(pid: u32) -> Option<String> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count from its end.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19).map(str::to_string)
}

fn record_text() -> String {
    let pid = std::process::id();
    format!(
        "boot {}\npid {pid}\nstart {}\n",
        boot_id(),
        start_time(pid).unwrap_or_default()
    )
}

pub fn new_id() -> String {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("the system's random source");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether the owner whose record reads `text`, last written at `modified`, is gone.
pub fn is_gone(text: &str, modified: i64, server_now: i64) -> bool {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .map(str::trim)
    };
    let local = boot_id();
    if !local.is_empty() && field("boot") == Some(local.as_str()) {
        let pid = field("pid").and_then(|p| p.parse::<u32>().ok());
        return match pid {
            Some(pid) => start_time(pid).as_deref() != field("start"),
            None => true,
        };
    }
    server_now.saturating_sub(modified) > STALE_AFTER.as_secs() as i64
}

/// Registers this process as an owner and keeps its record fresh while `shared` lives.
pub async fn register(shared: &Arc<Shared>) -> io::Result<Owner> {
    let id = new_id();
    let path = shared.path(&format!(".nar-tool/owners/{id}"))?;
    let store = shared.store.clone();
    store
        .put(&path, record_text().into())
        .await
        .map_err(|e| shared.error(e, "registering as a writer at", &path))?;
    let meta = store
        .head(&path)
        .await
        .map_err(|e| shared.error(e, "reading back", &path))?;
    let weak: Weak<Shared> = Arc::downgrade(shared);
    runtime::handle().spawn(async move {
        loop {
            tokio::time::sleep(HEARTBEAT).await;
            let Some(shared) = weak.upgrade() else { break };
            if shared.store.put(&path, record_text().into()).await.is_err() {
                // A failed rewrite is retried at the next beat; writes report their own errors.
                continue;
            }
        }
    });
    Ok(Owner {
        id,
        server_now: meta.last_modified.timestamp(),
    })
}

/// Whether the owner `id` is gone (its record missing, dead or stale).
pub async fn owner_is_gone(shared: &Shared, id: &str, server_now: i64) -> io::Result<bool> {
    let path = shared.path(&format!(".nar-tool/owners/{id}"))?;
    match shared.store.get(&path).await {
        Ok(got) => {
            let modified = got.meta.last_modified.timestamp();
            let body = got
                .bytes()
                .await
                .map_err(|e| shared.error(e, "reading", &path))?;
            Ok(is_gone(
                &String::from_utf8_lossy(&body),
                modified,
                server_now,
            ))
        }
        Err(object_store::Error::NotFound { .. }) => Ok(true),
        Err(e) => Err(shared.error(e, "reading", &path)),
    }
}

/// The owner part of a name `<owner>-<n>` or `s-<owner>-<n>`.
pub fn owner_of(name: &str) -> &str {
    let name = name.strip_prefix("s-").unwrap_or(name);
    name.split('-').next().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_dead_one_is_gone() {
        let text = record_text();
        assert!(!is_gone(&text, 0, i64::MAX), "this process, however old");
        let dead = text.replace(
            &format!("pid {}", std::process::id()),
            &format!("pid {}", u32::MAX - 1),
        );
        assert!(is_gone(&dead, 0, 0), "no such process");
        let reused = text.replace("start ", "start 1");
        assert!(is_gone(&reused, 0, 0), "a pid taken by another process");
    }

    #[test]
    fn another_machine_by_age() {
        let text = "boot other-machine\npid 1\nstart 5\n";
        assert!(!is_gone(text, 1000, 1000 + 599));
        assert!(is_gone(text, 1000, 1000 + 601));
        assert!(is_gone("garbage", 0, 601));
    }

    #[test]
    fn names() {
        assert_eq!(owner_of("0123abcd-7"), "0123abcd");
        assert_eq!(owner_of("s-0123abcd-7"), "0123abcd");
    }
}
