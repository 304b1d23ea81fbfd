//! A CSV file as arrow-csv should read it: without a byte-order mark, and watched for a
//! quoted field still open at the end of the input (a truncated file).

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use basin_core::Error;

use crate::input_files::InputFile;

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Where a CSV reader is in the quoting, following csv-core's rules: a quote opens a quoted
/// field only at the start of a field, and `""` inside one is a literal quote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Quoting {
    FieldStart,
    Unquoted,
    Quoted,
    /// A quote inside a quoted field: the field's end, or the first half of `""`.
    QuoteInQuoted,
}

/// What the reader saw by the end of the input: 0 while quoting is balanced, else the line
/// where the field still open began. Shared, because arrow-csv owns the reader.
#[derive(Clone, Debug, Default)]
pub(crate) struct Unterminated(Arc<AtomicU64>);

impl Unterminated {
    pub(crate) fn line(&self) -> Option<u64> {
        Some(self.0.load(Ordering::Relaxed)).filter(|&l| l > 0)
    }
}

/// A CSV file as arrow-csv should read it: without a leading UTF-8 byte-order mark (which
/// would otherwise stick to the first column's name), and watched for a quoted field still
/// open at the end of the input. csv-core ends such a field silently, so a truncated file
/// (`4,"unterminat`) would be imported with the rest of the file inside one string.
pub(crate) struct CsvInput<R> {
    inner: R,
    started: bool,
    quote: u8,
    delimiter: u8,
    state: Quoting,
    line: u64,
    opened_at: u64,
    unterminated: Unterminated,
}

impl<R: Read> CsvInput<R> {
    pub(crate) fn new(inner: R, quote: u8, delimiter: u8) -> (Self, Unterminated) {
        let unterminated = Unterminated::default();
        let input = Self {
            inner,
            started: false,
            quote,
            delimiter,
            state: Quoting::FieldStart,
            line: 1,
            opened_at: 0,
            unterminated: unterminated.clone(),
        };
        (input, unterminated)
    }

    /// Follows the quoting over `bytes`. Runs without a quote byte (all of most files) are
    /// crossed at once: their lines counted with memchr, the state set by their last byte.
    fn scan(&mut self, bytes: &[u8]) {
        let mut rest = bytes;
        while let Some(at) = memchr::memchr(self.quote, rest) {
            self.scan_without_quotes(&rest[..at]);
            self.step(rest[at]);
            rest = &rest[at + 1..];
        }
        self.scan_without_quotes(rest);
    }

    /// A run with no quote byte: inside a quoted field it stays there; anywhere else each
    /// byte alone decides the state after it, so the last one does.
    fn scan_without_quotes(&mut self, run: &[u8]) {
        let Some(&last) = run.last() else {
            return;
        };
        self.line += memchr::memchr_iter(b'\n', run).count() as u64;
        if self.state != Quoting::Quoted {
            self.state = if self.ends_field(last) {
                Quoting::FieldStart
            } else {
                Quoting::Unquoted
            };
        }
    }

    fn ends_field(&self, b: u8) -> bool {
        b == self.delimiter || b == b'\n' || b == b'\r'
    }

    /// One byte, by csv-core's rules.
    fn step(&mut self, b: u8) {
        if b == b'\n' {
            self.line += 1;
        }
        let end_of_field = self.ends_field(b);
        self.state = match self.state {
            Quoting::FieldStart | Quoting::Unquoted if end_of_field => Quoting::FieldStart,
            Quoting::FieldStart if b == self.quote => {
                self.opened_at = self.line;
                Quoting::Quoted
            }
            Quoting::FieldStart | Quoting::Unquoted => Quoting::Unquoted,
            Quoting::Quoted if b == self.quote => Quoting::QuoteInQuoted,
            Quoting::Quoted => Quoting::Quoted,
            Quoting::QuoteInQuoted if b == self.quote => Quoting::Quoted,
            Quoting::QuoteInQuoted if end_of_field => Quoting::FieldStart,
            Quoting::QuoteInQuoted => Quoting::Unquoted,
        };
    }
}

impl<R: Read> Read for CsvInput<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = if self.started {
            self.inner.read(buf)?
        } else {
            // The first bytes, gathered until a byte-order mark can be recognised.
            self.started = true;
            let mut n = 0;
            while n < BOM.len().min(buf.len()) {
                match self.inner.read(&mut buf[n..])? {
                    0 => break,
                    k => n += k,
                }
            }
            if buf[..n].starts_with(BOM) {
                buf.copy_within(BOM.len()..n, 0);
                n -= BOM.len();
                if n == 0 {
                    return self.read(buf);
                }
            }
            n
        };
        if n == 0 && self.state == Quoting::Quoted {
            self.unterminated.0.store(self.opened_at, Ordering::Relaxed);
        }
        self.scan(&buf[..n]);
        Ok(n)
    }
}

/// The error for a file that ends inside a quoted field.
pub(crate) fn unterminated_quote(file: &InputFile, line: u64) -> Error {
    Error::invalid(format!(
        "{}:{line}: a quoted field opened on this line is never closed (the file ends inside it)",
        file.display
    ))
    .with_hint("the file may be truncated (an interrupted copy or export); check its end, or close the quote")
}

#[cfg(test)]
mod scan_tests {
    use super::*;

    /// The byte-at-a-time scan, as the reference the fast one must agree with.
    fn slow(bytes: &[u8]) -> (Quoting, u64, u64) {
        let (mut input, _) = CsvInput::new(std::io::empty(), b'"', b',');
        for &b in bytes {
            input.step(b);
        }
        (input.state, input.line, input.opened_at)
    }

    fn fast(chunks: &[&[u8]]) -> (Quoting, u64, u64) {
        let (mut input, _) = CsvInput::new(std::io::empty(), b'"', b',');
        for chunk in chunks {
            input.scan(chunk);
        }
        (input.state, input.line, input.opened_at)
    }

    #[test]
    fn the_fast_scan_agrees_with_the_byte_at_a_time_one() {
        // Every string of up to 6 bytes over the bytes that matter, split at every place.
        let alphabet = [b'a', b'"', b',', b'\n', b'\r'];
        let mut cases: Vec<Vec<u8>> = vec![Vec::new()];
        for _ in 0..6 {
            let longer: Vec<Vec<u8>> = cases
                .iter()
                .filter(|c| c.len() == cases.last().unwrap().len())
                .flat_map(|c| alphabet.iter().map(move |&b| [c.as_slice(), &[b]].concat()))
                .collect();
            cases.extend(longer);
        }
        assert!(cases.len() > 15_000);
        for case in &cases {
            let want = slow(case);
            for split in 0..=case.len() {
                let (a, b) = case.split_at(split);
                assert_eq!(
                    fast(&[a, b]),
                    want,
                    "{:?} split at {split}",
                    String::from_utf8_lossy(case)
                );
            }
        }
    }
}
