//! The auth file of `serve --auth FILE`: one principal a line, `NAME:HASH[:CACHE,CACHE…]`, where
//! HASH is an Argon2 PHC string (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`) and the caches are the
//! names of `serve --cache NAME=…` this principal may read (none listed: all of them). Blank lines
//! and lines starting with `#` are comments. No secret is ever stored in clear: `nar-tool auth
//! add` hashes what it reads.

use std::fmt::Write as _;

use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString};
use argon2::{Argon2, Params};

/// The most principals a file may name.
pub const MAX_ENTRIES: usize = 10_000;
/// The longest secret accepted (by `auth add` and from clients).
pub const MAX_SECRET: usize = 1024;
/// The most memory (KiB) and passes a hash may ask for: a file asking more is refused, since
/// every verification (of a stranger too) would cost that much.
const MAX_MEMORY_KIB: u32 = 1 << 20;
const MAX_PASSES: u32 = 16;
const MAX_LANES: u32 = 16;
const HEADER: &str =
    "# nar-tool serve --auth: NAME:ARGON2-PHC-HASH[:CACHE,CACHE...] (no caches: all)\n";

/// One principal: a user (HTTP Basic) or a token holder (`Bearer NAME.SECRET`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    /// The PHC string.
    pub hash: String,
    /// The caches it may read; `None`: all.
    pub caches: Option<Vec<String>>,
}

impl Entry {
    pub fn may_read(&self, cache: &str) -> bool {
        self.caches
            .as_ref()
            .is_none_or(|c| c.iter().any(|c| c == cache))
    }
}

/// A name: 1 to 64 of `A-Z a-z 0-9 _ -` (no `:` of the file, no `.` of a bearer token).
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "bad name {name:?}: expected 1 to 64 letters, digits, '_' or '-'"
        ))
    }
}

/// A cache name of `serve --cache NAME=…`: as a principal's name, and not `_`-led (`/_nar-tool/`
/// is the server's own).
pub fn check_cache_name(name: &str) -> Result<(), String> {
    check_name(name)
        .map_err(|e| format!("cache {e}"))
        .and_then(|()| match name.starts_with('_') {
            true => Err(format!(
                "bad cache name {name:?}: it may not start with '_'"
            )),
            false => Ok(()),
        })
}

/// Parses an auth file's text; errors name the line and what was expected.
pub fn parse(text: &str) -> Result<Vec<Entry>, String> {
    let mut entries: Vec<Entry> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let at = |e: String| format!("line {}: {e}", i + 1);
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split(':');
        let name = fields.next().unwrap_or_default();
        check_name(name).map_err(at)?;
        let hash = fields
            .next()
            .ok_or_else(|| at(format!("{name}: no hash (expected NAME:HASH[:CACHES])")))?;
        check_hash(hash).map_err(|e| at(format!("{name}: {e}")))?;
        let caches = match fields.next() {
            None | Some("") => None,
            Some(list) => Some(
                list.split(',')
                    .map(|c| check_cache_name(c).map(|()| c.to_string()))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| at(format!("{name}: {e}")))?,
            ),
        };
        if fields.next().is_some() {
            return Err(at(format!(
                "{name}: more than 3 fields (expected NAME:HASH[:CACHES])"
            )));
        }
        if entries.iter().any(|e| e.name == name) {
            return Err(at(format!("{name} is named twice")));
        }
        if entries.len() == MAX_ENTRIES {
            return Err(at(format!("more than {MAX_ENTRIES} entries")));
        }
        entries.push(Entry {
            name: name.to_string(),
            hash: hash.to_string(),
            caches,
        });
    }
    Ok(entries)
}

/// The text of an auth file.
pub fn format(entries: &[Entry]) -> String {
    let mut out = String::from(HEADER);
    for e in entries {
        let _ = write!(out, "{}:{}", e.name, e.hash);
        if let Some(caches) = &e.caches {
            let _ = write!(out, ":{}", caches.join(","));
        }
        out.push('\n');
    }
    out
}

/// An Argon2 PHC string whose cost is within bounds.
fn check_hash(hash: &str) -> Result<(), String> {
    let parsed = PasswordHash::new(hash)
        .map_err(|e| format!("the hash is not a PHC string ({e}): expected $argon2id$…"))?;
    if !matches!(
        parsed.algorithm.as_str(),
        "argon2id" | "argon2i" | "argon2d"
    ) {
        return Err(format!(
            "the hash is {}, expected argon2id",
            parsed.algorithm
        ));
    }
    let params = Params::try_from(&parsed).map_err(|e| format!("bad argon2 parameters: {e}"))?;
    if params.m_cost() > MAX_MEMORY_KIB
        || params.t_cost() > MAX_PASSES
        || params.p_cost() > MAX_LANES
    {
        return Err(format!(
            "argon2 parameters m={},t={},p={} cost more than allowed (m<={MAX_MEMORY_KIB},t<={MAX_PASSES},p<={MAX_LANES})",
            params.m_cost(),
            params.t_cost(),
            params.p_cost()
        ));
    }
    if parsed.hash.is_none() || parsed.salt.is_none() {
        return Err("the hash has no salt or no output".into());
    }
    Ok(())
}

/// Hashes a secret with Argon2id (the crate's default cost, OWASP's: 19 MiB, 2 passes) and a
/// fresh random salt.
pub fn hash_secret(secret: &[u8]) -> Result<String, String> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| format!("no random salt: {e}"))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    Argon2::default()
        .hash_password(secret, &salt)
        .map(|h| h.to_string())
        .map_err(|e| format!("hashing: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_lookup() {
        let h = hash_secret(b"s3cret").unwrap();
        assert!(h.starts_with("$argon2id$"));
        let entries = vec![
            Entry {
                name: "alice".into(),
                hash: h.clone(),
                caches: None,
            },
            Entry {
                name: "ci-bot".into(),
                hash: h,
                caches: Some(vec!["main".into(), "staging".into()]),
            },
        ];
        let text = format(&entries);
        assert!(!text.contains("s3cret"));
        assert_eq!(parse(&text).unwrap(), entries);
        assert!(entries[0].may_read("anything"));
        assert!(entries[1].may_read("staging") && !entries[1].may_read("private"));
    }

    #[test]
    fn bad_files_are_refused_with_the_line() {
        let h = hash_secret(b"x").unwrap();
        for (text, want) in [
            ("alice\n".to_string(), "line 1: alice: no hash"),
            ("al ice:x\n".to_string(), "line 1: bad name"),
            (
                "# c\nalice:plain-text\n".to_string(),
                "line 2: alice: the hash is not a PHC",
            ),
            ("a:$2b$10$abcdefghijklmnopqrstuu\n".to_string(), "not a PHC"),
            (format!("a:{h}\na:{h}\n"), "line 2: a is named twice"),
            (format!("a:{h}:main,_x\n"), "may not start with '_'"),
            (format!("a:{h}:main:x\n"), "more than 3 fields"),
            (
                "a:$argon2id$v=19$m=4194304,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA\n"
                    .to_string(),
                "cost more than allowed",
            ),
            (
                "a:$pbkdf2-sha256$i=1000$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA\n".to_string(),
                "expected argon2id",
            ),
        ] {
            let err = parse(&text).unwrap_err();
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }
}
