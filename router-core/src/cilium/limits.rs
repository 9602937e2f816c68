//! Bounds on the YAML a person hands to either runtime (the agent's
//! configuration directory, the simulator's lab files), checked before any
//! parsing: YAML parsers spend time quadratic in flow nesting, and memory
//! with size, and no Kubernetes object comes near these bounds. Owns the
//! numbers and the checks; reading files is the runtimes' job.

use alloc::format;
use alloc::string::String;

/// The most either runtime reads of one file; a larger file is refused whole.
pub const MAX_FILE_BYTES: u64 = 4 << 20;

/// The deepest `[`/`{` nesting a file may have.
pub const MAX_NESTING: usize = 64;

/// Why `text` is refused, if it is: nested beyond [`MAX_NESTING`] (with
/// the line where it first is).
pub fn check(text: &str) -> Result<(), String> {
    match nesting_beyond(text, MAX_NESTING) {
        Some(line) => Err(format!(
            "line {line}: nested more than {MAX_NESTING} levels deep; not read"
        )),
        None => Ok(()),
    }
}

/// The message for a file of `bytes` bytes over [`MAX_FILE_BYTES`].
pub fn too_large(bytes: u64) -> String {
    format!("{bytes} bytes or more, over the limit of {MAX_FILE_BYTES} bytes per file; not read")
}

/// The line where `[`/`{` nesting outside quotes first goes beyond
/// `limit`, if it does.
pub fn nesting_beyond(text: &str, limit: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut line = 1;
    let mut quote: Option<char> = None;
    for c in text.chars() {
        match (quote, c) {
            (_, '\n') => {
                line += 1;
                quote = None;
            }
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '[' | '{') => {
                depth += 1;
                if depth > limit {
                    return Some(line);
                }
            }
            (None, ']' | '}') => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_outside_quotes_is_counted_per_line() {
        assert_eq!(nesting_beyond("a: '[[[['\nb: [1, [2]]\n", 1), Some(2));
        assert_eq!(nesting_beyond("a: [[1]]\n", 2), None);
        let deep = format!("a: {}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(
            check(&deep).unwrap_err(),
            "line 1: nested more than 64 levels deep; not read"
        );
    }
}
