//! Native pieces the verifier takes: the C-backed decoders. (The directory backend itself is
//! [`crate::host::dir_storage`].)

use std::io::{self, Read};

/// The native (C-backed) decoders as a [`crate::cache::verify::DecoderFn`].
pub fn native_decoder<'a>(
    method: crate::compression::Compression,
    input: Box<dyn Read + 'a>,
) -> io::Result<Box<dyn Read + 'a>> {
    crate::host::codec::decoder(method, input)
}
