//! Wire formats: bounds-checked parsers (and the matching encoders) for every SCSI data
//! structure we send or receive. Each module holds one format family; each parser is a plain
//! `fn parse(buf: &[u8]) -> Result<T, ParseError>` that never panics and never trusts a length
//! field: every offset is a named constant, every read goes through the checked readers below.
//!
//! Encoders exist for two reasons: the parameter lists we send (PR OUT, STPG, TransportIDs) and
//! the responses [`crate::testing::FakeScsi`] answers with, so that every format round-trips.

pub mod capacity;
pub mod inquiry;
pub mod pr_in;
pub mod pr_out;
pub mod rtpg;
pub mod sense;
pub mod transport_id;
pub mod vpd;

#[cfg(test)]
mod proptests;

/// Why a buffer could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The buffer ends before a field (or the length a header declares) does.
    #[error("{what}: need {need} bytes, got {got}")]
    Short {
        /// The structure or field being read.
        what: &'static str,
        /// Bytes needed.
        need: usize,
        /// Bytes present.
        got: usize,
    },
    /// A field holds a value the format does not allow.
    #[error("{what}: invalid value {value:#x}")]
    Invalid {
        /// The field.
        what: &'static str,
        /// The value found.
        value: u64,
    },
    /// A VPD page came back with another page code than the one asked for.
    #[error("VPD page {got:#04x} returned, {expected:#04x} asked for")]
    WrongPage {
        /// Page asked for.
        expected: u8,
        /// Page code in the response.
        got: u8,
    },
    /// Text that must be UTF-8 (or ASCII) is not.
    #[error("{what}: not valid text")]
    Text {
        /// The field.
        what: &'static str,
    },
}

/// The bytes `buf[off..off + len]`, or [`ParseError::Short`].
pub(crate) fn slice<'a>(
    buf: &'a [u8],
    off: usize,
    len: usize,
    what: &'static str,
) -> Result<&'a [u8], ParseError> {
    let end = off.checked_add(len).ok_or(ParseError::Invalid {
        what,
        value: u64::MAX,
    })?;
    buf.get(off..end).ok_or(ParseError::Short {
        what,
        need: end,
        got: buf.len(),
    })
}

/// One byte at `off`.
pub(crate) fn byte(buf: &[u8], off: usize, what: &'static str) -> Result<u8, ParseError> {
    buf.get(off).copied().ok_or(ParseError::Short {
        what,
        need: off + 1,
        got: buf.len(),
    })
}

/// A big-endian u16 at `off`.
pub(crate) fn be16(buf: &[u8], off: usize, what: &'static str) -> Result<u16, ParseError> {
    let s = slice(buf, off, 2, what)?;
    Ok(u16::from_be_bytes([s[0], s[1]]))
}

/// A big-endian u32 at `off`.
pub(crate) fn be32(buf: &[u8], off: usize, what: &'static str) -> Result<u32, ParseError> {
    let s = slice(buf, off, 4, what)?;
    Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

/// A big-endian u64 at `off`.
pub(crate) fn be64(buf: &[u8], off: usize, what: &'static str) -> Result<u64, ParseError> {
    let s = slice(buf, off, 8, what)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(s);
    Ok(u64::from_be_bytes(a))
}

/// A length field converted to `usize` (lossless on every platform we build for).
pub(crate) fn len_usize(v: u32, what: &'static str) -> Result<usize, ParseError> {
    usize::try_from(v).map_err(|_| ParseError::Invalid {
        what,
        value: u64::from(v),
    })
}

/// `header + declared`, checked.
pub(crate) fn total(
    header: usize,
    declared: usize,
    what: &'static str,
) -> Result<usize, ParseError> {
    header.checked_add(declared).ok_or(ParseError::Invalid {
        what,
        value: u64::MAX,
    })
}

/// Fixed-width ASCII (INQUIRY vendor/product/revision): trailing spaces and NULs removed.
pub(crate) fn ascii_field(bytes: &[u8], what: &'static str) -> Result<String, ParseError> {
    if !bytes
        .iter()
        .all(|b| b.is_ascii() && (*b == 0 || !b.is_ascii_control()))
    {
        return Err(ParseError::Text { what });
    }
    let s: String = bytes.iter().map(|b| char::from(*b)).collect();
    Ok(s.trim_end_matches([' ', '\0']).to_string())
}

/// A length that must fit the given integer type of a wire field (encoders).
pub(crate) fn fit_u16(v: usize, what: &'static str) -> Result<u16, ParseError> {
    u16::try_from(v).map_err(|_| ParseError::Invalid {
        what,
        value: wide(v),
    })
}

/// A length that must fit a 32-bit wire field (encoders).
pub(crate) fn fit_u32(v: usize, what: &'static str) -> Result<u32, ParseError> {
    u32::try_from(v).map_err(|_| ParseError::Invalid {
        what,
        value: wide(v),
    })
}

/// A `usize` as `u64` for error values (saturating; lossless on 64-bit targets).
pub(crate) fn wide(v: usize) -> u64 {
    u64::try_from(v).unwrap_or(u64::MAX)
}

/// Lowercase hex of `bytes`, no separators.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! Loads the captured LIO bytes under `tests/fixtures/scsi/lio-6.1/`.

    /// The bytes of fixture `name` (hex, whitespace-separated, `#` comments).
    pub fn load(name: &str) -> Vec<u8> {
        let path = format!(
            "{}/tests/fixtures/scsi/lio-6.1/{name}.hex",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        from_hex(&text)
    }

    /// Parses whitespace-separated hex (comments after `#`).
    pub fn from_hex(text: &str) -> Vec<u8> {
        text.lines()
            .map(|l| l.split('#').next().unwrap_or(""))
            .flat_map(|l| l.split_whitespace())
            .map(|t| u8::from_str_radix(t, 16).unwrap_or_else(|e| panic!("bad hex {t:?}: {e}")))
            .collect()
    }
}
