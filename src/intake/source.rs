//! The authoritative source: an HR export (CSV or JSON) loaded into a validated [`Directory`] of
//! identities.
//!
//! # Formats
//!
//! The format is chosen by the file's extension, case-insensitively: `.csv` or `.json`. Anything
//! else is an error naming the file.
//!
//! **CSV** — a header row, then one identity per row. Header names are trimmed and matched
//! case-insensitively, ignoring spaces, `_` and `-` (so `employment_type`, `employment type`,
//! `employmentType` and `Employment-Type` are the same column). Unknown columns are ignored. A
//! leading UTF-8 byte-order mark and blank lines are ignored. Values are trimmed.
//!
//! **JSON** — an array of objects, or an object `{"identities": [...]}`. Keys are matched as CSV
//! headers are. Values are strings (numbers are accepted and written out as text; `null` means
//! empty); `tags` is an array of strings or one string split as in CSV.
//!
//! | field | required | notes |
//! | --- | --- | --- |
//! | `id` | yes | non-empty; unique (exact match) |
//! | `email` | yes | non-empty, `local@domain`, no whitespace; unique (case-insensitive) |
//! | `name` | yes | display name; an empty name defaults to the id |
//! | `kind` | yes | `human` or `service` (see below) |
//! | `status` | yes | `active`, `terminated` or `suspended` (see below) |
//! | `manager` | yes, may be empty | the manager's (for a service, the owner's) id or email |
//! | `department`, `role`, `location`, `employment_type` | no | free text; empty means absent |
//! | `tags` | no | separated by `;` or `\|`; trimmed, lower-cased; a tag containing `,` is an error |
//!
//! `,` is not a tag separator (it is the CSV delimiter), but a tag containing one is rejected rather
//! than kept: `"protected,break-glass"` read as one tag would leave a break-glass identity
//! unprotected. Tags are lower-cased so that `Protected` in an export still marks a break-glass identity: a
//! protected identity that is not recognised would be acted on.
//!
//! `kind` and `status` are matched case-insensitively. `kind` also accepts the unambiguous
//! synonyms `person` (→ `human`) and `nhi`, `service-account`, `service_account` (→ `service`).
//! `status` is strict: only `active`, `terminated` and `suspended` are accepted. In particular
//! `inactive` is **rejected** rather than mapped — HR systems use it both for a leave of absence and
//! for a termination, and guessing wrong either acts on a person who is coming back or fails to
//! act on one who has left. The error lists the allowed values.
//!
//! # Validation
//!
//! Every error names the file and where in it: the CSV line (`hr.csv:7: ...`), or for JSON the
//! record (`hr.json: [3]: ...` or `hr.json: identities[3]: ...`) and, for syntax errors, the line
//! and column. Rejected: a missing required column, an empty id or email, a malformed email, an
//! unknown kind or status, a duplicate id, a duplicate email, and an id that is another identity's
//! email (which would make [`Directory::get`] ambiguous). A manager that names nobody in the file,
//! or names the identity itself, is allowed and logged as a warning.

use closeout_contract::{Identity, IdentityKind, IdentityStatus};
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

/// Where in a source a problem was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// The file as a whole.
    File,
    /// A 1-based line (CSV).
    Line(u64),
    /// A 1-based line and column (JSON syntax errors).
    LineColumn(u64, u64),
    /// A record of a JSON array, 0-based; `array` is `""` for a top-level array or `"identities"`.
    Record {
        /// The array's key: `""` (top-level array) or `"identities"`.
        array: &'static str,
        /// The record's 0-based index in it.
        index: usize,
    },
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::File => Ok(()),
            Location::Line(line) => write!(f, ":{line}"),
            Location::LineColumn(line, column) => write!(f, ":{line}:{column}"),
            Location::Record { array, index } => write!(f, ": {array}[{index}]"),
        }
    }
}

impl Location {
    /// How a second problem refers back to this place: `line 3`, `[0]`.
    fn reference(&self) -> String {
        match self {
            Location::File => "the same file".to_string(),
            Location::Line(line) | Location::LineColumn(line, _) => format!("line {line}"),
            Location::Record { array, index } => format!("{array}[{index}]"),
        }
    }
}

/// What is wrong with a source.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// The CSV file has no header row (it is empty, or only blank).
    #[error("empty file: expected a header row with at least {}", REQUIRED.join(","))]
    NoHeader,
    /// Required columns (CSV) or keys (JSON) are absent.
    #[error("missing required column{} {} (found: {})", plural(.missing.len()), quoted(.missing), .found.join(", "))]
    MissingColumns {
        /// The missing fields, in canonical form (`id`, `email`, ...).
        missing: Vec<String>,
        /// The columns or keys present, as written in the file.
        found: Vec<String>,
    },
    /// Two headers (or keys of one JSON record) normalise to the same field, e.g. `employment_type`
    /// and `Employment Type`: which one counts would be a guess.
    #[error("column {column:?} appears twice (as {first:?} and {second:?})")]
    DuplicateColumn {
        /// The field both name, in canonical form.
        column: String,
        /// The first spelling.
        first: String,
        /// The second spelling.
        second: String,
    },
    /// The file is not well-formed CSV or JSON; the parser's message.
    #[error("{0}")]
    Syntax(String),
    /// The JSON document is neither an array nor an object with an `identities` array; the value
    /// is what was found (`a string`, `an object without "identities"`, ...).
    #[error(
        "expected a JSON array of identities or an object {{\"identities\": [...]}}, found {0}"
    )]
    NotAList(&'static str),
    /// An element of the JSON array is not an object; the value is its JSON type.
    #[error("expected an object for an identity, found {0}")]
    NotAnObject(&'static str),
    /// A JSON value has the wrong type (e.g. a number for `tags`, an object for `email`).
    #[error("field {field:?} must be {expected}, found {found}")]
    FieldType {
        /// The key as written in the file.
        field: String,
        /// What the field accepts.
        expected: &'static str,
        /// The JSON type found.
        found: &'static str,
    },
    /// A field that must not be empty is (`id` or `email`).
    #[error("empty {0}")]
    Empty(&'static str),
    /// The email is not `local@domain` without whitespace.
    #[error("malformed email {0:?}: expected local@domain without spaces")]
    MalformedEmail(String),
    /// `kind` is not `human`, `service` or an accepted synonym.
    #[error(
        "unknown kind {0:?} (allowed: human, service; also accepted: person, nhi, service-account)"
    )]
    UnknownKind(String),
    /// `status` is not `active`, `terminated` or `suspended` (`inactive` is deliberately not
    /// accepted: see the module documentation).
    #[error("unknown status {0:?} (allowed: active, terminated, suspended)")]
    UnknownStatus(String),
    /// Two identities have the same id.
    #[error("duplicate id {id:?} (first on {first})")]
    DuplicateId {
        /// The repeated id.
        id: String,
        /// Where the first identity with it is (`line 3`, `[0]`).
        first: String,
    },
    /// Two identities have the same email (compared case-insensitively).
    #[error("duplicate email {email:?} (first on {first}, id {first_id:?})")]
    DuplicateEmail {
        /// The repeated email, as written the second time.
        email: String,
        /// Where the first identity with it is.
        first: String,
        /// The first identity's id.
        first_id: String,
    },
    /// A tag contains `,`, which is not a separator: kept as one tag it could hide `protected`.
    #[error("tag {0:?} contains ','; separate tags with ';' or '|'")]
    CommaInTag(String),
    /// An id equals another identity's email, so looking either up would be ambiguous.
    #[error("id {id:?} is also the email of {other_id:?} ({other}); an id or email must name one identity")]
    IdIsAnotherEmail {
        /// The id.
        id: String,
        /// The id of the identity whose email it is.
        other_id: String,
        /// Where that identity is.
        other: String,
    },
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn quoted(items: &[String]) -> String {
    items
        .iter()
        .map(|i| format!("{i:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// An error loading the authoritative source.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The file cannot be read (missing, unreadable, not UTF-8).
    #[error("cannot read source {}: {source}", .path.display())]
    Read {
        /// The source file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file's extension is neither `.csv` nor `.json`.
    #[error("{}: unsupported source format: expected a .csv or .json file", .path.display())]
    UnsupportedFormat {
        /// The source file.
        path: PathBuf,
    },
    /// The file was read but its content is rejected; nothing from it is used.
    #[error("{file}{at}: {problem}")]
    Invalid {
        /// The source file, as named in the message.
        file: String,
        /// Where in the file.
        at: Location,
        /// What is wrong.
        problem: Box<Problem>,
    },
}

impl SourceError {
    fn invalid(file: &str, at: Location, problem: Problem) -> SourceError {
        SourceError::Invalid {
            file: file.to_string(),
            at,
            problem: Box::new(problem),
        }
    }

    /// The problem, when the source was read but is invalid.
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            SourceError::Invalid { problem, .. } => Some(problem.as_ref()),
            _ => None,
        }
    }

    /// Where the problem is, when the source was read but is invalid.
    pub fn location(&self) -> Option<&Location> {
        match self {
            SourceError::Invalid { at, .. } => Some(at),
            _ => None,
        }
    }
}

/// The validated identities of one source, indexed by id and by email.
#[derive(Debug, Clone, Default)]
pub struct Directory {
    identities: Vec<Identity>,
    by_id: HashMap<String, usize>,
    /// Lower-cased (ASCII) email → index.
    by_email: HashMap<String, usize>,
}

/// A parser of one export format: (the name errors use, the text) to a directory.
type Parser = fn(&str, &str) -> Result<Directory, SourceError>;

impl Directory {
    /// Load an HR export; `.csv` or `.json` by extension (case-insensitive).
    pub fn load(path: impl AsRef<Path>) -> Result<Directory, SourceError> {
        let path = path.as_ref();
        // The format first: an unsupported file is refused before it is read.
        Directory::parser_for(path)?;
        let bytes = std::fs::read(path).map_err(|source| SourceError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Directory::parse_as(path, path, &bytes)
    }

    /// Parse `bytes` as an HR export in the format of `format_of`'s extension; errors name
    /// `name`.
    pub fn parse_as(format_of: &Path, name: &Path, bytes: &[u8]) -> Result<Directory, SourceError> {
        let parse = Directory::parser_for(format_of)?;
        let text = std::str::from_utf8(bytes).map_err(|e| SourceError::Read {
            path: name.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        })?;
        parse(&name.display().to_string(), text)
    }

    /// The parser for a file's extension: `.csv` or `.json` (case-insensitive).
    fn parser_for(path: &Path) -> Result<Parser, SourceError> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("csv") => Ok(parse_csv),
            Some("json") => Ok(parse_json),
            _ => Err(SourceError::UnsupportedFormat {
                path: path.to_path_buf(),
            }),
        }
    }

    /// Build a directory from identities already in memory, with the same validation as a file
    /// (errors read `identities: [i]: ...`). Values are taken as given (not trimmed or lower-cased).
    pub fn from_identities(identities: Vec<Identity>) -> Result<Directory, SourceError> {
        const NAME: &str = "identities";
        let mut located = Vec::with_capacity(identities.len());
        for (index, identity) in identities.into_iter().enumerate() {
            let at = Location::Record { array: "", index };
            check_id_email(&identity.id, &identity.email)
                .map_err(|p| SourceError::invalid(NAME, at.clone(), p))?;
            located.push((at, identity));
        }
        build(NAME, located)
    }

    /// This directory with `identity` added (a joiner the HR export does not list yet), validated
    /// like any other; an id or email already present is refused.
    pub fn with(&self, identity: Identity) -> Result<Directory, SourceError> {
        let mut all = self.identities.clone();
        all.push(identity);
        Directory::from_identities(all)
    }

    /// The identity with this id (exact) or email (case-insensitive). The input is trimmed.
    pub fn get(&self, id_or_email: &str) -> Option<&Identity> {
        let key = id_or_email.trim();
        if key.is_empty() {
            return None;
        }
        self.by_id
            .get(key)
            .or_else(|| self.by_email.get(&key.to_ascii_lowercase()))
            .and_then(|&i| self.identities.get(i))
    }

    /// The identity's manager (for a service, its owner) when the source names one that exists.
    /// `None` when no manager is given, when it names nobody in the source, or when it names the
    /// identity itself (handing a leaver's assets to the leaver would be wrong). The manager's own
    /// status is not checked: callers decide what to do with a terminated manager.
    pub fn manager_of(&self, identity: &Identity) -> Option<&Identity> {
        let manager = self.get(identity.manager.as_deref()?)?;
        (manager.id != identity.id).then_some(manager)
    }

    /// All identities, in source order.
    pub fn identities(&self) -> &[Identity] {
        &self.identities
    }

    /// How many identities the source holds.
    pub fn len(&self) -> usize {
        self.identities.len()
    }

    /// Whether the source holds no identity.
    pub fn is_empty(&self) -> bool {
        self.identities.is_empty()
    }
}

/// The required fields, in canonical (normalised) form.
const REQUIRED: [&str; 6] = ["id", "email", "name", "kind", "status", "manager"];
const OPTIONAL: [&str; 5] = ["department", "role", "location", "employmenttype", "tags"];

/// Normalise a column or key name: trimmed, lower-cased, without spaces, `_` and `-`.
fn normalise_key(key: &str) -> String {
    key.trim()
        .chars()
        .filter(|c| !matches!(c, ' ' | '_' | '-'))
        .flat_map(char::to_lowercase)
        .collect()
}

/// One identity's fields as text, before validation. Keys are normalised names.
#[derive(Default)]
struct Raw {
    fields: HashMap<&'static str, String>,
    tags: Vec<String>,
}

impl Raw {
    fn text(&self, key: &str) -> &str {
        self.fields.get(key).map(|s| s.trim()).unwrap_or("")
    }

    fn optional(&self, key: &str) -> Option<String> {
        let v = self.text(key);
        (!v.is_empty()).then(|| v.to_string())
    }
}

fn split_tags(text: &str) -> Vec<String> {
    text.split([';', '|']).map(str::to_string).collect()
}

fn parse_kind(value: &str) -> Result<IdentityKind, Problem> {
    match value.trim().to_ascii_lowercase().as_str() {
        "human" | "person" => Ok(IdentityKind::Human),
        "service" | "nhi" | "service-account" | "service_account" => Ok(IdentityKind::Service),
        _ => Err(Problem::UnknownKind(value.trim().to_string())),
    }
}

fn parse_status(value: &str) -> Result<IdentityStatus, Problem> {
    match value.trim().to_ascii_lowercase().as_str() {
        "active" => Ok(IdentityStatus::Active),
        "terminated" => Ok(IdentityStatus::Terminated),
        "suspended" => Ok(IdentityStatus::Suspended),
        _ => Err(Problem::UnknownStatus(value.trim().to_string())),
    }
}

fn check_id_email(id: &str, email: &str) -> Result<(), Problem> {
    if id.trim().is_empty() {
        return Err(Problem::Empty("id"));
    }
    if email.trim().is_empty() {
        return Err(Problem::Empty("email"));
    }
    let well_formed = match email.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        }
        None => false,
    };
    if !well_formed {
        return Err(Problem::MalformedEmail(email.to_string()));
    }
    Ok(())
}

/// Validate one raw record into an identity.
fn identity_from_raw(raw: &Raw) -> Result<Identity, Problem> {
    let id = raw.text("id").to_string();
    let email = raw.text("email").to_string();
    check_id_email(&id, &email)?;
    let kind = parse_kind(raw.text("kind"))?;
    let status = parse_status(raw.text("status"))?;
    let name = match raw.text("name") {
        "" => id.clone(),
        n => n.to_string(),
    };
    let mut tags = BTreeSet::new();
    for tag in &raw.tags {
        let tag = tag.trim().to_lowercase();
        if tag.contains(',') {
            // `protected,break-glass` read as one tag would leave a break-glass identity unprotected.
            return Err(Problem::CommaInTag(tag));
        }
        if !tag.is_empty() {
            tags.insert(tag);
        }
    }
    Ok(Identity {
        id,
        email,
        name,
        kind,
        status,
        manager: raw.optional("manager"),
        department: raw.optional("department"),
        role: raw.optional("role"),
        location: raw.optional("location"),
        employment_type: raw.optional("employmenttype"),
        tags,
    })
}

/// Cross-record validation and indexing.
fn build(file: &str, located: Vec<(Location, Identity)>) -> Result<Directory, SourceError> {
    let mut dir = Directory::default();
    let mut at_of: Vec<Location> = Vec::with_capacity(located.len());
    for (at, identity) in located {
        if let Some(&first) = dir.by_id.get(&identity.id) {
            let problem = Problem::DuplicateId {
                id: identity.id,
                first: at_of[first].reference(),
            };
            return Err(SourceError::invalid(file, at, problem));
        }
        let email_key = identity.email.to_ascii_lowercase();
        if let Some(&first) = dir.by_email.get(&email_key) {
            let problem = Problem::DuplicateEmail {
                email: identity.email,
                first: at_of[first].reference(),
                first_id: dir.identities[first].id.clone(),
            };
            return Err(SourceError::invalid(file, at, problem));
        }
        let index = dir.identities.len();
        dir.by_id.insert(identity.id.clone(), index);
        dir.by_email.insert(email_key, index);
        dir.identities.push(identity);
        at_of.push(at);
    }
    // An id equal to another identity's email would make `get` depend on lookup order.
    for (index, identity) in dir.identities.iter().enumerate() {
        if let Some(&other) = dir.by_email.get(&identity.id.to_ascii_lowercase()) {
            if other != index {
                let problem = Problem::IdIsAnotherEmail {
                    id: identity.id.clone(),
                    other_id: dir.identities[other].id.clone(),
                    other: at_of[other].reference(),
                };
                return Err(SourceError::invalid(file, at_of[index].clone(), problem));
            }
        }
    }
    for (index, identity) in dir.identities.iter().enumerate() {
        let Some(manager) = identity.manager.as_deref() else {
            continue;
        };
        match dir.get(manager) {
            None => tracing::warn!(
                source = file,
                at = %at_of[index].reference(),
                id = %identity.id,
                manager,
                "manager names nobody in the source"
            ),
            Some(m) if m.id == identity.id => tracing::warn!(
                source = file,
                at = %at_of[index].reference(),
                id = %identity.id,
                "identity names itself as its manager; treated as having no manager"
            ),
            Some(_) => {}
        }
    }
    if dir.identities.is_empty() {
        tracing::warn!(source = file, "the source holds no identities");
    }
    Ok(dir)
}

/// Parse a CSV HR export. `name` is used in error messages (usually the file's path).
pub fn parse_csv(name: &str, text: &str) -> Result<Directory, SourceError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let csv_error = |e: csv::Error| {
        let line = e.position().map(|p| p.line());
        let message = match e.kind() {
            csv::ErrorKind::UnequalLengths {
                expected_len, len, ..
            } => format!("{len} fields, but the header has {expected_len}"),
            _ => format!("malformed CSV: {e}"),
        };
        let at = line.map_or(Location::File, Location::Line);
        SourceError::invalid(name, at, Problem::Syntax(message))
    };
    let headers = reader.headers().map_err(csv_error)?.clone();
    let header_line = headers.position().map_or(1, |p| p.line());
    if headers.iter().all(|h| h.trim().is_empty()) {
        return Err(SourceError::invalid(
            name,
            Location::File,
            Problem::NoHeader,
        ));
    }
    // Column index of each known field.
    let mut columns: HashMap<&'static str, usize> = HashMap::new();
    for (index, header) in headers.iter().enumerate() {
        let key = normalise_key(header);
        let Some(known) = REQUIRED.iter().chain(OPTIONAL.iter()).find(|k| **k == key) else {
            continue;
        };
        if let Some(&first) = columns.get(known) {
            let problem = Problem::DuplicateColumn {
                column: (*known).to_string(),
                first: headers.get(first).unwrap_or_default().to_string(),
                second: header.to_string(),
            };
            return Err(SourceError::invalid(
                name,
                Location::Line(header_line),
                problem,
            ));
        }
        columns.insert(known, index);
    }
    let missing: Vec<String> = REQUIRED
        .iter()
        .filter(|k| !columns.contains_key(*k))
        .map(|k| k.to_string())
        .collect();
    if !missing.is_empty() {
        let problem = Problem::MissingColumns {
            missing,
            found: headers.iter().map(str::to_string).collect(),
        };
        return Err(SourceError::invalid(
            name,
            Location::Line(header_line),
            problem,
        ));
    }
    let mut located = Vec::new();
    for record in reader.records() {
        let record = record.map_err(csv_error)?;
        let line = record.position().map_or(0, |p| p.line());
        let at = Location::Line(line);
        let mut raw = Raw::default();
        for (&key, &index) in &columns {
            let value = record.get(index).unwrap_or_default();
            if key == "tags" {
                raw.tags = split_tags(value);
            } else {
                raw.fields.insert(key, value.to_string());
            }
        }
        let identity =
            identity_from_raw(&raw).map_err(|p| SourceError::invalid(name, at.clone(), p))?;
        located.push((at, identity));
    }
    build(name, located)
}

fn json_type(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// Parse a JSON HR export: an array of objects or `{"identities": [...]}`. `name` is used in
/// error messages (usually the file's path).
pub fn parse_json(name: &str, text: &str) -> Result<Directory, SourceError> {
    use serde_json::Value;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let document: Value = serde_json::from_str(text).map_err(|e| {
        let at = if e.line() == 0 {
            Location::File
        } else {
            Location::LineColumn(e.line() as u64, e.column() as u64)
        };
        SourceError::invalid(name, at, Problem::Syntax(format!("malformed JSON: {e}")))
    })?;
    let (array, records) = match document {
        Value::Array(records) => ("", records),
        Value::Object(mut map) => {
            let key = map
                .keys()
                .find(|k| normalise_key(k) == "identities")
                .cloned();
            match key.and_then(|k| map.remove(&k)) {
                Some(Value::Array(records)) => ("identities", records),
                Some(other) => {
                    let problem = Problem::NotAList(json_type(&other));
                    return Err(SourceError::invalid(name, Location::File, problem));
                }
                None => {
                    let problem = Problem::NotAList("an object without \"identities\"");
                    return Err(SourceError::invalid(name, Location::File, problem));
                }
            }
        }
        other => {
            let problem = Problem::NotAList(json_type(&other));
            return Err(SourceError::invalid(name, Location::File, problem));
        }
    };
    let mut located = Vec::with_capacity(records.len());
    for (index, record) in records.into_iter().enumerate() {
        let at = Location::Record { array, index };
        let raw = raw_from_json(record).map_err(|p| SourceError::invalid(name, at.clone(), p))?;
        let identity =
            identity_from_raw(&raw).map_err(|p| SourceError::invalid(name, at.clone(), p))?;
        located.push((at, identity));
    }
    build(name, located)
}

fn raw_from_json(record: serde_json::Value) -> Result<Raw, Problem> {
    use serde_json::Value;
    let Value::Object(map) = record else {
        return Err(Problem::NotAnObject(json_type(&record)));
    };
    let mut raw = Raw::default();
    let mut seen: HashMap<&'static str, String> = HashMap::new();
    for (key, value) in map {
        let normal = normalise_key(&key);
        let Some(known) = REQUIRED
            .iter()
            .chain(OPTIONAL.iter())
            .find(|k| **k == normal)
        else {
            continue;
        };
        if let Some(first) = seen.get(known) {
            return Err(Problem::DuplicateColumn {
                column: (*known).to_string(),
                first: first.clone(),
                second: key,
            });
        }
        seen.insert(known, key.clone());
        if *known == "tags" {
            raw.tags = match value {
                Value::Null => Vec::new(),
                Value::String(s) => split_tags(&s),
                Value::Array(items) => items
                    .into_iter()
                    .map(|item| match item {
                        Value::String(s) => Ok(s),
                        other => Err(Problem::FieldType {
                            field: key.clone(),
                            expected: "an array of strings or a string",
                            found: json_type(&other),
                        }),
                    })
                    .collect::<Result<_, _>>()?,
                other => {
                    return Err(Problem::FieldType {
                        field: key,
                        expected: "an array of strings or a string",
                        found: json_type(&other),
                    })
                }
            };
            continue;
        }
        let text = match value {
            Value::Null => String::new(),
            Value::String(s) => s,
            Value::Number(n) => n.to_string(),
            other => {
                return Err(Problem::FieldType {
                    field: key,
                    expected: "a string",
                    found: json_type(&other),
                })
            }
        };
        raw.fields.insert(known, text);
    }
    let missing: Vec<String> = REQUIRED
        .iter()
        .filter(|k| !seen.contains_key(*k))
        .map(|k| k.to_string())
        .collect();
    if !missing.is_empty() {
        let mut found: Vec<String> = seen.into_values().collect();
        found.sort();
        return Err(Problem::MissingColumns { missing, found });
    }
    Ok(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "id,email,name,kind,status,manager";

    fn csv(rows: &[&str]) -> String {
        let mut text = String::from(HEADER);
        for row in rows {
            text.push('\n');
            text.push_str(row);
        }
        text.push('\n');
        text
    }

    fn csv_err(text: &str) -> SourceError {
        match parse_csv("hr.csv", text) {
            Ok(_) => panic!("expected an error for:\n{text}"),
            Err(e) => e,
        }
    }

    fn json_err(text: &str) -> SourceError {
        match parse_json("hr.json", text) {
            Ok(_) => panic!("expected an error for:\n{text}"),
            Err(e) => e,
        }
    }

    #[test]
    fn csv_full_export_with_optional_columns() {
        let text = "\u{feff} ID , Email,Name,Kind,Status,Manager,Department,Role,Location,Employment Type,Tags,Extra\n\
            E1,Alice@Example.com,Alice,Human,ACTIVE,,eng,SRE,London,full-time,Protected; oncall |x,ignored\n\
            \n\
            S1,svc@example.com,,nhi,terminated,alice@example.com,,,,,,\n";
        let dir = parse_csv("hr.csv", text).expect("parses");
        assert_eq!(dir.len(), 2);
        let alice = dir.get("E1").expect("by id");
        assert_eq!(alice.email, "Alice@Example.com");
        assert_eq!(alice.kind, IdentityKind::Human);
        assert_eq!(alice.status, IdentityStatus::Active);
        assert_eq!(alice.manager, None);
        assert_eq!(alice.department.as_deref(), Some("eng"));
        assert_eq!(alice.role.as_deref(), Some("SRE"));
        assert_eq!(alice.location.as_deref(), Some("London"));
        assert_eq!(alice.employment_type.as_deref(), Some("full-time"));
        assert!(alice.is_protected(), "tags are lower-cased");
        let tags: Vec<&str> = alice.tags.iter().map(String::as_str).collect();
        assert_eq!(tags, ["oncall", "protected", "x"]);
        let svc = dir.get("S1").expect("service");
        assert_eq!(svc.kind, IdentityKind::Service);
        assert_eq!(svc.status, IdentityStatus::Terminated);
        assert_eq!(svc.name, "S1", "empty name defaults to the id");
        assert!(svc.department.is_none() && svc.tags.is_empty());
        assert_eq!(dir.manager_of(svc).map(|m| m.id.as_str()), Some("E1"));
        assert!(dir.manager_of(alice).is_none());
    }

    #[test]
    fn employment_type_header_spellings() {
        for header in [
            "employment_type",
            "employment type",
            "employmentType",
            "Employment-Type",
        ] {
            let text = format!("{HEADER},{header}\nE1,a@x.io,A,human,active,,contractor\n");
            let dir = parse_csv("hr.csv", &text).expect(header);
            assert_eq!(
                dir.identities()[0].employment_type.as_deref(),
                Some("contractor")
            );
        }
    }

    #[test]
    fn get_by_id_exact_and_email_case_insensitive() {
        let dir = parse_csv("hr.csv", &csv(&["E1,Alice@Example.com,A,human,active,"])).expect("ok");
        assert!(dir.get("E1").is_some());
        assert!(dir.get(" E1 ").is_some());
        assert!(dir.get("e1").is_none());
        assert_eq!(
            dir.get("alice@EXAMPLE.com").map(|i| i.id.as_str()),
            Some("E1")
        );
        assert!(dir.get("").is_none());
        assert!(dir.get("bob@example.com").is_none());
    }

    #[test]
    fn manager_by_id_or_email_unknown_or_self_is_allowed() {
        let dir = parse_csv(
            "hr.csv",
            &csv(&[
                "E1,boss@x.io,Boss,human,active,E1",
                "E2,a@x.io,A,human,active,BOSS@x.io",
                "E3,b@x.io,B,human,active,E2",
                "E4,c@x.io,C,human,active,nobody@x.io",
            ]),
        )
        .expect("unknown and self managers are warnings");
        let by = |id: &str| dir.get(id).expect(id);
        assert_eq!(dir.manager_of(by("E2")).map(|m| m.id.as_str()), Some("E1"));
        assert_eq!(dir.manager_of(by("E3")).map(|m| m.id.as_str()), Some("E2"));
        assert!(dir.manager_of(by("E4")).is_none());
        assert!(dir.manager_of(by("E1")).is_none(), "self is not a manager");
    }

    #[test]
    fn csv_duplicate_id_names_both_lines() {
        let e = csv_err(&csv(&[
            "E100,a@x.io,A,human,active,",
            "E101,b@x.io,B,human,active,",
            "E100,c@x.io,C,human,active,",
        ]));
        assert_eq!(
            e.to_string(),
            r#"hr.csv:4: duplicate id "E100" (first on line 2)"#
        );
        assert_eq!(e.location(), Some(&Location::Line(4)));
    }

    #[test]
    fn csv_duplicate_email_is_case_insensitive() {
        let e = csv_err(&csv(&[
            "E1,a@x.io,A,human,active,",
            "E2,A@X.IO,B,human,active,",
        ]));
        assert_eq!(
            e.to_string(),
            r#"hr.csv:3: duplicate email "A@X.IO" (first on line 2, id "E1")"#
        );
    }

    #[test]
    fn csv_missing_required_columns_listed() {
        let e = csv_err("id,email,name\nE1,a@x.io,A\n");
        let msg = e.to_string();
        assert!(
            msg.starts_with(r#"hr.csv:1: missing required columns "kind", "status", "manager""#),
            "{msg}"
        );
        assert!(msg.contains("found: id, email, name"), "{msg}");
        let e = csv_err("id,email,name,kind,status\n");
        assert_eq!(
            e.problem(),
            Some(&Problem::MissingColumns {
                missing: vec!["manager".into()],
                found: ["id", "email", "name", "kind", "status"]
                    .map(String::from)
                    .to_vec(),
            })
        );
    }

    #[test]
    fn csv_empty_file_and_duplicate_column() {
        assert_eq!(csv_err("").problem(), Some(&Problem::NoHeader));
        let e = csv_err("id,email,name,kind,status,manager,employment_type,Employment Type\n");
        assert!(
            matches!(e.problem(), Some(Problem::DuplicateColumn { column, .. }) if column == "employmenttype")
        );
        assert!(e.to_string().starts_with("hr.csv:1: column"), "{e}");
    }

    #[test]
    fn csv_empty_id_and_email() {
        let e = csv_err(&csv(&[
            "E1,a@x.io,A,human,active,",
            " ,b@x.io,B,human,active,",
        ]));
        assert_eq!(e.to_string(), "hr.csv:3: empty id");
        let e = csv_err(&csv(&["E1,,A,human,active,"]));
        assert_eq!(e.to_string(), "hr.csv:2: empty email");
    }

    #[test]
    fn csv_malformed_email() {
        for bad in ["alice", "@x.io", "alice@", "a@b@c", "al ice@x.io"] {
            let e = csv_err(&csv(&[&format!("E1,{bad},A,human,active,")]));
            assert_eq!(
                e.problem(),
                Some(&Problem::MalformedEmail(bad.into())),
                "{bad}"
            );
            assert!(
                e.to_string().starts_with("hr.csv:2: malformed email"),
                "{e}"
            );
        }
    }

    #[test]
    fn kind_synonyms_and_unknown_kind() {
        for (value, kind) in [
            ("person", IdentityKind::Human),
            ("NHI", IdentityKind::Service),
            ("service-account", IdentityKind::Service),
            ("service_account", IdentityKind::Service),
        ] {
            let dir =
                parse_csv("hr.csv", &csv(&[&format!("E1,a@x.io,A,{value},active,")])).expect(value);
            assert_eq!(dir.identities()[0].kind, kind);
        }
        let e = csv_err(&csv(&["E1,a@x.io,A,robot,active,"]));
        assert_eq!(
            e.to_string(),
            r#"hr.csv:2: unknown kind "robot" (allowed: human, service; also accepted: person, nhi, service-account)"#
        );
    }

    #[test]
    fn unknown_status_and_inactive_is_rejected() {
        let e = csv_err(&csv(&["E1,a@x.io,A,human,inactive,"]));
        assert_eq!(
            e.to_string(),
            r#"hr.csv:2: unknown status "inactive" (allowed: active, terminated, suspended)"#
        );
        let dir =
            parse_csv("hr.csv", &csv(&["E1,a@x.io,A,human,Suspended,"])).expect("case-insensitive");
        assert_eq!(dir.identities()[0].status, IdentityStatus::Suspended);
    }

    #[test]
    fn csv_wrong_field_count_names_the_line() {
        let e = csv_err(&csv(&["E1,a@x.io,A,human,active,", "E2,b@x.io,B,human"]));
        assert_eq!(e.to_string(), "hr.csv:3: 4 fields, but the header has 6");
    }

    #[test]
    fn comma_inside_a_tag_is_rejected() {
        let text = format!("{HEADER},tags\nE1,a@x.io,A,human,active,,\"protected,break-glass\"\n");
        let e = csv_err(&text);
        assert_eq!(
            e.to_string(),
            r#"hr.csv:2: tag "protected,break-glass" contains ','; separate tags with ';' or '|'"#
        );
        let e = json_err(
            r#"[{"id":"E1","email":"a@x.io","name":"A","kind":"human","status":"active","manager":"","tags":["a,b"]}]"#,
        );
        assert!(matches!(e.problem(), Some(Problem::CommaInTag(_))), "{e}");
    }

    #[test]
    fn id_that_is_another_identitys_email_is_rejected() {
        let e = csv_err(&csv(&[
            "a@x.io,z@x.io,A,human,active,",
            "E2,A@x.io,B,human,active,",
        ]));
        assert_eq!(
            e.to_string(),
            r#"hr.csv:2: id "a@x.io" is also the email of "E2" (line 3); an id or email must name one identity"#
        );
    }

    #[test]
    fn json_array_and_wrapper_forms() {
        let array = r#"[
          {"id": "E1", "email": "a@x.io", "name": "A", "kind": "human", "status": "active",
           "manager": null, "employmentType": "full-time", "tags": ["Protected", " "]},
          {"ID": 42, "Email": "b@x.io", "Name": "B", "Kind": "service", "Status": "suspended",
           "Manager": "E1", "tags": "nhi;ci|x", "unknown": {"nested": true}}
        ]"#;
        let dir = parse_json("hr.json", array).expect("array");
        let a = dir.get("E1").expect("E1");
        assert!(a.is_protected());
        assert_eq!(a.tags.len(), 1);
        assert_eq!(a.employment_type.as_deref(), Some("full-time"));
        let b = dir.get("42").expect("numeric id as text");
        assert_eq!(
            b.tags.iter().map(String::as_str).collect::<Vec<_>>(),
            ["ci", "nhi", "x"]
        );
        assert_eq!(dir.manager_of(b).map(|m| m.id.as_str()), Some("E1"));

        let wrapped = format!(r#"{{"identities": {array}, "exported_at": "2026-01-01"}}"#);
        let dir = parse_json("hr.json", &wrapped).expect("wrapper");
        assert_eq!(dir.len(), 2);
    }

    #[test]
    fn json_syntax_error_names_line_and_column() {
        let e = json_err("[\n  {\"id\": \"E1\",,}\n]");
        let msg = e.to_string();
        assert!(
            matches!(e.location(), Some(Location::LineColumn(2, _))),
            "{msg}"
        );
        assert!(msg.starts_with("hr.json:2:"), "{msg}");
    }

    #[test]
    fn json_shape_errors() {
        assert_eq!(json_err("42").to_string(), "hr.json: expected a JSON array of identities or an object {\"identities\": [...]}, found a number");
        assert!(json_err(r#"{"people": []}"#)
            .to_string()
            .contains("without \"identities\""));
        assert_eq!(
            json_err(r#"["E1"]"#).to_string(),
            "hr.json: [0]: expected an object for an identity, found a string"
        );
        let e = json_err(
            r#"[{"id":"E1","email":"a@x.io","name":"A","kind":"human","status":"active","manager":"","tags":5}]"#,
        );
        assert_eq!(
            e.to_string(),
            r#"hr.json: [0]: field "tags" must be an array of strings or a string, found a number"#
        );
        let e = json_err(
            r#"[{"id":true,"email":"a@x.io","name":"A","kind":"human","status":"active","manager":""}]"#,
        );
        assert!(matches!(e.problem(), Some(Problem::FieldType { field, .. }) if field == "id"));
        let e = json_err(
            r#"[{"id":"E1","email":"a@x.io","name":"A","kind":"human","status":"active"}]"#,
        );
        assert!(
            e.to_string()
                .starts_with(r#"hr.json: [0]: missing required column "manager""#),
            "{e}"
        );
        let e = json_err(
            r#"[{"id":"E1","ID":"E2","email":"a@x.io","name":"A","kind":"human","status":"active","manager":""}]"#,
        );
        assert!(
            matches!(e.problem(), Some(Problem::DuplicateColumn { .. })),
            "{e}"
        );
    }

    #[test]
    fn json_validation_errors_name_the_record() {
        let rec = |id: &str, email: &str, kind: &str, status: &str| {
            format!(
                r#"{{"id":"{id}","email":"{email}","name":"N","kind":"{kind}","status":"{status}","manager":""}}"#
            )
        };
        let doc = |recs: &[String]| format!(r#"{{"identities":[{}]}}"#, recs.join(","));
        let e = json_err(&doc(&[
            rec("E1", "a@x.io", "human", "active"),
            rec("E1", "b@x.io", "human", "active"),
        ]));
        assert_eq!(
            e.to_string(),
            r#"hr.json: identities[1]: duplicate id "E1" (first on identities[0])"#
        );
        let e = json_err(&doc(&[
            rec("E1", "a@x.io", "human", "active"),
            rec("E2", "A@x.io", "human", "active"),
        ]));
        assert!(
            matches!(e.problem(), Some(Problem::DuplicateEmail { .. })),
            "{e}"
        );
        let e = json_err(&doc(&[rec("", "a@x.io", "human", "active")]));
        assert_eq!(e.to_string(), "hr.json: identities[0]: empty id");
        let e = json_err(&doc(&[rec("E1", "", "human", "active")]));
        assert_eq!(e.problem(), Some(&Problem::Empty("email")));
        let e = json_err(&doc(&[rec("E1", "nope", "human", "active")]));
        assert!(
            matches!(e.problem(), Some(Problem::MalformedEmail(_))),
            "{e}"
        );
        let e = json_err(&doc(&[rec("E1", "a@x.io", "alien", "active")]));
        assert!(matches!(e.problem(), Some(Problem::UnknownKind(_))), "{e}");
        let e = json_err(&doc(&[rec("E1", "a@x.io", "human", "gone")]));
        assert!(
            matches!(e.problem(), Some(Problem::UnknownStatus(_))),
            "{e}"
        );
    }

    #[test]
    fn from_identities_validates_the_same_way() {
        let person = |id: &str, email: &str| Identity {
            id: id.into(),
            email: email.into(),
            name: id.into(),
            kind: IdentityKind::Human,
            status: IdentityStatus::Active,
            manager: None,
            department: None,
            role: None,
            location: None,
            employment_type: None,
            tags: BTreeSet::new(),
        };
        let dir = Directory::from_identities(vec![person("E1", "a@x.io"), person("E2", "b@x.io")])
            .expect("ok");
        assert_eq!(dir.len(), 2);
        let e = Directory::from_identities(vec![person("E1", "a@x.io"), person("E1", "b@x.io")])
            .expect_err("duplicate");
        assert_eq!(
            e.to_string(),
            r#"identities: [1]: duplicate id "E1" (first on [0])"#
        );
        let e = Directory::from_identities(vec![person("E1", "no-at")]).expect_err("email");
        assert!(matches!(e.problem(), Some(Problem::MalformedEmail(_))));
        let e = Directory::from_identities(vec![person("", "a@x.io")]).expect_err("id");
        assert_eq!(e.problem(), Some(&Problem::Empty("id")));
        assert!(Directory::from_identities(Vec::new())
            .expect("empty")
            .is_empty());
    }

    #[test]
    fn load_chooses_format_by_extension() {
        let dir = tempfile::tempdir().expect("tempdir");
        let csv_path = dir.path().join("HR.CSV");
        std::fs::write(&csv_path, csv(&["E1,a@x.io,A,human,active,"])).expect("write csv");
        assert_eq!(Directory::load(&csv_path).expect("csv").len(), 1);

        let json_path = dir.path().join("hr.json");
        std::fs::write(
            &json_path,
            r#"[{"id":"E1","email":"a@x.io","name":"A","kind":"human","status":"active","manager":""}]"#,
        )
        .expect("write json");
        assert_eq!(Directory::load(&json_path).expect("json").len(), 1);

        let bad = dir.path().join("hr.csv");
        std::fs::write(
            &bad,
            csv(&["E1,a@x.io,A,human,active,", "E1,b@x.io,B,human,active,"]),
        )
        .expect("write");
        let e = Directory::load(&bad).expect_err("duplicate");
        assert_eq!(
            e.to_string(),
            format!(
                r#"{}:3: duplicate id "E1" (first on line 2)"#,
                bad.display()
            )
        );

        let xlsx = dir.path().join("hr.xlsx");
        std::fs::write(&xlsx, "x").expect("write");
        let e = Directory::load(&xlsx).expect_err("unsupported");
        assert!(matches!(e, SourceError::UnsupportedFormat { .. }));
        assert!(
            e.to_string().contains("expected a .csv or .json file"),
            "{e}"
        );

        let e = Directory::load(dir.path().join("missing.csv")).expect_err("missing");
        assert!(matches!(e, SourceError::Read { .. }));
        assert!(e.to_string().contains("missing.csv"), "{e}");
    }

    #[test]
    fn the_demo_export_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/demo/hr.csv");
        let dir = Directory::load(&path).expect("demo hr.csv");
        assert!(!dir.is_empty());
    }
}

/// Properties over generated exports (docs/fuzzing.md; the fuzz targets `hr_csv` and `hr_json`
/// drive the same parsers with coverage-guided input).
#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    /// Generated identities, valid by construction: unique ids and emails, a manager that is
    /// another identity, values without surrounding whitespace (the parser trims), lower-case tags.
    fn identities() -> impl Strategy<Value = Vec<Identity>> {
        let word = "[A-Za-z0-9][A-Za-z0-9 ,.'\"-]{0,10}[A-Za-z0-9]";
        let one = (
            word,
            prop::sample::select(vec![IdentityKind::Human, IdentityKind::Service]),
            prop::sample::select(vec![
                IdentityStatus::Active,
                IdentityStatus::Terminated,
                IdentityStatus::Suspended,
            ]),
            any::<bool>(),
            prop::option::of("[A-Za-z0-9][A-Za-z0-9 ]{0,8}[A-Za-z0-9]"),
            prop::option::of("[A-Za-z0-9]{1,8}"),
            prop::collection::btree_set("[a-z0-9-]{1,8}", 0..3),
        );
        prop::collection::vec(one, 0..6).prop_map(|rows| {
            rows.into_iter()
                .enumerate()
                .map(
                    |(i, (name, kind, status, managed, department, role, tags))| Identity {
                        id: format!("E{i}"),
                        email: format!("person{i}@Example.com"),
                        name,
                        kind,
                        status,
                        manager: (managed && i > 0).then(|| "E0".to_string()),
                        department,
                        role,
                        location: None,
                        employment_type: None,
                        tags,
                    },
                )
                .collect()
        })
    }

    fn kind_name(k: IdentityKind) -> &'static str {
        match k {
            IdentityKind::Human => "human",
            IdentityKind::Service => "service",
        }
    }

    fn status_name(s: IdentityStatus) -> &'static str {
        match s {
            IdentityStatus::Active => "active",
            IdentityStatus::Terminated => "terminated",
            IdentityStatus::Suspended => "suspended",
        }
    }

    /// The export as an HR system's CSV writer would produce it (quoting where needed).
    fn to_csv(ids: &[Identity]) -> String {
        let mut w = csv::Writer::from_writer(Vec::new());
        let header = [
            "id",
            "email",
            "name",
            "kind",
            "status",
            "manager",
            "department",
            "role",
            "tags",
        ];
        w.write_record(header).unwrap();
        for i in ids {
            let tags = i.tags.iter().cloned().collect::<Vec<_>>().join(";");
            w.write_record([
                i.id.as_str(),
                &i.email,
                &i.name,
                kind_name(i.kind),
                status_name(i.status),
                i.manager.as_deref().unwrap_or(""),
                i.department.as_deref().unwrap_or(""),
                i.role.as_deref().unwrap_or(""),
                &tags,
            ])
            .unwrap();
        }
        String::from_utf8(w.into_inner().unwrap()).unwrap()
    }

    fn to_json(ids: &[Identity]) -> String {
        let rows: Vec<serde_json::Value> = ids
            .iter()
            .map(|i| {
                serde_json::json!({
                    "id": i.id, "email": i.email, "name": i.name,
                    "kind": kind_name(i.kind), "status": status_name(i.status),
                    "manager": i.manager, "department": i.department, "role": i.role,
                    "tags": i.tags,
                })
            })
            .collect();
        serde_json::json!({ "identities": rows }).to_string()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// A valid export written by a CSV writer reads back as exactly its identities.
        #[test]
        fn csv_reads_back_what_was_written(ids in identities()) {
            let text = to_csv(&ids);
            let dir = parse_csv("hr.csv", &text);
            prop_assert!(dir.is_ok(), "{:?}\n{}", dir.as_ref().err().map(ToString::to_string), text);
            let dir = dir.unwrap();
            prop_assert_eq!(dir.identities(), ids.as_slice());
        }

        /// The same export as JSON reads back the same.
        #[test]
        fn json_reads_back_what_was_written(ids in identities()) {
            let text = to_json(&ids);
            let dir = parse_json("hr.json", &text);
            prop_assert!(dir.is_ok(), "{:?}\n{}", dir.as_ref().err().map(ToString::to_string), text);
            let dir = dir.unwrap();
            prop_assert_eq!(dir.identities(), ids.as_slice());
        }

        /// Any text as CSV: a directory or an error that names the file, never a panic.
        #[test]
        fn any_csv_is_read_or_refused(text in "[\\PC\n\r,\"]{0,200}") {
            if let Err(e) = parse_csv("hr.csv", &text) {
                prop_assert!(e.to_string().starts_with("hr.csv"), "{}", e);
            }
        }

        /// A CSV that starts with a valid header, then anything: same promise, deeper in.
        #[test]
        fn csv_rows_of_any_text_are_read_or_refused(rows in "[\\PC\n\r,\";|]{0,200}") {
            let text = format!("id,email,name,kind,status,manager,tags\n{rows}");
            if let Err(e) = parse_csv("hr.csv", &text) {
                prop_assert!(e.to_string().starts_with("hr.csv"), "{}", e);
            }
        }

        /// Any text as JSON: same promise.
        #[test]
        fn any_json_is_read_or_refused(text in "[\\PC\n{}\\[\\]\":,]{0,200}") {
            if let Err(e) = parse_json("hr.json", &text) {
                prop_assert!(e.to_string().starts_with("hr.json"), "{}", e);
            }
        }
    }
}
