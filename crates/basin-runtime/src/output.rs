//! What Basin keeps of a function's output in memory.

use std::sync::Arc;

use crate::options::{RuntimeCounters, RuntimeOptions};

/// An invocation's output lines as kept in memory: up to `[functions] max_output_lines` and
/// `max_output_size`, then only a count of the lines left out, said at the end. (A line is
/// at most 64 KiB, so lines alone would let one invocation keep 640 MiB at the default.)
#[derive(Debug, Default)]
pub struct OutputLog {
    text: String,
    lines: usize,
    max_lines: usize,
    max_bytes: usize,
    dropped: usize,
    counters: Arc<RuntimeCounters>,
}

impl OutputLog {
    /// A log kept within `options`' limits; a cut one is counted in its counters.
    pub fn new(options: &RuntimeOptions) -> Self {
        Self {
            max_lines: options.max_output_lines,
            max_bytes: options.max_output_size,
            counters: options.counters.clone(),
            ..Self::default()
        }
    }

    pub fn push(&mut self, line: &str) {
        if self.lines >= self.max_lines || self.text.len() + line.len() >= self.max_bytes {
            self.dropped += 1;
            return;
        }
        self.lines += 1;
        self.text.push_str(line);
        self.text.push('\n');
    }

    /// The kept lines, each ending in a newline, and a last line saying how many were left
    /// out.
    pub fn take(&mut self) -> String {
        let mut text = std::mem::take(&mut self.text);
        if self.dropped > 0 {
            RuntimeCounters::count(&self.counters.output_cut);
            text.push_str(&format!(
                "[basin: {} more lines not kept: the log keeps {} lines (`[functions] max_output_lines`) and {} (`max_output_size`)]\n",
                self.dropped,
                self.max_lines,
                basin_core::units::format_size(self.max_bytes as u64)
            ));
        }
        self.lines = 0;
        self.dropped = 0;
        text
    }

    /// `take`, as lines.
    pub fn take_lines(&mut self) -> Vec<String> {
        self.take().lines().map(str::to_string).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    #[test]
    fn the_log_keeps_lines_up_to_its_bytes_and_says_how_many_it_left_out() {
        let options = RuntimeOptions {
            max_output_size: 1 << 20,
            ..RuntimeOptions::default()
        };
        let mut log = OutputLog::new(&options);
        let line = "x".repeat(64 << 10);
        for _ in 0..100 {
            log.push(&line);
        }
        let text = log.take();
        assert!(text.len() <= (1 << 20) + 200, "{}", text.len());
        assert!(text.ends_with("[basin: 85 more lines not kept: the log keeps 10000 lines (`[functions] max_output_lines`) and 1 MiB (`max_output_size`)]\n"), "{}", &text[text.len() - 200..]);
        assert_eq!(options.counters.output_cut.load(Ordering::Relaxed), 1);
        log.push("short");
        assert_eq!(log.take_lines(), ["short"]);
        assert_eq!(options.counters.output_cut.load(Ordering::Relaxed), 1);
    }
}
