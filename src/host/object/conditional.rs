//! Reading a small object unless the copy at hand is still current: `If-None-Match` with its
//! ETag, answered 304 by a server that still has it (how a narinfo remembered by
//! `host::lookups` is revalidated).

use super::*;

/// What a conditional read found.
#[derive(Debug, PartialEq, Eq)]
pub enum Fetched {
    /// The ETag given still names the object (304).
    NotModified,
    Absent,
    Found {
        body: Vec<u8>,
        etag: Option<String>,
    },
}

impl ObjectStorage {
    /// A whole small object (refused past `limit` bytes), unless its ETag is still `etag`.
    pub fn read_small_unless(
        &self,
        key: &CacheKey,
        limit: u64,
        etag: Option<String>,
    ) -> io::Result<Fetched> {
        let path = self.key_path(key)?;
        let shown = key.to_string(); // worded as every backend words it
        self.block(move |shared| {
            Box::pin(async move {
                let options = GetOptions {
                    if_none_match: etag.clone(),
                    ..Default::default()
                };
                let got = match shared.store.get_opts(&path, options).await {
                    Ok(got) => got,
                    Err(object_store::Error::NotModified { .. }) if etag.is_some() => {
                        return Ok(Fetched::NotModified)
                    }
                    Err(e) if errors::cause(&e) == Cause::NotFound => return Ok(Fetched::Absent),
                    Err(e) => return Err(shared.error(e, "reading", &path)),
                };
                let too_large = |size: u64| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{shown} is larger than {limit} bytes (it has {size})"),
                    )
                };
                if got.meta.size > limit {
                    return Err(too_large(got.meta.size));
                }
                let etag = got.meta.e_tag.clone();
                let mut out = Vec::with_capacity(got.meta.size as usize);
                let mut stream = got.into_stream();
                while let Some(piece) = stream
                    .try_next()
                    .await
                    .map_err(|e| shared.error(e, "reading", &path))?
                {
                    if (out.len() + piece.len()) as u64 > limit {
                        return Err(too_large((out.len() + piece.len()) as u64));
                    }
                    out.extend_from_slice(&piece);
                }
                Ok(Fetched::Found { body: out, etag })
            })
        })
    }
}
