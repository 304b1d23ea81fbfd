//! A CSV file as arrow-csv should read it: without a byte-order mark, and watched for a
//! quoted field still open at the end of the input (a truncated file).

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

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

/// Where a read cut the input at a record's end (`CsvInput::cut_every`): the read after the
/// cut returned no bytes, which is not the end of the input. Shared, as [`Unterminated`].
#[derive(Clone, Debug, Default)]
pub(crate) struct Cuts(Arc<AtomicBool>);

impl Cuts {
    /// Whether the last empty read was a cut (and forgets it).
    pub(crate) fn take(&self) -> bool {
        self.0.swap(false, Ordering::Relaxed)
    }
}

/// csv-core's quoting as it goes, byte by byte, and the line it is on.
#[derive(Clone, Copy, Debug)]
struct Quotes {
    quote: u8,
    delimiter: u8,
    state: Quoting,
    line: u64,
    opened_at: u64,
}

/// A CSV file as arrow-csv should read it: without a leading UTF-8 byte-order mark (which
/// would otherwise stick to the first column's name), and watched for a quoted field still
/// open at the end of the input. csv-core ends such a field silently, so a truncated file
/// (`4,"unterminat`) would be imported with the rest of the file inside one string.
///
/// With [`CsvInput::cut_every`], it also cuts the input at a record's end once so many bytes
/// have passed (the last one in the read that passed them), with an empty read, so that a
/// reader can make a batch there: arrow-csv counts a batch in rows, and 65,536 rows of 40 KB
/// are 2.6 GB.
pub(crate) struct CsvInput<R> {
    inner: R,
    started: bool,
    quotes: Quotes,
    unterminated: Unterminated,
    cut_every: Option<usize>,
    /// Bytes handed out since the last cut.
    since_cut: usize,
    /// Bytes read from `inner` and not handed out yet (after a cut), from `pending_at`.
    pending: Vec<u8>,
    pending_at: usize,
    /// The next read is the cut.
    cut_next: bool,
    cuts: Cuts,
}

impl<R: Read> CsvInput<R> {
    pub(crate) fn new(inner: R, quote: u8, delimiter: u8) -> (Self, Unterminated) {
        let unterminated = Unterminated::default();
        let input = Self {
            inner,
            started: false,
            quotes: Quotes {
                quote,
                delimiter,
                state: Quoting::FieldStart,
                line: 1,
                opened_at: 0,
            },
            unterminated: unterminated.clone(),
            cut_every: None,
            since_cut: 0,
            pending: Vec::new(),
            pending_at: 0,
            cut_next: false,
            cuts: Cuts::default(),
        };
        (input, unterminated)
    }

    /// Cuts the input at a record's end once `bytes` have passed since the last cut (an empty
    /// read, which [`Cuts::take`] tells from the end). A record is never cut inside, however
    /// long.
    pub(crate) fn cut_every(mut self, bytes: usize) -> (Self, Cuts) {
        self.cut_every = Some(bytes.max(1));
        let cuts = self.cuts.clone();
        (self, cuts)
    }

    /// Bytes into `buf`: those a cut left first, else the inner reader's (the first of them
    /// without a byte-order mark).
    fn read_bytes(&mut self, buf: &mut [u8]) -> std::io::Result<(usize, bool)> {
        if self.pending_at < self.pending.len() {
            let rest = &self.pending[self.pending_at..];
            let n = rest.len().min(buf.len());
            buf[..n].copy_from_slice(&rest[..n]);
            self.pending_at += n;
            return Ok((n, true));
        }
        if self.started {
            return Ok((self.inner.read(buf)?, false));
        }
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
                return self.read_bytes(buf);
            }
        }
        Ok((n, false))
    }

    /// `n` bytes read into `buf`, shortened to the last record's end in them when the bytes
    /// since the last cut pass the bound; the rest wait for the read after the cut.
    fn cut(&mut self, buf: &[u8], n: usize, from_pending: bool) -> usize {
        let Some(every) = self.cut_every else {
            return n;
        };
        self.since_cut += n;
        if self.since_cut <= every {
            return n;
        }
        let Some(end) = self.quotes.last_record_end(&buf[..n]) else {
            return n; // a long record: cut at the end of the first one after it
        };
        if from_pending {
            self.pending_at -= n - end;
        } else {
            self.pending = buf[end..n].to_vec();
            self.pending_at = 0;
        }
        self.since_cut = 0;
        self.cut_next = true;
        end
    }
}

impl Quotes {
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

    /// Where the last record in `bytes` (read from here on) ends: just past a line break
    /// outside a quoted field.
    fn last_record_end(&self, bytes: &[u8]) -> Option<usize> {
        let mut quotes = *self;
        let mut end = None;
        for (i, &b) in bytes.iter().enumerate() {
            quotes.step(b);
            if b == b'\n' && quotes.state == Quoting::FieldStart {
                end = Some(i + 1);
            }
        }
        end
    }
}

impl<R: Read> Read for CsvInput<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if std::mem::take(&mut self.cut_next) {
            self.cuts.0.store(true, Ordering::Relaxed);
            return Ok(0);
        }
        let (n, from_pending) = self.read_bytes(buf)?;
        if n == 0 && self.quotes.state == Quoting::Quoted {
            self.unterminated
                .0
                .store(self.quotes.opened_at, Ordering::Relaxed);
        }
        let n = self.cut(buf, n, from_pending);
        self.quotes.scan(&buf[..n]);
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
            input.quotes.step(b);
        }
        let q = input.quotes;
        (q.state, q.line, q.opened_at)
    }

    fn fast(chunks: &[&[u8]]) -> (Quoting, u64, u64) {
        let (mut input, _) = CsvInput::new(std::io::empty(), b'"', b',');
        for chunk in chunks {
            input.quotes.scan(chunk);
        }
        let q = input.quotes;
        (q.state, q.line, q.opened_at)
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

#[cfg(test)]
mod cut_tests {
    use super::*;
    use std::io::BufRead;

    /// What `text` reads as through a `CsvInput` cutting every `every` bytes, in pieces cut
    /// apart (a 1 KiB buffer, as a reader's).
    fn pieces(text: &[u8], every: usize) -> Vec<Vec<u8>> {
        let (input, _) = CsvInput::new(text, b'"', b',');
        let (input, cuts) = input.cut_every(every);
        let mut reader = std::io::BufReader::with_capacity(1024, input);
        let mut pieces = vec![Vec::new()];
        loop {
            let buf = reader.fill_buf().unwrap();
            if buf.is_empty() {
                if cuts.take() {
                    pieces.push(Vec::new());
                    continue;
                }
                break;
            }
            pieces.last_mut().unwrap().extend_from_slice(buf);
            let n = buf.len();
            reader.consume(n);
        }
        pieces
    }

    #[test]
    fn a_cut_falls_at_a_records_end_past_the_bytes_and_loses_nothing() {
        let mut text = b"\xEF\xBB\xBFid,note\n".to_vec();
        for i in 0..400 {
            // Quoted line breaks are not records' ends.
            text.extend_from_slice(format!("{i},\"a\nb \"\"{i}\"\"\"\r\n").as_bytes());
        }
        let cut = pieces(&text, 1000);
        assert!(cut.len() > 4, "{}", cut.len());
        assert_eq!(
            cut.concat(),
            text[3..].to_vec(),
            "every byte once, in order"
        );
        for piece in &cut[..cut.len() - 1] {
            assert!(piece.ends_with(b"\"\r\n"), "{piece:?}");
            let records = piece.windows(2).filter(|w| w == b"\r\n").count();
            assert!(records >= 1);
        }
        // A record longer than the bound is never cut inside.
        let long = format!("id,note\n1,\"{}\"\n2,x\n", "y\n".repeat(5000));
        let long_cut = pieces(long.as_bytes(), 100);
        let whole = long_cut
            .iter()
            .any(|p| p.starts_with(b"1,\"") && p.windows(2).any(|w| w == b"\"\n"));
        assert!(whole, "{long_cut:?}");
        assert_eq!(long_cut.concat(), long.as_bytes());
    }
}
