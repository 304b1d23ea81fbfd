//! What Basin keeps of a function's output in memory.

/// An invocation's output lines as kept in memory: up to a number of lines and
/// [`MAX_LOG_BYTES`], then only a count of the lines left out, said at the end. (A line is at
/// most 64 KiB, so lines alone would let one invocation keep 640 MiB at the default.)
#[derive(Debug, Default)]
pub struct OutputLog {
    text: String,
    lines: usize,
    max_lines: usize,
    dropped: usize,
}

impl OutputLog {
    pub fn new(max_lines: usize) -> Self {
        Self {
            max_lines,
            ..Self::default()
        }
    }

    pub fn push(&mut self, line: &str) {
        if self.lines >= self.max_lines || self.text.len() + line.len() >= MAX_LOG_BYTES {
            self.dropped += 1;
            return;
        }
        self.lines += 1;
        self.text.push_str(line);
        self.text.push('\n');
    }

    /// The kept lines, and a last line saying how many were left out.
    pub fn take(&mut self) -> String {
        let mut text = std::mem::take(&mut self.text);
        if self.dropped > 0 {
            text.push_str(&format!(
                "[basin: {} more lines not kept: the log keeps {} lines (`[functions] max_output_lines`) and {} MiB]\n",
                self.dropped,
                self.max_lines,
                MAX_LOG_BYTES >> 20
            ));
        }
        self.lines = 0;
        self.dropped = 0;
        text
    }
}

/// The most bytes of output kept per invocation.
pub const MAX_LOG_BYTES: usize = 1 << 20;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_keeps_lines_up_to_its_bytes_and_says_how_many_it_left_out() {
        let mut log = OutputLog::new(10_000);
        let line = "x".repeat(64 << 10);
        for _ in 0..100 {
            log.push(&line);
        }
        let text = log.take();
        assert!(text.len() <= MAX_LOG_BYTES + 200, "{}", text.len());
        assert!(text.ends_with("[basin: 85 more lines not kept: the log keeps 10000 lines (`[functions] max_output_lines`) and 1 MiB]\n"), "{}", &text[text.len() - 200..]);
    }
}
