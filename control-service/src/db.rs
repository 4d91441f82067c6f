//! The seam between the ledger and a SQL database: run statements inside
//! one transaction, with arguments and rows in a handful of plain types.
//!
//! The ledger (`ledger/`) writes its flows once against [`Db`] and [`Tx`],
//! in the SQL both SQLite (≥ 3.35) and PostgreSQL accept: `?N` placeholders
//! (PostgreSQL's `$N` are substituted by its backend), `ON CONFLICT … DO`,
//! `RETURNING`, [`sum`] for money and tokens (SUM saturating; PostgreSQL's
//! SUM of BIGINT is NUMERIC, so counts are `CAST(SUM(…) AS BIGINT)`), `CASE` instead of two-argument `MAX`/`GREATEST`. A backend
//! (`sqlite.rs`, `postgres.rs`) holds only its connection handling, its
//! locks and its schema migrations (`migrations/<dialect>/`).

use crate::store::{Result, StoreError};

/// A statement argument. Borrowed: ingest binds 19 per record.
#[derive(Debug, Clone, Copy)]
pub enum Arg<'a> {
    Null,
    Int(i64),
    Text(&'a str),
    /// A column of rows as one array (`text[]`), where [`Tx::takes_arrays`].
    Texts(&'a [Option<&'a str>]),
    /// The same, `bigint[]`.
    Ints(&'a [Option<i64>]),
}

/// `SUM(expr)` of BIGINT values as a BIGINT, in the SQL of both dialects,
/// saturating instead of failing. SQLite's SUM of integers raises "integer
/// overflow" and PostgreSQL's CAST of a NUMERIC past BIGINT fails, so a
/// report or a budget recount over enough records at the bounds a record
/// may carry (9,224 records of $1 billion, a filter-token holder's or a
/// provider's doing) failed for good. The sum is taken in millions and
/// units (each part far from overflow for any number of rows a database
/// holds), exact up to ±9,223,372,036,853,999,999 and saturating beyond.
/// A single expression: each backend computes each SUM once. (PostgreSQL
/// takes [`Tx::sum`]'s shorter form: a report's statements are many and
/// each connection keeps 256 of them, so their size is memory.)
pub fn sum(expr: &str) -> String {
    let hi = format!("CAST(COALESCE(SUM(({expr}) / 1000000), 0) AS BIGINT)");
    let lo = format!("CAST(COALESCE(SUM(({expr}) % 1000000), 0) AS BIGINT)");
    let m = format!("({hi} + {lo} / 1000000)");
    format!(
        "(CASE WHEN {m} >= 9223372036854 THEN 9223372036854775807 WHEN {m} <= -9223372036854 THEN -9223372036854775807 \
         ELSE {m} * 1000000 + {lo} % 1000000 END)"
    )
}

/// Numbers above `i64::MAX` are stored as `i64::MAX` (every count is
/// bounded far below it; sums saturate in SQL).
pub fn int(v: u64) -> Arg<'static> {
    Arg::Int(i64::try_from(v).unwrap_or(i64::MAX))
}

pub fn opt_int(v: Option<u64>) -> Arg<'static> {
    v.map(int).unwrap_or(Arg::Null)
}

/// Rows (or listed values) one statement carries when the ledger writes or
/// reads many at once: a few thousand parameters, far below both dialects'
/// limits, and one round trip instead of hundreds on PostgreSQL.
pub const ROWS_PER_STATEMENT: usize = 500;

/// `items` cut for multi-row statements: whole statements of
/// `ROWS_PER_STATEMENT` rows, then the rest in powers of two (499 = 256 +
/// 128 + 64 + 32 + 16 + 2 + 1). A statement's text follows its row count,
/// and PostgreSQL keeps every text a connection prepared for the
/// connection's life: one text per count from 1 to 500 grew its backends
/// by 440 MiB after 500 ingest batches of different sizes. So each such
/// statement has at most ten texts; a partial batch costs a round trip per
/// one bit of its size.
pub fn statement_chunks<T>(items: &[T]) -> impl Iterator<Item = &[T]> {
    let mut rest = items;
    std::iter::from_fn(move || {
        let n = match rest.len() {
            0 => return None,
            n if n >= ROWS_PER_STATEMENT => ROWS_PER_STATEMENT,
            n => 1 << n.ilog2(),
        };
        let (head, tail) = rest.split_at_checked(n)?;
        rest = tail;
        Some(head)
    })
}

/// A column's SQL type, where rows go in as one array per column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Col {
    Text,
    Int,
}

/// Rows of arguments turned into one array per column ([`Arg::Texts`],
/// [`Arg::Ints`]), for a statement that `unnest`s them.
pub struct Arrays<'a> {
    columns: Vec<Column<'a>>,
}

enum Column<'a> {
    Texts(Vec<Option<&'a str>>),
    Ints(Vec<Option<i64>>),
}

impl<'a> Arrays<'a> {
    /// `args` holds rows of `cols.len()` arguments, row after row. An
    /// argument of another type than its column's is an error (it would
    /// otherwise be stored as NULL), and so is a row cut short.
    pub fn of(cols: &[Col], args: &[Arg<'a>]) -> Result<Arrays<'a>> {
        let width = cols.len().max(1);
        if !args.len().is_multiple_of(width) {
            return Err(StoreError::Backend(format!("{} arguments are not rows of {width}", args.len())));
        }
        let rows = args.len() / width;
        let mut columns: Vec<Column<'a>> = cols
            .iter()
            .map(|c| match c {
                Col::Text => Column::Texts(Vec::with_capacity(rows)),
                Col::Int => Column::Ints(Vec::with_capacity(rows)),
            })
            .collect();
        for row in args.chunks(width) {
            for (i, (column, arg)) in columns.iter_mut().zip(row).enumerate() {
                match (column, arg) {
                    (Column::Texts(v), Arg::Text(s)) => v.push(Some(*s)),
                    (Column::Texts(v), Arg::Null) => v.push(None),
                    (Column::Ints(v), Arg::Int(n)) => v.push(Some(*n)),
                    (Column::Ints(v), Arg::Null) => v.push(None),
                    _ => return Err(StoreError::Backend(format!("argument {} of a row is not of its column's type", i + 1))),
                }
            }
        }
        Ok(Arrays { columns })
    }

    /// One argument per column.
    pub fn args(&self) -> impl Iterator<Item = Arg<'_>> {
        self.columns.iter().map(|c| match c {
            Column::Texts(v) => Arg::Texts(v),
            Column::Ints(v) => Arg::Ints(v),
        })
    }
}

/// `INSERT INTO {into} SELECT * FROM unnest(?1::TEXT[], ?2::BIGINT[], …)
/// {tail}`: rows given as one array per column of `cols`.
pub fn array_insert_sql(into: &str, tail: &str, cols: &[Col]) -> String {
    let arrays: Vec<String> = cols
        .iter()
        .enumerate()
        .map(|(i, c)| format!("?{}::{}", i + 1, if *c == Col::Text { "TEXT[]" } else { "BIGINT[]" }))
        .collect();
    format!("INSERT INTO {into} SELECT * FROM unnest({}) {tail}", arrays.join(", "))
}

/// Runs `sql` (an [`array_insert_sql`]) with rows of `cols.len()`
/// arguments (`args`, row after row); the rows it stored.
pub fn insert_arrays(tx: &mut dyn Tx, sql: &str, cols: &[Col], args: &[Arg<'_>]) -> Result<u64> {
    let arrays = Arrays::of(cols, args)?;
    tx.execute(sql, &arrays.args().collect::<Vec<_>>())
}

/// Inserts rows of `cols.len()` arguments each (`args` holds them row
/// after row) into `into` ("table (columns)"), `tail` after (its ON
/// CONFLICT): one statement of an array per column where the database
/// takes arrays ([`Tx::takes_arrays`]), else `VALUES (…), …` cut by
/// [`statement_chunks`], a round trip each. The rows it stored.
pub fn insert_rows(tx: &mut dyn Tx, into: &str, tail: &str, cols: &[Col], args: &[Arg<'_>]) -> Result<u64> {
    if args.is_empty() {
        return Ok(0);
    }
    if tx.takes_arrays() {
        return insert_arrays(tx, &array_insert_sql(into, tail, cols), cols, args);
    }
    let width = cols.len().max(1);
    let rows: Vec<&[Arg<'_>]> = args.chunks(width).collect();
    let mut stored = 0;
    for chunk in statement_chunks(&rows) {
        stored += tx.execute(&format!("INSERT INTO {into} VALUES {} {tail}", values(chunk.len(), width)), &chunk.concat())?;
    }
    Ok(stored)
}

/// `?{from}, ?{from + 1}, …`: `n` numbered parameters.
pub fn params(from: usize, n: usize) -> String {
    (from..from + n).map(|i| format!("?{i}")).collect::<Vec<_>>().join(", ")
}

/// `(?1, …, ?{width}), (…), …`: `rows` rows of `width` numbered
/// parameters, for a multi-row `INSERT … VALUES`.
pub fn values(rows: usize, width: usize) -> String {
    (0..rows).map(|j| format!("({})", params(j * width + 1, width))).collect::<Vec<_>>().join(", ")
}

impl<'a> From<&'a str> for Arg<'a> {
    fn from(v: &'a str) -> Self {
        Arg::Text(v)
    }
}
impl<'a> From<&'a String> for Arg<'a> {
    fn from(v: &'a String) -> Self {
        Arg::Text(v)
    }
}
impl<'a> From<Option<&'a str>> for Arg<'a> {
    fn from(v: Option<&'a str>) -> Self {
        v.map(Arg::Text).unwrap_or(Arg::Null)
    }
}
impl<'a> From<&'a Option<String>> for Arg<'a> {
    fn from(v: &'a Option<String>) -> Self {
        v.as_deref().into()
    }
}
impl From<i64> for Arg<'static> {
    fn from(v: i64) -> Self {
        Arg::Int(v)
    }
}

/// A value read back. Booleans and every integer width read as `Int`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Null,
    Int(i64),
    Text(String),
}

#[derive(Debug, Clone)]
pub struct Row(pub Vec<Value>);

fn wrong(i: usize, want: &str, got: &Value) -> StoreError {
    StoreError::Backend(format!("column {i}: expected {want}, found {got:?}"))
}

impl Row {
    fn at(&self, i: usize) -> Result<&Value> {
        self.0.get(i).ok_or_else(|| StoreError::Backend(format!("no column {i}")))
    }
    pub fn opt_i64(&self, i: usize) -> Result<Option<i64>> {
        match self.at(i)? {
            Value::Null => Ok(None),
            Value::Int(v) => Ok(Some(*v)),
            other => Err(wrong(i, "an integer", other)),
        }
    }
    pub fn i64(&self, i: usize) -> Result<i64> {
        self.opt_i64(i)?.ok_or_else(|| wrong(i, "an integer", &Value::Null))
    }
    /// A stored count; negative values (never written) read as 0.
    pub fn u64(&self, i: usize) -> Result<u64> {
        Ok(u64::try_from(self.i64(i)?).unwrap_or(0))
    }
    pub fn opt_u64(&self, i: usize) -> Result<Option<u64>> {
        Ok(self.opt_i64(i)?.map(|v| u64::try_from(v).unwrap_or(0)))
    }
    pub fn opt_text(&self, i: usize) -> Result<Option<String>> {
        match self.at(i)? {
            Value::Null => Ok(None),
            Value::Text(s) => Ok(Some(s.clone())),
            other => Err(wrong(i, "text", other)),
        }
    }
    pub fn text(&self, i: usize) -> Result<String> {
        self.opt_text(i)?.ok_or_else(|| wrong(i, "text", &Value::Null))
    }
}

/// What a transaction is for; a backend maps it to its locks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxKind {
    /// Reads only (PostgreSQL: no transaction at all).
    Read,
    /// Writes that need no ordering beyond row locks.
    Write,
    /// A usage batch: on PostgreSQL it holds the budget lock shared, so the
    /// budgets it counts against cannot change (nor be recounted) under it.
    Ingest,
    /// Grants for one Envoy: serialised with every other grant.
    Grant,
    /// A budget changes (set, or a request approved): serialised with other
    /// budget changes, and on PostgreSQL with the usage batches in flight.
    Budget,
    /// The key set changes: serialised, so change numbers become visible in order.
    Keys,
    /// Schema migrations: one process at a time.
    Migrate,
}

/// Statements inside one open transaction. A unique-constraint violation
/// is `StoreError::Conflict`; everything else the database refuses is
/// `StoreError::Backend`.
pub trait Tx {
    /// A SELECT of the `[first, second]` text pairs in the JSON array
    /// column `col` of the rows of `table` that `filter` keeps (its
    /// columns as `t.name`), as columns `first` and `second`, in each
    /// dialect's words (SQLite's `json_each`, PostgreSQL's
    /// `jsonb_array_elements`).
    fn json_pairs(&self, table: &str, col: &str, filter: &str) -> String;
    /// `SUM(expr)` of BIGINT values as a BIGINT that saturates instead of
    /// failing ([`sum`]; PostgreSQL's own is shorter, its SUM being exact).
    fn sum(&self, expr: &str) -> String {
        sum(expr)
    }
    /// Whether statements take [`Arg::Texts`] and [`Arg::Ints`] (and
    /// `unnest` them): PostgreSQL, where one INSERT of a column array per
    /// column is cheaper than a VALUES list of 500 rows, each row's
    /// expressions set up apart.
    fn takes_arrays(&self) -> bool {
        false
    }
    /// Runs a statement; the number of rows it changed.
    fn execute(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<u64>;
    fn query(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<Vec<Row>>;
    /// Several statements, no arguments (migrations).
    fn batch(&mut self, sql: &str) -> Result<()>;

    fn query_opt(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<Option<Row>> {
        Ok(self.query(sql, args)?.into_iter().next())
    }
    fn query_one(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<Row> {
        self.query_opt(sql, args)?.ok_or_else(|| StoreError::Backend(format!("no row from: {sql}")))
    }
}

/// A database: runs `f` in one transaction, committed when `f` returns Ok
/// and rolled back when it returns Err.
pub trait Db: Send + Sync + 'static {
    fn run<T>(&self, kind: TxKind, f: impl FnOnce(&mut dyn Tx) -> Result<T>) -> Result<T>;
    /// How many write transactions can make progress at once (SQLite: one).
    fn writers(&self) -> usize {
        1
    }
    /// Brings the planner's statistics up to date on the tables the state
    /// poll reads, where they have changed by more than a tenth since last
    /// measured; the tables it measured. SQLite: none (its planner uses no
    /// statistics unless ANALYZE ran, and the schema's indexes decide its plans).
    fn refresh_statistics(&self) -> Result<Vec<String>> {
        Ok(Vec::new())
    }
}

/// One schema change. Versions ascend from 1; an applied version is never
/// edited, a change is a new version.
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

/// Applies the migrations the database has not seen, in one transaction
/// (both dialects' DDL is transactional), and refuses a database written
/// by a newer Tollgate. Why not refinery: it pins rusqlite to older
/// versions than the one this crate uses, and this runner is the same for
/// both backends because it runs over [`Tx`].
pub fn migrate(db: &impl Db, migrations: &[Migration], now_ms: u64) -> Result<Vec<i64>> {
    db.run(TxKind::Migrate, |tx| {
        tx.batch(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_ms BIGINT NOT NULL)",
        )?;
        let applied: Vec<(i64, String)> = tx
            .query("SELECT version, name FROM schema_migrations ORDER BY version", &[])?
            .iter()
            .map(|r| Ok((r.i64(0)?, r.text(1)?)))
            .collect::<Result<_>>()?;
        let newest_known = migrations.iter().map(|m| m.version).max().unwrap_or(0);
        if let Some((v, name)) = applied.iter().find(|(v, _)| *v > newest_known) {
            return Err(StoreError::Invalid(format!(
                "the database has schema version {v} ({name}), newer than this Tollgate knows ({newest_known}): upgrade Tollgate"
            )));
        }
        let mut done = Vec::new();
        for m in migrations {
            match applied.iter().find(|(v, _)| *v == m.version) {
                Some((_, name)) if name != m.name => {
                    return Err(StoreError::Invalid(format!(
                        "schema version {} is '{}' in the database but '{}' in this Tollgate",
                        m.version, name, m.name
                    )))
                }
                Some(_) => continue,
                None => {}
            }
            tx.batch(m.sql)?;
            tx.execute(
                "INSERT INTO schema_migrations (version, name, applied_ms) VALUES (?1, ?2, ?3)",
                &[Arg::Int(m.version), Arg::Text(m.name), int(now_ms)],
            )?;
            done.push(m.version);
        }
        Ok(done)
    })
}

/// `?N` placeholders as PostgreSQL's `$N` (outside quoted text).
pub fn dollar_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut quoted = false;
    for c in sql.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                out.push(c);
            }
            '?' if !quoted => out.push('$'),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows become one array per column; an argument of the wrong type, or
    /// a row cut short, is an error rather than a NULL stored.
    #[test]
    fn rows_become_one_array_per_column_of_its_type() {
        let cols = [Col::Text, Col::Int];
        let args = [Arg::Text("a"), Arg::Int(1), Arg::Null, Arg::Null, Arg::Text("c"), Arg::Int(3)];
        let arrays = Arrays::of(&cols, &args).unwrap();
        let got: Vec<String> = arrays.args().map(|a| format!("{a:?}")).collect();
        assert_eq!(got, [r#"Texts([Some("a"), None, Some("c")])"#, "Ints([Some(1), None, Some(3)])"]);
        assert!(Arrays::of(&cols, &[Arg::Int(1), Arg::Int(2)]).is_err(), "an int in a text column");
        assert!(Arrays::of(&cols, &[Arg::Text("a"), Arg::Text("b")]).is_err(), "a text in an int column");
        assert!(Arrays::of(&cols, &args[..3]).is_err(), "a row cut short");
        assert_eq!(array_insert_sql("t (a, b)", "ON CONFLICT DO NOTHING", &cols), "INSERT INTO t (a, b) SELECT * FROM unnest(?1::TEXT[], ?2::BIGINT[]) ON CONFLICT DO NOTHING");
    }

    #[test]
    fn values_number_rows_of_parameters() {
        assert_eq!(values(2, 3), "(?1, ?2, ?3), (?4, ?5, ?6)");
        assert_eq!(values(3, 1), "(?1), (?2), (?3)");
    }

    #[test]
    fn statements_are_cut_into_few_sizes_and_keep_every_item_in_order() {
        let mut sizes = std::collections::BTreeSet::new();
        for n in 0..=1700usize {
            let items: Vec<usize> = (0..n).collect();
            let chunks: Vec<&[usize]> = statement_chunks(&items).collect();
            assert_eq!(chunks.concat(), items, "{n}");
            assert!(chunks.iter().all(|c| !c.is_empty() && c.len() <= ROWS_PER_STATEMENT));
            sizes.extend(chunks.iter().map(|c| c.len()));
        }
        assert_eq!(sizes.into_iter().collect::<Vec<_>>(), [1, 2, 4, 8, 16, 32, 64, 128, 256, 500]);
        assert_eq!(statement_chunks(&[0u8; 1499]).map(<[u8]>::len).collect::<Vec<_>>(), [500, 500, 256, 128, 64, 32, 16, 2, 1]);
    }

    #[test]
    fn placeholders_outside_quotes_only() {
        assert_eq!(dollar_placeholders("SELECT ?1, '?x' WHERE a = ?12"), "SELECT $1, '?x' WHERE a = $12");
    }

    #[test]
    fn rows_read_their_types_or_say_what_they_found() {
        let r = Row(vec![Value::Int(-3), Value::Null, Value::Text("x".into())]);
        assert_eq!(r.u64(0).unwrap(), 0);
        assert_eq!(r.opt_u64(1).unwrap(), None);
        assert_eq!(r.text(2).unwrap(), "x");
        assert!(r.i64(2).unwrap_err().to_string().contains("expected an integer"));
        assert!(r.text(1).is_err());
        assert!(r.i64(9).is_err());
    }
}
