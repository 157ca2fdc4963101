//! Reparsing only the route tables that changed.
//!
//! A reload of a 10,000-route file that changes one route parsed all 1.1 MB of TOML
//! again: half of what the reload cost (docs/benchmarks.md, "Reload of 10,000 rules
//! under load"). [`RouteTables`] keeps, from the last parse, the text of every
//! `[[groups.routes]]` table and what it parsed to. The next parse blanks out (with
//! spaces, so every offset stays) each route table whose text it finds there,
//! parses the rest, and puts the kept routes back in file order, their spans moved
//! to where their table is now. (Cutting a table to a stub instead costs as much as
//! parsing it: the parser's cost is per table, not per byte.)
//!
//! This is a shortcut with a proof obligation: the result must be what a full parse
//! gives. A route table's meaning depends only on its text when nothing but the next
//! header can end it and nothing after it can add to it. So the shortcut is taken
//! only when
//!
//! - every table header under `groups` is `[[groups]]` or `[[groups.routes]]` (no
//!   `[groups.routes.path]`, no quoted keys), and the first route follows a
//!   `[[groups]]`;
//! - no group with a blanked table says `routes` in its own table, or has a
//!   backslash there that could spell it (an inline `routes = []` and a
//!   `[[groups.routes]]` are an error that blanking would hide);
//! - what the parse returns adds up: as many groups as `[[groups]]` headers, as many
//!   fresh routes in each as tables not reused, every route's span inside its table.
//!
//! Anything else is a full parse. The tests compare both parses, spans included.

use super::file::{FileConfig, MockFile, PathFile, PredicateFile, RetryFile, RouteFile};
use std::ops::Range;
use toml::Spanned;

/// The route tables of the last file parsed, for the next parse.
#[derive(Debug, Default)]
pub(crate) struct RouteTables {
    text: String,
    /// Every route table of `text`: where it was, and what it parsed to (taken when
    /// reused).
    kept: Vec<(Range<usize>, Option<Spanned<RouteFile>>)>,
    /// (hash of a table's text, its index in `kept`), sorted.
    by_hash: Vec<(u64, usize)>,
}

/// The route tables of a text, hashed: what [`RouteTables::reparse`] found, for
/// [`RouteTables::keep`] to reuse.
#[derive(Debug)]
pub(crate) struct Layout {
    groups: Vec<Group>,
    /// The hash of every table's text, in file order.
    hashes: Vec<u64>,
}

impl Layout {
    fn of(text: &str) -> Option<Layout> {
        let groups = route_tables(text)?;
        let hashes = groups
            .iter()
            .flat_map(|g| &g.tables)
            .map(|r| super::fnv1a(&text.as_bytes()[r.clone()]))
            .collect();
        Some(Layout { groups, hashes })
    }
}

/// A table header, by what it means for route tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Header {
    /// `[[groups]]`.
    Group,
    /// `[[groups.routes]]`.
    Route,
    /// A table outside `groups`.
    Other,
}

/// One `[[groups]]` of a file: its own table (header line to the next header line)
/// and the byte ranges of its `[[groups.routes]]` tables (the same).
#[derive(Debug)]
struct Group {
    body: Range<usize>,
    tables: Vec<Range<usize>>,
}

/// The groups of a file and their route tables.
fn route_tables(text: &str) -> Option<Vec<Group>> {
    let heads = headers(text.as_bytes())?;
    let mut groups: Vec<Group> = Vec::new();
    for (k, &(at, h)) in heads.iter().enumerate() {
        let end = heads.get(k + 1).map_or(text.len(), |&(next, _)| next);
        match h {
            Header::Group => groups.push(Group {
                body: at..end,
                tables: Vec::new(),
            }),
            Header::Route => groups.last_mut()?.tables.push(at..end),
            Header::Other => {}
        }
    }
    Some(groups)
}

/// Where each table header's line starts, and what it is. `None` when a header
/// under `groups` is not one the shortcut understands, or the text does not lex
/// (the full parse then says what is wrong).
fn headers(t: &[u8]) -> Option<Vec<(usize, Header)>> {
    let mut out = Vec::new();
    let (mut i, mut depth, mut line_start) = (0, 0usize, true);
    while i < t.len() {
        if line_start {
            line_start = false;
            let start = i;
            while i < t.len() && matches!(t[i], b' ' | b'\t') {
                i += 1;
            }
            if t.get(i) == Some(&b'[') {
                let (h, end) = header(t, i)?;
                out.push((start, h));
                i = end;
            }
            continue;
        }
        match t[i] {
            b'\n' => {
                line_start = depth == 0;
                i += 1;
            }
            b'#' => {
                while i < t.len() && t[i] != b'\n' {
                    i += 1;
                }
            }
            b'"' | b'\'' => i = string_end(t, i)?,
            b'[' | b'{' => {
                depth += 1;
                i += 1;
            }
            b']' | b'}' => {
                depth = depth.checked_sub(1)?;
                i += 1;
            }
            _ => i += 1,
        }
    }
    Some(out)
}

/// The header starting at `t[i] == '['`: what it is and where it ends.
fn header(t: &[u8], i: usize) -> Option<(Header, usize)> {
    let array = t.get(i + 1) == Some(&b'[');
    let open = if array { i + 2 } else { i + 1 };
    let close = open + t[open..].iter().position(|&b| b == b']' || b == b'\n')?;
    if t[close] != b']' || (array && t.get(close + 1) != Some(&b']')) {
        return None;
    }
    let raw = &t[open..close];
    let key: Vec<u8> = raw
        .iter()
        .copied()
        .filter(|b| !matches!(b, b' ' | b'\t'))
        .collect();
    let under_groups = key == b"groups" || key.starts_with(b"groups.");
    let h = if raw.iter().any(|b| matches!(b, b'"' | b'\'')) {
        // A quoted key could name `groups` in another spelling.
        return None;
    } else if array && key == b"groups" {
        Header::Group
    } else if array && key == b"groups.routes" {
        Header::Route
    } else if under_groups {
        return None;
    } else {
        Header::Other
    };
    Some((h, if array { close + 2 } else { close + 1 }))
}

/// Where the string starting at `t[i]` (a quote) ends: after its closing quote(s).
/// `None` when a multi-line string never closes.
fn string_end(t: &[u8], i: usize) -> Option<usize> {
    let q = t[i];
    let basic = q == b'"';
    if t[i..].starts_with(&[q, q, q]) {
        let mut j = i + 3;
        loop {
            match *t.get(j)? {
                b'\\' if basic => j += 2,
                b if b == q && t[j..].starts_with(&[q, q, q]) => {
                    // The delimiter is the last three of up to five quotes.
                    let run = t[j..].iter().take(5).take_while(|&&b| b == q).count();
                    return Some(j + run);
                }
                _ => j += 1,
            }
        }
    }
    let mut j = i + 1;
    while j < t.len() {
        match t[j] {
            b'\\' if basic => j += 2,
            b'\n' => return Some(j),
            b if b == q => return Some(j + 1),
            _ => j += 1,
        }
    }
    Some(j)
}

impl RouteTables {
    /// `text` parsed with the kept route tables reused, or `None` when the shortcut
    /// does not apply or would reuse nothing (then parse it in full). The layout
    /// found on the way is for [`RouteTables::keep`].
    pub(crate) fn reparse(&mut self, text: &str) -> (Option<FileConfig>, Option<Layout>) {
        if self.kept.is_empty() {
            return (None, None);
        }
        let Some(layout) = Layout::of(text) else {
            return (None, None);
        };
        let file = self.reuse(text, &layout);
        (file, Some(layout))
    }

    fn reuse(&mut self, text: &str, layout: &Layout) -> Option<FileConfig> {
        // Which tables are kept ones (their index in `kept`), each claimed once.
        let mut claimed = vec![false; self.kept.len()];
        let mut plan: Vec<Vec<Option<usize>>> = Vec::with_capacity(layout.groups.len());
        let mut blanked = text.as_bytes().to_vec();
        let mut hashes = layout.hashes.iter();
        let mut reused = 0;
        for g in &layout.groups {
            let mut p = Vec::with_capacity(g.tables.len());
            for r in &g.tables {
                let h = *hashes.next()?;
                let body = &text[r.clone()];
                let from = self.by_hash.partition_point(|&(x, _)| x < h);
                let found = self.by_hash[from..]
                    .iter()
                    .take_while(|&&(x, _)| x == h)
                    .map(|&(_, k)| k)
                    .find(|&k| !claimed[k] && self.text.get(self.kept[k].0.clone()) == Some(body));
                if let Some(k) = found {
                    claimed[k] = true;
                    blank(&mut blanked[r.clone()]);
                    reused += 1;
                }
                p.push(found);
            }
            // A group that gives `routes` in its own table too is an error the
            // blanked tables would hide; a backslash could spell the key with an
            // escape ("\u0072outes").
            let body = &text[g.body.clone()];
            if p.iter().any(Option::is_some) && (body.contains("routes") || body.contains('\\')) {
                return None;
            }
            plan.push(p);
        }
        if reused == 0 {
            return None;
        }
        let skeleton = String::from_utf8(blanked).ok()?;
        let mut file: FileConfig = toml::from_str(&skeleton).ok()?;
        if file.groups.len() != layout.groups.len() {
            return None;
        }
        let fresh_fit = file
            .groups
            .iter()
            .zip(&layout.groups)
            .zip(&plan)
            .all(|((g, group), p)| {
                let fresh = group
                    .tables
                    .iter()
                    .zip(p)
                    .filter(|(_, k)| k.is_none())
                    .map(|(r, _)| r);
                fit(&g.get_ref().routes, fresh)
            });
        if !fresh_fit {
            return None;
        }
        // It adds up: put the kept routes in, in file order.
        for ((g, group), p) in file.groups.iter_mut().zip(&layout.groups).zip(plan) {
            let mut fresh = std::mem::take(&mut g.get_mut().routes).into_iter();
            let mut routes = Vec::with_capacity(group.tables.len());
            for (r, k) in group.tables.iter().zip(p) {
                let route = match k {
                    None => fresh.next(),
                    Some(k) => self.kept.get_mut(k).and_then(|(old, route)| {
                        let by = r.start as isize - old.start as isize;
                        route.take().map(|route| route.shift(by))
                    }),
                };
                routes.push(route?);
            }
            g.get_mut().routes = routes;
        }
        Some(file)
    }

    /// Keeps `file`'s route tables, parsed from `text` (laid out as `layout`, when
    /// [`RouteTables::reparse`] found it), for the next parse: moves its routes out
    /// (the file has been validated and is not needed). Keeps nothing when the
    /// tables do not line up with the routes.
    pub(crate) fn keep(&mut self, text: &str, file: &mut FileConfig, layout: Option<Layout>) {
        self.kept.clear();
        self.by_hash.clear();
        self.text.clear();
        let Some(layout) = layout.or_else(|| Layout::of(text)) else {
            return;
        };
        let lines_up = file.groups.len() == layout.groups.len()
            && (file.groups.iter().zip(&layout.groups))
                .all(|(g, group)| fit(&g.get_ref().routes, &group.tables));
        if !lines_up {
            return;
        }
        self.kept.reserve(layout.hashes.len());
        for (g, group) in file.groups.iter_mut().zip(layout.groups) {
            for (route, r) in std::mem::take(&mut g.get_mut().routes)
                .into_iter()
                .zip(group.tables)
            {
                self.kept.push((r, Some(route)));
            }
        }
        self.by_hash = layout.hashes.into_iter().zip(0..).collect();
        self.by_hash.sort_unstable();
        self.text.push_str(text);
    }
}

/// Spaces for all of it, line ends too: the table is gone, every offset stays, and
/// the parser sees one run of whitespace (a table starts at a line start, so the
/// next header is still first on its line).
fn blank(table: &mut [u8]) {
    table.fill(b' ');
}

/// Whether `routes` are, one for one, the routes of `tables`: as many, each span
/// inside its table.
fn fit<'a>(routes: &[Spanned<RouteFile>], tables: impl IntoIterator<Item = &'a Range<usize>>) -> bool {
    let mut tables = tables.into_iter();
    let each = routes.iter().all(|route| {
        let span = route.span();
        tables
            .next()
            .is_some_and(|t| t.start <= span.start && span.end <= t.end)
    });
    each && tables.next().is_none()
}

/// Moving a parsed value's spans by `by` bytes: a route table reused at another
/// offset. Every field is named (no `..`), so a new field cannot be forgotten.
trait Shift: Sized {
    fn shift(self, by: isize) -> Self;
}

impl<T: Shift> Shift for Spanned<T> {
    fn shift(self, by: isize) -> Self {
        let r = self.span();
        let moved = r.start.wrapping_add_signed(by)..r.end.wrapping_add_signed(by);
        Spanned::new(moved, self.into_inner().shift(by))
    }
}

impl<T: Shift> Shift for Option<T> {
    fn shift(self, by: isize) -> Self {
        self.map(|v| v.shift(by))
    }
}

impl<T: Shift> Shift for Vec<T> {
    fn shift(self, by: isize) -> Self {
        self.into_iter().map(|v| v.shift(by)).collect()
    }
}

macro_rules! no_spans {
    ($($t:ty),*) => {
        $(impl Shift for $t {
            fn shift(self, _: isize) -> Self {
                self
            }
        })*
    };
}
no_spans!(String, bool, u16, u32, u64);

impl Shift for RouteFile {
    fn shift(self, by: isize) -> Self {
        let RouteFile {
            name,
            methods,
            path,
            query,
            headers,
            environments,
            versions,
            allow_shadow,
            to,
            mock,
            max_body_bytes,
            upgrade,
            retry,
        } = self;
        RouteFile {
            name: name.shift(by),
            methods: methods.shift(by),
            path: path.shift(by),
            query: query.shift(by),
            headers: headers.shift(by),
            environments: environments.shift(by),
            versions: versions.shift(by),
            allow_shadow: allow_shadow.shift(by),
            to: to.shift(by),
            mock: mock.shift(by),
            max_body_bytes: max_body_bytes.shift(by),
            upgrade: upgrade.shift(by),
            retry: retry.shift(by),
        }
    }
}

impl Shift for PathFile {
    fn shift(self, by: isize) -> Self {
        let PathFile { exact, prefix, regex } = self;
        PathFile {
            exact: exact.shift(by),
            prefix: prefix.shift(by),
            regex: regex.shift(by),
        }
    }
}

impl Shift for PredicateFile {
    fn shift(self, by: isize) -> Self {
        let PredicateFile {
            name,
            equals,
            one_of,
            prefix,
            regex,
            present,
            absent,
        } = self;
        PredicateFile {
            name: name.shift(by),
            equals: equals.shift(by),
            one_of: one_of.shift(by),
            prefix: prefix.shift(by),
            regex: regex.shift(by),
            present: present.shift(by),
            absent: absent.shift(by),
        }
    }
}

impl Shift for MockFile {
    fn shift(self, by: isize) -> Self {
        // The headers are an OrderedMap of plain strings: no spans.
        let MockFile {
            status,
            body,
            headers,
        } = self;
        MockFile {
            status: status.shift(by),
            body,
            headers,
        }
    }
}

impl Shift for RetryFile {
    fn shift(self, by: isize) -> Self {
        let RetryFile {
            attempts,
            on,
            budget_percent,
            min_retry_concurrency,
        } = self;
        RetryFile {
            attempts: attempts.shift(by),
            on: on.shift(by),
            budget_percent: budget_percent.shift(by),
            min_retry_concurrency: min_retry_concurrency.shift(by),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Route tables as a user might write them, every field somewhere.
    const ROUTES: &[&str] = &[
        "  [[groups.routes]]\n  name = \"NAME\"\n  path = { exact = \"/e/NAME\" }\n  to = \"{#endpoints['b1']}/x\"\n",
        "  [[groups.routes]]\n  name = \"NAME\"\n  path = { prefix = \"/p/NAME\" }\n  methods = [\"GET\", \"POST\"]\n  to = \"{#endpoints['b1']}/p\"\n\n",
        "[[groups.routes]]\nname = \"NAME\"\npath = { regex = \"/g/NAME/([^/]+)\" }\nto = \"{#endpoints['b1']}/{#group[0]}\"\n# a comment [[groups.routes]]\n",
        "[[groups.routes]]\nname = \"NAME\"\npath.exact = \"/m/NAME\"\nmock = { status = 200, body = \"\"\"\n[[groups.routes]]\nname = \\\"x\\\" # not a header\n\"\"\", headers = { \"x-a\" = \"b\" } }\n",
        "[[groups.routes]]\nname = \"NAME\"\npath = { exact = \"/q/NAME\" }\nquery = [{ name = \"v\", regex = \"[0-9]+\" }, { name = \"w\", present = true }]\nheaders = [\n  { name = \"x-env\", one_of = [\"a\", \"b\"] },\n  { name = \"x-off\", absent = true },\n]\nenvironments = ['online']\nallow_shadow = true\nmax_body_bytes = 1024\nupgrade = []\nretry = { attempts = 2, on = [\"502\"], budget_percent = 10, min_retry_concurrency = 1 }\nto = '{#endpoints[\"b1\"]}/q'\n",
        "[[groups.routes]] # trailing comment\nname = \"NAME\"\nversions = [\"1\"]\npath = { exact = \"/v/NAME\" }\nto = \"{#endpoints['b1']}/v\"\n",
    ];

    struct Rng(u64);
    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }
    }

    /// A config: a preamble, then groups of (kind, name) route tables, then maybe a
    /// table after the groups.
    #[derive(Clone)]
    struct Doc {
        preamble: String,
        groups: Vec<Vec<(usize, usize)>>,
        tail: String,
    }

    impl Doc {
        fn render(&self) -> String {
            let mut s = self.preamble.clone();
            for (g, routes) in self.groups.iter().enumerate() {
                s += &format!(
                    "\n[[groups]]\nname = \"g{g}\"\nversions = [\"1\"]\npublish = {{ online = \"1\" }}\n"
                );
                for &(kind, name) in routes {
                    s += &ROUTES[kind].replace("NAME", &format!("r{name}"));
                }
            }
            s + &self.tail
        }

        fn edit(&mut self, rng: &mut Rng, next: &mut usize) {
            let g = rng.below(self.groups.len());
            let routes = &mut self.groups[g];
            match rng.below(7) {
                0 if !routes.is_empty() => {
                    // One route changed in place.
                    let i = rng.below(routes.len());
                    routes[i].0 = (routes[i].0 + 1) % ROUTES.len();
                }
                1 => {
                    let at = rng.below(routes.len() + 1);
                    *next += 1;
                    routes.insert(at, (rng.below(ROUTES.len()), *next));
                }
                2 if routes.len() > 1 => {
                    routes.remove(rng.below(routes.len()));
                }
                3 if routes.len() > 1 => {
                    let (a, b) = (rng.below(routes.len()), rng.below(routes.len()));
                    routes.swap(a, b);
                }
                4 => self.preamble.insert_str(0, "# shifts every offset\n"),
                5 => {
                    self.tail = if self.tail.is_empty() {
                        "\n[traffic]\ntrusted_proxies = [\"10.0.0.0/8\"]\n".into()
                    } else {
                        String::new()
                    }
                }
                _ => {
                    *next += 1;
                    self.groups.insert(g, vec![(0, *next)]);
                }
            }
        }
    }

    fn full(text: &str) -> Option<String> {
        toml::from_str::<FileConfig>(text).ok().map(|f| format!("{f:#?}"))
    }

    /// Edits of a config, each parsed through the kept tables of the one before and
    /// in full: the same result, spans included, and the shortcut taken.
    #[test]
    fn a_reparse_is_a_full_parse() {
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        let mut next = 100;
        let mut doc = Doc {
            preamble: "[server]\nlisten = [\"127.0.0.1:0\"]\n\n[endpoints]\nb1 = \"http://127.0.0.1:1\"\n"
                .into(),
            groups: vec![
                (0..12).map(|i| (i % ROUTES.len(), i)).collect(),
                vec![(4, 50), (3, 51)],
            ],
            tail: String::new(),
        };
        let mut tables = RouteTables::default();
        let mut text = doc.render();
        let mut file = toml::from_str::<FileConfig>(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        tables.keep(&text, &mut file, None);
        let (mut shortcut, mut rounds) = (0, 0);
        for round in 0..300 {
            doc.edit(&mut rng, &mut next);
            text = doc.render();
            let want =
                full(&text).unwrap_or_else(|| panic!("round {round}: the generated file parses\n{text}"));
            let (reused, layout) = tables.reparse(&text);
            let mut file = match reused {
                Some(f) => {
                    shortcut += 1;
                    assert_eq!(format!("{f:#?}"), want, "round {round}\n{text}");
                    f
                }
                None => toml::from_str(&text).unwrap_or_else(|e| panic!("{e}")),
            };
            tables.keep(&text, &mut file, layout);
            rounds += 1;
        }
        assert!(
            shortcut > rounds * 9 / 10,
            "the shortcut was taken {shortcut} of {rounds} times"
        );
    }

    #[test]
    fn a_broken_edit_is_left_to_the_full_parse() {
        let text = format!(
            "[[groups]]\nname = \"g\"\n{}{}",
            ROUTES[0].replace("NAME", "a"),
            ROUTES[1].replace("NAME", "b")
        );
        let mut tables = RouteTables::default();
        let mut file = toml::from_str::<FileConfig>(&text).unwrap();
        tables.keep(&text, &mut file, None);
        for broken in [
            text.replace("name = \"b\"", "name = \"b"),
            text.replace("name = \"b\"", "name = \"b\"\nname = \"c\""),
            text.replace("[[groups]]\nname = \"g\"", "[[groups]]\nname = \"g\"\nroutes = 1"),
            format!("{text}x = 1\n"),
            text.replace(
                "[[groups]]\nname = \"g\"",
                "[[groups]]\nname = \"g\"\n\"\\u0072outes\" = []",
            ),
            text.replace(
                "[[groups]]\nname = \"g\"",
                "[[groups]]\nname = \"g\"\nroutes.x = 1",
            ),
        ] {
            assert!(full(&broken).is_none(), "{broken}");
            assert!(tables.reparse(&broken).0.is_none(), "{broken}");
        }
        // Routes also given inline in the group: whatever the parser makes of it,
        // the shortcut makes the same.
        let inline = text.replace(
            "[[groups]]\nname = \"g\"",
            "[[groups]]\nname = \"g\"\nroutes = []",
        );
        assert_eq!(
            tables.reparse(&inline).0.map(|f| format!("{f:#?}")),
            full(&inline)
        );
    }

    #[test]
    fn headers_the_shortcut_does_not_know_turn_it_off() {
        let base = format!("[[groups]]\nname = \"g\"\n{}", ROUTES[0].replace("NAME", "a"));
        assert!(route_tables(&base).is_some());
        for extra in [
            "[groups.routes.mock]\nstatus = 200\n",
            "[[groups.routes.query]]\nname = \"v\"\n",
            "[\"groups\".routes]\n",
            "[ groups ]\n",
        ] {
            assert!(route_tables(&format!("{base}{extra}")).is_none(), "{extra}");
        }
        // Tables outside `groups` are fine, before or after.
        let around = format!("[limits]\nmax_body_bytes = 1\n{base}[groupsx]\n[traffic]\n");
        assert_eq!(route_tables(&around).map(|g| g.len()), Some(1));
        // A header-looking line inside a multi-line string or an array is not one.
        let quoted = format!("{base}  to2 = '''\n[[groups]]\n'''\n  x = [\n[1],\n]\n");
        let tables = route_tables(&quoted).unwrap();
        assert_eq!((tables.len(), tables[0].tables.len()), (1, 1));
    }
}
