//! Nix's base-32 encoding ("nixbase32"): the alphabet `0-9a-z` without `e o u t`, no padding,
//! and the bytes read from the *end*: the first character holds the last 5-bit group.
//! It is not RFC 4648 base32; see `FORMATS.md`.

/// The 32 digits, in value order.
pub const ALPHABET: &[u8; 32] = b"0123456789abcdfghijklmnpqrsvwxyz";

/// Why a string is not valid nixbase32.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("invalid nixbase32 character {found:?} at position {position} (allowed: 0-9 a-z without e, o, u, t)")]
    InvalidCharacter { position: usize, found: char },
    #[error("nixbase32 string of length {found} cannot encode {expected_bytes} bytes (expected {expected} characters)")]
    WrongLength {
        expected: usize,
        expected_bytes: usize,
        found: usize,
    },
    #[error("nixbase32 string has non-zero bits past the last byte")]
    NonZeroPadding,
}

/// The number of characters that encode `bytes` bytes: `ceil(8 * bytes / 5)`.
pub const fn encoded_len(bytes: usize) -> usize {
    (bytes * 8).div_ceil(5)
}

/// The number of bytes a string of `chars` characters decodes to, if any length does.
pub fn decoded_len(chars: usize) -> Option<usize> {
    // encoded_len is strictly increasing, so at most one byte length matches.
    let bytes = chars * 5 / 8;
    (encoded_len(bytes) == chars).then_some(bytes)
}

/// Encodes bytes as nixbase32.
pub fn encode(bytes: &[u8]) -> String {
    let len = encoded_len(bytes.len());
    let mut out = String::with_capacity(len);
    for k in 0..len {
        let group = len - 1 - k;
        let bit = group * 5;
        let (i, j) = (bit / 8, bit % 8);
        let mut v = bytes[i] >> j;
        if j > 3 && i + 1 < bytes.len() {
            v |= bytes[i + 1] << (8 - j);
        }
        out.push(ALPHABET[(v & 0x1f) as usize] as char);
    }
    out
}

/// Each byte's digit value, or `NOT_A_DIGIT` (a table: every hash part of an index shard is
/// decoded, a million at a time).
const DIGITS: [u8; 256] = {
    let mut table = [NOT_A_DIGIT; 256];
    let mut i = 0;
    while i < ALPHABET.len() {
        table[ALPHABET[i] as usize] = i as u8;
        i += 1;
    }
    table
};
const NOT_A_DIGIT: u8 = 0xff;

fn digit_value(c: u8) -> Option<u8> {
    let d = DIGITS[c as usize];
    (d != NOT_A_DIGIT).then_some(d)
}

/// Decodes a nixbase32 string of any valid length.
pub fn decode(s: &str) -> Result<Vec<u8>, DecodeError> {
    let len = decoded_len(s.len()).ok_or(DecodeError::WrongLength {
        expected: encoded_len(s.len() * 5 / 8),
        expected_bytes: s.len() * 5 / 8,
        found: s.len(),
    })?;
    let mut out = vec![0u8; len];
    decode_into(s, &mut out)?;
    Ok(out)
}

/// Decodes exactly `N` bytes.
pub fn decode_array<const N: usize>(s: &str) -> Result<[u8; N], DecodeError> {
    if s.len() != encoded_len(N) {
        return Err(DecodeError::WrongLength {
            expected: encoded_len(N),
            expected_bytes: N,
            found: s.len(),
        });
    }
    let mut out = [0u8; N];
    decode_into(s, &mut out)?;
    Ok(out)
}

fn decode_into(s: &str, out: &mut [u8]) -> Result<(), DecodeError> {
    let chars = s.as_bytes();
    let n = chars.len();
    for (k, &c) in chars.iter().enumerate() {
        let digit = digit_value(c).ok_or_else(|| DecodeError::InvalidCharacter {
            position: k,
            found: s[k..].chars().next().unwrap_or('?'),
        })?;
        let bit = (n - 1 - k) * 5;
        let (i, j) = (bit / 8, bit % 8);
        out[i] |= digit << j;
        let carry = (digit as u16) >> (8 - j);
        if carry != 0 {
            match out.get_mut(i + 1) {
                Some(b) => *b |= carry as u8,
                None => return Err(DecodeError::NonZeroPadding),
            }
        }
    }
    Ok(())
}

/// Whether every character is a nixbase32 digit.
pub fn is_valid_char(c: u8) -> bool {
    digit_value(c).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_sha256_of_empty_string() {
        // `nix-hash --type sha256 --flat --base32` of an empty file
        let hex = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let bytes: Vec<u8> = (0..32)
            .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
            .collect();
        assert_eq!(
            encode(&bytes),
            "0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73"
        );
        assert_eq!(
            decode("0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73").unwrap(),
            bytes
        );
    }

    #[test]
    fn lengths() {
        assert_eq!(encoded_len(20), 32);
        assert_eq!(encoded_len(32), 52);
        assert_eq!(encoded_len(64), 103);
        assert_eq!(encoded_len(16), 26);
        assert_eq!(decoded_len(52), Some(32));
        assert_eq!(decoded_len(2), Some(1));
        assert_eq!(decoded_len(3), None);
    }

    #[test]
    fn refuses_bad_input() {
        assert!(matches!(decode("e"), Err(DecodeError::WrongLength { .. })));
        assert!(matches!(
            decode("0e"),
            Err(DecodeError::InvalidCharacter {
                position: 1,
                found: 'e'
            })
        ));
        // one byte needs two digits; the top digit may only hold 3 bits
        assert_eq!(decode("7z").unwrap(), vec![0xff]);
        assert_eq!(decode("80"), Err(DecodeError::NonZeroPadding));
    }
}
