//! Generate a table of contents for a Markdown document.
//!
//! The parser is deliberately small: it recognises ATX headings (`#` to `######`), skips fenced
//! code blocks and HTML comments, and derives anchors the way common renderers do: lower-case,
//! punctuation removed, spaces turned into hyphens, and a numeric suffix for repeated anchors.

use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::io::{self, Read};

/// One heading found in the document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heading {
    pub level: u8,
    pub text: String,
    pub anchor: String,
    pub line: usize,
}

/// Options for rendering the table of contents.
#[derive(Debug, Clone)]
pub struct Options {
    /// Shallowest heading level to include (1 = `#`).
    pub min_level: u8,
    /// Deepest heading level to include.
    pub max_level: u8,
    /// Indentation per level, in spaces.
    pub indent: usize,
    /// Use numbered lists instead of bullets.
    pub numbered: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options { min_level: 2, max_level: 3, indent: 2, numbered: false }
    }
}

#[derive(Debug)]
pub enum TocError {
    InvalidLevels { min: u8, max: u8 },
    Io(io::Error),
}

impl fmt::Display for TocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TocError::InvalidLevels { min, max } => {
                write!(f, "heading levels must satisfy 1 <= min <= max <= 6, got {min} and {max}")
            }
            TocError::Io(err) => write!(f, "could not read input: {err}"),
        }
    }
}

impl std::error::Error for TocError {}

impl From<io::Error> for TocError {
    fn from(err: io::Error) -> Self {
        TocError::Io(err)
    }
}

/// Remove inline Markdown that should not appear in the table of contents.
fn plain_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '`' | '*' | '_' => {}
            '[' => {
                // Keep link text, drop the target: [text](target)
                let mut label = String::new();
                for inner in chars.by_ref() {
                    if inner == ']' {
                        break;
                    }
                    label.push(inner);
                }
                if chars.peek() == Some(&'(') {
                    for inner in chars.by_ref() {
                        if inner == ')' {
                            break;
                        }
                    }
                }
                out.push_str(&label);
            }
            _ => out.push(c),
        }
    }
    out.trim().to_string()
}

/// The anchor a renderer would give this heading text.
pub fn slug(text: &str) -> String {
    let mut slug = String::with_capacity(text.len());
    for c in plain_text(text).chars() {
        if c.is_alphanumeric() {
            slug.extend(c.to_lowercase());
        } else if c == ' ' || c == '-' {
            slug.push('-');
        } else if c == '_' {
            slug.push('_');
        }
    }
    slug
}

fn fence_marker(line: &str) -> Option<(char, usize)> {
    let trimmed = line.trim_start();
    if line.len() - trimmed.len() > 3 {
        return None;
    }
    let first = trimmed.chars().next()?;
    if first != '`' && first != '~' {
        return None;
    }
    let count = trimmed.chars().take_while(|&c| c == first).count();
    if count >= 3 {
        Some((first, count))
    } else {
        None
    }
}

fn atx_heading(line: &str) -> Option<(u8, &str)> {
    let trimmed = line.trim_start();
    if line.len() - trimmed.len() > 3 {
        return None;
    }
    let hashes = trimmed.chars().take_while(|&c| c == '#').count();
    if hashes == 0 || hashes > 6 {
        return None;
    }
    let rest = &trimmed[hashes..];
    if !rest.is_empty() && !rest.starts_with(' ') && !rest.starts_with('\t') {
        return None;
    }
    // Strip an optional closing sequence of hashes.
    let text = rest.trim();
    let text = text.trim_end_matches('#').trim_end();
    Some((hashes as u8, text))
}

/// Find every heading outside code blocks and comments.
pub fn headings(markdown: &str) -> Vec<Heading> {
    let mut found = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut fence: Option<(char, usize)> = None;
    let mut in_comment = false;

    for (number, line) in markdown.lines().enumerate() {
        if in_comment {
            if line.contains("-->") {
                in_comment = false;
            }
            continue;
        }
        if let Some((marker, count)) = fence {
            if let Some((m, c)) = fence_marker(line) {
                if m == marker && c >= count {
                    fence = None;
                }
            }
            continue;
        }
        if let Some(opened) = fence_marker(line) {
            fence = Some(opened);
            continue;
        }
        if line.trim_start().starts_with("<!--") && !line.contains("-->") {
            in_comment = true;
            continue;
        }
        if let Some((level, text)) = atx_heading(line) {
            if text.is_empty() {
                continue;
            }
            let base = slug(text);
            let count = seen.entry(base.clone()).or_insert(0);
            let anchor = if *count == 0 { base.clone() } else { format!("{base}-{count}") };
            *count += 1;
            found.push(Heading { level, text: plain_text(text), anchor, line: number + 1 });
        }
    }
    found
}

/// Render the table of contents as a Markdown list.
pub fn render(headings: &[Heading], options: &Options) -> Result<String, TocError> {
    if options.min_level < 1 || options.max_level > 6 || options.min_level > options.max_level {
        return Err(TocError::InvalidLevels { min: options.min_level, max: options.max_level });
    }
    let selected: Vec<&Heading> = headings
        .iter()
        .filter(|h| h.level >= options.min_level && h.level <= options.max_level)
        .collect();
    let top = selected.iter().map(|h| h.level).min().unwrap_or(options.min_level);
    let mut counters = [0usize; 7];
    let mut out = String::new();
    for heading in selected {
        let depth = (heading.level - top) as usize;
        counters[heading.level as usize] += 1;
        for deeper in (heading.level as usize + 1)..counters.len() {
            counters[deeper] = 0;
        }
        let marker = if options.numbered {
            format!("{}.", counters[heading.level as usize])
        } else {
            "-".to_string()
        };
        let _ = writeln!(
            out,
            "{}{} [{}](#{})",
            " ".repeat(depth * options.indent),
            marker,
            heading.text,
            heading.anchor
        );
    }
    Ok(out)
}

/// Replace the text between `<!-- toc -->` and `<!-- tocstop -->` with a fresh table of contents.
pub fn update_in_place(markdown: &str, options: &Options) -> Result<String, TocError> {
    let toc = render(&headings(markdown), options)?;
    let start_tag = "<!-- toc -->";
    let end_tag = "<!-- tocstop -->";
    match (markdown.find(start_tag), markdown.find(end_tag)) {
        (Some(start), Some(end)) if start < end => {
            let mut result = String::with_capacity(markdown.len() + toc.len());
            result.push_str(&markdown[..start + start_tag.len()]);
            result.push('\n');
            result.push_str(&toc);
            result.push_str(&markdown[end..]);
            Ok(result)
        }
        _ => Ok(markdown.to_string()),
    }
}

fn main() -> Result<(), TocError> {
    let mut input = String::new();
    io::stdin().read_to_string(&mut input)?;
    let mut options = Options::default();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--min" => {
                i += 1;
                options.min_level = args.get(i).and_then(|v| v.parse().ok()).unwrap_or(2);
            }
            "--max" => {
                i += 1;
                options.max_level = args.get(i).and_then(|v| v.parse().ok()).unwrap_or(3);
            }
            "--numbered" => options.numbered = true,
            "--in-place" => {
                print!("{}", update_in_place(&input, &options)?);
                return Ok(());
            }
            other => eprintln!("ignoring unknown argument {other}"),
        }
        i += 1;
    }
    print!("{}", render(&headings(&input), &options)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slug_lowercases_and_hyphenates() {
        assert_eq!(slug("Getting Started"), "getting-started");
        assert_eq!(slug("What's new in `v2`?"), "whats-new-in-v2");
    }

    #[test]
    fn repeated_headings_get_numbered_anchors() {
        let doc = "## Usage\n## Usage\n## Usage\n";
        let anchors: Vec<String> = headings(doc).into_iter().map(|h| h.anchor).collect();
        assert_eq!(anchors, vec!["usage", "usage-1", "usage-2"]);
    }

    #[test]
    fn headings_inside_code_fences_are_ignored() {
        let doc = "## Real\n```\n## Not a heading\n```\n## Also real\n";
        let texts: Vec<String> = headings(doc).into_iter().map(|h| h.text).collect();
        assert_eq!(texts, vec!["Real", "Also real"]);
    }

    #[test]
    fn links_keep_their_text() {
        assert_eq!(plain_text("See [the guide](guide.md) first"), "See the guide first");
    }

    #[test]
    fn invalid_levels_are_rejected() {
        let options = Options { min_level: 4, max_level: 2, ..Options::default() };
        assert!(render(&[], &options).is_err());
    }
}
