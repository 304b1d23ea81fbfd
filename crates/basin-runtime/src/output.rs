//! What Basin keeps of a function's output in memory.

/// An invocation's output lines as kept in memory: up to a number of lines, then only a
/// count of the lines left out, said at the end.
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
        if self.lines >= self.max_lines {
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
                "[basin: {} more lines not kept: the log keeps {} lines (`[functions] max_output_lines`)]\n",
                self.dropped, self.max_lines
            ));
        }
        self.lines = 0;
        self.dropped = 0;
        text
    }
}
