//! Config errors: `FILE:LINE:COL: message (group 'g', route 'r')`, one or more.

use std::fmt;
use std::ops::Range;
use toml::Spanned;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// The file could not be read.
    Io,
    /// Not valid TOML, an unknown key or a value of the wrong type.
    Syntax,
    /// Valid TOML whose meaning is wrong (a bad duration, regex, template, …).
    Invalid,
}

/// One problem in a config file, with its position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    file: String,
    line: usize,
    column: usize,
    message: String,
    group: Option<String>,
    route: Option<String>,
    kind: Kind,
}

impl Diagnostic {
    /// A TOML syntax or type error, at its span (`text` is what was parsed).
    pub(crate) fn toml(file: &str, text: &str, err: &toml::de::Error) -> Diagnostic {
        let at = err.span().map_or(0, |s| s.start.min(text.len()));
        let (line, column) = line_col(text, at);
        let (group, route) = enclosing_route(text, at);
        Diagnostic {
            file: file.to_string(),
            line,
            column,
            message: did_you_mean(err.message().trim_end()).replace('\n', "; "),
            group,
            route,
            kind: Kind::Syntax,
        }
    }
}

/// serde's `unknown field `lisen`, expected one of `listen`, …` with `; did you mean
/// `listen`?` added when one expected name is within two edits of the unknown one.
fn did_you_mean(message: &str) -> String {
    let suggestion = (|| {
        let rest = message.strip_prefix("unknown field `")?;
        let (unknown, rest) = rest.split_once('`')?;
        let expected = rest.split_once("expected")?.1;
        nearest(unknown, expected.split('`').skip(1).step_by(2)).map(str::to_string)
    })();
    match suggestion {
        Some(name) => format!("{message}; did you mean `{name}`?"),
        None => message.to_string(),
    }
}

/// The candidate within two edits of `name` (the closest; the first of equals), for a
/// "did you mean".
pub(crate) fn nearest<'c>(name: &str, candidates: impl IntoIterator<Item = &'c str>) -> Option<&'c str> {
    candidates
        .into_iter()
        .filter(|c| *c != name)
        .map(|c| (edit_distance(name, c), c))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// `; did you mean 'X'?` when a candidate is near `name`, else nothing.
pub(crate) fn did_you_mean_suffix<'c>(name: &str, candidates: impl IntoIterator<Item = &'c str>) -> String {
    nearest(name, candidates).map_or_else(String::new, |c| format!("; did you mean '{c}'?"))
}

/// Levenshtein distance of two short names (bytes).
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, &x) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, &y) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(x != y))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

impl Diagnostic {
    /// The file name as given to [`super::load_file`] or [`super::parse`].
    pub fn file(&self) -> &str {
        &self.file
    }

    /// 1-based line; 0 when the problem has no position (an unreadable file).
    pub fn line(&self) -> usize {
        self.line
    }

    /// 1-based column in characters; 0 when the problem has no position.
    pub fn column(&self) -> usize {
        self.column
    }

    /// What is wrong, without the position or the group/route names.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The `[[groups]]` name the problem is about, if any.
    pub fn group(&self) -> Option<&str> {
        self.group.as_deref()
    }

    /// The route name the problem is about, if any.
    pub fn route(&self) -> Option<&str> {
        self.route.as_deref()
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)?;
        } else {
            write!(f, "{}:{}:{}: {}", self.file, self.line, self.column, self.message)?;
        }
        match (&self.group, &self.route) {
            (Some(g), Some(r)) => write!(f, " (group '{g}', route '{r}')"),
            (Some(g), None) => write!(f, " (group '{g}')"),
            (None, Some(r)) => write!(f, " (route '{r}')"),
            (None, None) => Ok(()),
        }
    }
}

/// Why a config could not be loaded: one or more [`Diagnostic`]s, in file order as far
/// as they were found. The accessors answer for the first; `Display` prints them all,
/// one per line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    diagnostics: Vec<Diagnostic>,
}

impl ConfigError {
    pub(crate) fn from_diagnostics(diagnostics: Vec<Diagnostic>) -> ConfigError {
        debug_assert!(!diagnostics.is_empty());
        ConfigError { diagnostics }
    }

    pub(crate) fn io(file: &str, err: &std::io::Error) -> ConfigError {
        ConfigError::from_diagnostics(vec![Diagnostic {
            file: file.to_string(),
            line: 0,
            column: 0,
            message: format!("cannot read the config file: {err}"),
            group: None,
            route: None,
            kind: Kind::Io,
        }])
    }

    /// Every problem found (at least one).
    pub fn diagnostics(&self) -> &[Diagnostic] {
        &self.diagnostics
    }

    fn first(&self) -> &Diagnostic {
        &self.diagnostics[0]
    }

    /// The file of the first problem.
    pub fn file(&self) -> &str {
        self.first().file()
    }

    /// The line of the first problem (1-based; 0 = no position).
    pub fn line(&self) -> usize {
        self.first().line()
    }

    /// The column of the first problem (1-based; 0 = no position).
    pub fn column(&self) -> usize {
        self.first().column()
    }

    /// The message of the first problem.
    pub fn message(&self) -> &str {
        self.first().message()
    }

    /// True when the file could not be read at all.
    pub fn is_io(&self) -> bool {
        self.first().kind == Kind::Io
    }

    /// True when the file is not valid TOML or does not have the expected shape
    /// (unknown key, wrong type), as opposed to a value that is wrong.
    pub fn is_syntax(&self) -> bool {
        self.first().kind == Kind::Syntax
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// The names of the `[[groups]]` entry and route whose text contains byte `at`, when
/// the file is valid TOML (a type error or an unknown key inside a route).
fn enclosing_route(text: &str, at: usize) -> (Option<String>, Option<String>) {
    use toml::de::{DeTable, DeValue};
    fn extent(v: &Spanned<DeValue<'_>>) -> Range<usize> {
        let mut r = v.span();
        let mut widen = |c: Range<usize>| {
            r.start = r.start.min(c.start);
            r.end = r.end.max(c.end);
        };
        match v.get_ref() {
            DeValue::Table(t) => {
                for (k, x) in t.iter() {
                    widen(k.span());
                    widen(extent(x));
                }
            }
            DeValue::Array(a) => a.iter().for_each(|x| widen(extent(x))),
            _ => {}
        }
        r
    }
    fn find<'a, 'i>(
        v: Option<&'a Spanned<DeValue<'i>>>,
        at: usize,
    ) -> Option<(&'a DeTable<'i>, Option<String>)> {
        let list = v?.get_ref().as_array()?;
        let hit = list.iter().find(|x| extent(x).contains(&at))?;
        let table = hit.get_ref().as_table()?;
        let name = table
            .get("name")
            .and_then(|n| n.get_ref().as_str())
            .map(str::to_string);
        Some((table, name))
    }
    let Ok(doc) = DeTable::parse(text) else {
        return (None, None);
    };
    let Some((group, gname)) = find(doc.get_ref().get("groups"), at) else {
        return (None, None);
    };
    let rname = find(group.get("routes"), at).and_then(|(_, n)| n);
    (gname, rname)
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.bytes().filter(|&b| b == b'\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |p| p + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// Collects diagnostics for one file.
#[derive(Debug)]
pub(crate) struct Diagnostics<'a> {
    pub file: &'a str,
    pub text: &'a str,
    pub list: Vec<Diagnostic>,
    /// Byte offset of the start of every line, for positions in O(log n): a
    /// 10,000-route file asks for one per route.
    line_starts: Vec<usize>,
}

impl<'a> Diagnostics<'a> {
    pub fn new(file: &'a str, text: &'a str) -> Self {
        let line_starts = std::iter::once(0)
            .chain(memchr::memchr_iter(b'\n', text.as_bytes()).map(|p| p + 1))
            .collect();
        Diagnostics {
            file,
            text,
            list: Vec::new(),
            line_starts,
        }
    }

    /// 1-based line and column (in characters) of byte `offset`, as [`line_col`].
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = self.line_starts.partition_point(|&s| s <= offset);
        let start = self.line_starts[line - 1];
        (line, self.text[start..offset].chars().count() + 1)
    }

    /// Records a problem at byte `span.start` of the file.
    pub fn at(
        &mut self,
        span: Range<usize>,
        message: impl Into<String>,
        group: Option<&str>,
        route: Option<&str>,
    ) {
        let (line, column) = self.line_col(span.start);
        self.list.push(Diagnostic {
            file: self.file.to_string(),
            line,
            column,
            message: message.into(),
            group: group.map(str::to_string),
            route: route.map(str::to_string),
            kind: Kind::Invalid,
        });
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn into_error(mut self) -> ConfigError {
        self.list.sort_by_key(|d| (d.line, d.column));
        ConfigError::from_diagnostics(self.list)
    }
}

/// The byte offset in the file of byte `offset` of a string value whose TOML source
/// is `text[span]`. Exact for literal strings and for basic strings (escapes are walked);
/// a multi-line string gives the start of the value.
pub(crate) fn offset_in_string(text: &str, span: &Range<usize>, offset: usize) -> usize {
    let Some(raw) = text.get(span.clone()) else {
        return span.start;
    };
    if raw.starts_with("'''") || raw.starts_with("\"\"\"") {
        return span.start;
    }
    if raw.starts_with('\'') {
        return (span.start + 1 + offset).min(span.end.saturating_sub(1));
    }
    if !raw.starts_with('"') {
        return span.start;
    }
    // Walk the basic string, counting decoded bytes.
    let body = &raw[1..];
    let mut decoded = 0;
    let mut chars = body.char_indices().peekable();
    while let Some((pos, c)) = chars.next() {
        if decoded >= offset || c == '"' {
            return span.start + 1 + pos;
        }
        if c == '\\' {
            let Some((_, e)) = chars.next() else { break };
            let hex = match e {
                'u' => 4,
                'U' => 8,
                'x' => 2,
                _ => 0,
            };
            if hex == 0 {
                decoded += 1;
            } else {
                let mut digits = String::new();
                for _ in 0..hex {
                    if let Some((_, d)) = chars.next() {
                        digits.push(d);
                    }
                }
                decoded += u32::from_str_radix(&digits, 16)
                    .ok()
                    .and_then(char::from_u32)
                    .map_or(1, char::len_utf8);
            }
        } else {
            decoded += c.len_utf8();
        }
    }
    span.start
}
