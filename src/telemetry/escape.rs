//! How bytes a client chose look in a log line (SPEC §3.7): the one escaper of every log field
//! that carries them — the access log, Pingora's own error lines about a request, and the admin
//! API's refusal lines.

use std::fmt;

/// Bytes a client sent, as one log field: printable ASCII is written as is, and every other
/// byte — space, `"`, `\`, controls, non-ASCII — as `\xHH`. A value can therefore never contain
/// the space or quote that ends a field, nor a line break, and the original bytes can be
/// recovered exactly. The one place that decides how client bytes look in a log line.
pub struct Escaped<'a>(pub &'a [u8]);

/// True for a byte written as itself; every other byte is written `\xHH`.
fn plain(b: u8) -> bool {
    b.is_ascii_graphic() && b != b'"' && b != b'\\'
}

impl Escaped<'_> {
    /// Appends the escaped bytes to `out`, exactly as `Display` writes them, without the
    /// formatter: the access log writes three such fields per request.
    pub fn push_to(&self, out: &mut Vec<u8>) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for &b in self.0 {
            if plain(b) {
                out.push(b);
            } else {
                out.extend_from_slice(&[
                    b'\\',
                    b'x',
                    HEX[usize::from(b >> 4)],
                    HEX[usize::from(b & 15)],
                ]);
            }
        }
    }
}

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while !rest.is_empty() {
            let run = rest.iter().position(|&b| !plain(b)).unwrap_or(rest.len());
            if run > 0 {
                // Only printable ASCII up to here, so this cannot fail.
                f.write_str(std::str::from_utf8(&rest[..run]).map_err(|_| fmt::Error)?)?;
            }
            if let Some(&b) = rest.get(run) {
                write!(f, "\\x{b:02x}")?;
                rest = &rest[run + 1..];
            } else {
                rest = &[];
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_to_writes_what_display_writes_for_every_byte() {
        let all: Vec<u8> = (0..=255u8).chain(*b"plain/text").collect();
        let mut pushed = Vec::new();
        Escaped(&all).push_to(&mut pushed);
        assert_eq!(
            String::from_utf8(pushed).ok(),
            Some(Escaped(&all).to_string())
        );
    }
}
