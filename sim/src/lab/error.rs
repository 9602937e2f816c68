//! Errors in lab files, naming the file, the line and the key at fault.

use std::fmt;
use std::path::{Path, PathBuf};

/// A problem with a lab's files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabError {
    /// The file at fault.
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// The key (or key path) at fault, when known.
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl LabError {
    /// An error about `file`, located by searching its text for `needle` when given.
    pub fn at(
        file: &Path,
        text: &str,
        key: impl Into<String>,
        needle: Option<&str>,
        message: impl Into<String>,
    ) -> Self {
        LabError {
            file: file.to_path_buf(),
            line: needle.and_then(|n| line_of(text, n)),
            key: Some(key.into()),
            message: message.into(),
        }
    }

    /// An error about a whole file (missing, unreadable).
    pub fn file(file: &Path, message: impl Into<String>) -> Self {
        LabError {
            file: file.to_path_buf(),
            line: None,
            key: None,
            message: message.into(),
        }
    }

    /// A YAML syntax or schema error, with the line serde reports.
    pub fn yaml(file: &Path, err: &serde_norway::Error) -> Self {
        LabError {
            file: file.to_path_buf(),
            line: err.location().map(|l| l.line()),
            key: None,
            message: err.to_string(),
        }
    }
}

/// The 1-based line of the first occurrence of `needle` in `text`.
pub fn line_of(text: &str, needle: &str) -> Option<usize> {
    let at = text.find(needle)?;
    Some(text[..at].matches('\n').count() + 1)
}

impl fmt::Display for LabError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ": {key}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for LabError {}
