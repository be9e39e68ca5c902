//! SQL over the lake with DataFusion: one table per log type plus `classification_failures`, each
//! registered with its hive partition columns. Predicates on the time column (`p_event_time`, or
//! `p_parse_time` for failures) are turned into predicates on the partition columns, so only the
//! matching hours are read. Panther's time macros (`p_occurs_since('1 day')`, ...) are expanded first.

use std::fmt;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::execution::context::SQLOptions;
use datafusion::logical_expr::{
    BinaryExpr, Expr, Operator, TableProviderFilterPushDown, TableType, col, lit,
};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::{SessionConfig, SessionContext};
use jiff::Timestamp;
use jiff::tz::Offset;
use orgtrail_schema::Registry;

use crate::LakeError;
use crate::arrow::table_schema;
use crate::store::{LakeView, Location};
use crate::write::{FAILURES_TABLE, failures_schema};

/// The hive partition columns every table has.
pub const PARTITION_COLUMNS: [&str; 4] = ["year", "month", "day", "hour"];

/// The result of [`QueryEngine::sql_read_only`]: at most the requested number of rows.
#[derive(Debug, Clone)]
pub struct LimitedResult {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    /// The query had more rows than were kept.
    pub truncated: bool,
}

/// A query session over one lake.
pub struct QueryEngine {
    ctx: SessionContext,
}

impl fmt::Debug for QueryEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("QueryEngine")
    }
}

impl QueryEngine {
    /// Registers every log type of `registry` and `classification_failures`.
    pub fn new(location: &Location, registry: &Registry) -> Result<Self, LakeError> {
        let config = SessionConfig::new()
            .with_information_schema(true)
            .set_bool("datafusion.execution.parquet.pushdown_filters", true)
            // Statistics would mean reading every file's footer while planning, before the scan
            // reads it again; pruning uses the hour partitions and the row-group statistics the
            // scan reads anyway.
            .with_collect_statistics(false)
            // More partitions than cores: file opens and reads overlap with decoding (measured on
            // 2 cores: 4 beats 2 and 8 for a few hundred hour files).
            .with_target_partitions(
                std::thread::available_parallelism()
                    .map_or(2, |n| n.get() * 2)
                    .max(4),
            );
        let ctx = SessionContext::new_with_config(config);
        ctx.register_object_store(
            &location.store_url,
            Arc::new(LakeView::new(location.store.clone())),
        );
        for name in registry.names() {
            let schema = registry.get(&name)?;
            register(
                &ctx,
                location,
                &schema.table_name(),
                table_schema(&schema),
                "p_event_time",
            )?;
        }
        register(
            &ctx,
            location,
            FAILURES_TABLE,
            failures_schema(),
            "p_parse_time",
        )?;
        register(
            &ctx,
            location,
            crate::SYSTEM_ERRORS_TABLE,
            crate::system_errors_schema(),
            "p_event_time",
        )?;
        Ok(QueryEngine { ctx })
    }

    /// Runs one SQL statement and collects its result.
    pub async fn sql(&self, sql: &str) -> Result<(SchemaRef, Vec<RecordBatch>), LakeError> {
        let expanded = expand_macros(sql)?;
        let df = self
            .ctx
            .sql(&expanded)
            .await
            .map_err(|e| LakeError::Query(e.to_string()))?;
        let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
        let batches = df
            .collect()
            .await
            .map_err(|e| LakeError::Query(e.to_string()))?;
        Ok((schema, batches))
    }

    /// Runs one read-only statement for untrusted callers (the web console): DDL (`CREATE ...`),
    /// DML (`INSERT`, `COPY ... TO`) and statements (`SET`, transactions) are refused before
    /// anything runs. Streams the result and keeps at most `max_rows` rows; `truncated` says whether
    /// there were more.
    pub async fn sql_read_only(
        &self,
        sql: &str,
        max_rows: usize,
    ) -> Result<LimitedResult, LakeError> {
        use futures::StreamExt;
        let expanded = expand_macros(sql)?;
        let options = SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        let df = self
            .ctx
            .sql_with_options(&expanded, options)
            .await
            .map_err(|e| LakeError::Query(e.to_string()))?;
        let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
        let mut stream = df
            .execute_stream()
            .await
            .map_err(|e| LakeError::Query(e.to_string()))?;
        let mut batches = Vec::new();
        let mut rows = 0usize;
        let mut truncated = false;
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(|e| LakeError::Query(e.to_string()))?;
            let room = max_rows - rows;
            if batch.num_rows() > room {
                truncated = true;
                if room > 0 {
                    batches.push(batch.slice(0, room));
                }
                break;
            }
            rows += batch.num_rows();
            if batch.num_rows() > 0 {
                batches.push(batch);
            }
        }
        Ok(LimitedResult {
            schema,
            batches,
            truncated,
        })
    }

    /// The physical plan of a query, as `EXPLAIN` shows it (used to prove partition pruning).
    pub async fn explain(&self, sql: &str) -> Result<String, LakeError> {
        let (_, batches) = self.sql(&format!("EXPLAIN {sql}")).await?;
        let text = arrow::util::pretty::pretty_format_batches(&batches)?.to_string();
        Ok(text)
    }
}

fn register(
    ctx: &SessionContext,
    location: &Location,
    table: &str,
    schema: SchemaRef,
    time_col: &'static str,
) -> Result<(), LakeError> {
    let url = ListingTableUrl::parse(location.table_url(table))
        .map_err(|e| LakeError::Query(e.to_string()))?;
    let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
        .with_file_extension(".parquet")
        .with_table_partition_cols(
            PARTITION_COLUMNS
                .iter()
                .map(|c| (c.to_string(), DataType::Utf8))
                .collect(),
        );
    let config = ListingTableConfig::new(url)
        .with_listing_options(options)
        .with_schema(schema);
    let inner = ListingTable::try_new(config).map_err(|e| LakeError::Query(e.to_string()))?;
    let provider = HourPruned {
        inner: Arc::new(inner),
        time_col,
    };
    ctx.register_table(table, Arc::new(provider))
        .map_err(|e| LakeError::Query(e.to_string()))?;
    Ok(())
}

/// A listing table whose time-column predicates also prune hour partitions.
#[derive(Debug)]
struct HourPruned {
    inner: Arc<ListingTable>,
    time_col: &'static str,
}

#[async_trait]
impl TableProvider for HourPruned {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let mut all = filters.to_vec();
        for f in filters {
            all.extend(partition_filters(f, self.time_col));
        }
        self.inner.scan(state, projection, &all, limit).await
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> datafusion::error::Result<Vec<TableProviderFilterPushDown>> {
        self.inner.supports_filters_pushdown(filters)
    }
}

/// `YYYYMMDDHH` of a time: the partition columns concatenated compare the same way.
fn hour_key(nanos: i128) -> Option<String> {
    let dt = Offset::UTC.to_datetime(Timestamp::from_nanosecond(nanos).ok()?);
    Some(format!(
        "{:04}{:02}{:02}{:02}",
        dt.year(),
        dt.month(),
        dt.day(),
        dt.hour()
    ))
}

fn literal_nanos(e: &Expr) -> Option<i128> {
    let Expr::Literal(v, _) = e else { return None };
    let n = match v {
        ScalarValue::TimestampNanosecond(Some(v), _) => i128::from(*v),
        ScalarValue::TimestampMicrosecond(Some(v), _) => i128::from(*v) * 1_000,
        ScalarValue::TimestampMillisecond(Some(v), _) => i128::from(*v) * 1_000_000,
        ScalarValue::TimestampSecond(Some(v), _) => i128::from(*v) * 1_000_000_000,
        _ => return None,
    };
    Some(n)
}

fn is_time_col(e: &Expr, name: &str) -> bool {
    match e {
        Expr::Column(c) => c.name == name,
        Expr::Cast(c) => is_time_col(&c.expr, name),
        _ => false,
    }
}

/// Predicates on the partition columns implied by a predicate on the time column.
fn partition_filters(e: &Expr, time_col: &str) -> Vec<Expr> {
    let key = || {
        PARTITION_COLUMNS[1..]
            .iter()
            .fold(col(PARTITION_COLUMNS[0]), |acc, c| {
                Expr::BinaryExpr(BinaryExpr::new(
                    Box::new(acc),
                    Operator::StringConcat,
                    Box::new(col(*c)),
                ))
            })
    };
    let bound = |op: Operator, nanos: i128| -> Option<Expr> {
        let k = hour_key(nanos)?;
        let op = match op {
            Operator::Gt | Operator::GtEq => Operator::GtEq,
            Operator::Lt | Operator::LtEq => Operator::LtEq,
            Operator::Eq => Operator::Eq,
            _ => return None,
        };
        Some(Expr::BinaryExpr(BinaryExpr::new(
            Box::new(key()),
            op,
            Box::new(lit(k)),
        )))
    };
    match e {
        Expr::BinaryExpr(b) if b.op == Operator::And => {
            let mut v = partition_filters(&b.left, time_col);
            v.extend(partition_filters(&b.right, time_col));
            v
        }
        Expr::BinaryExpr(b) => {
            if is_time_col(&b.left, time_col)
                && let Some(n) = literal_nanos(&b.right)
            {
                return bound(b.op, n).into_iter().collect();
            }
            if is_time_col(&b.right, time_col)
                && let (Some(n), Some(op)) = (literal_nanos(&b.left), b.op.swap())
            {
                return bound(op, n).into_iter().collect();
            }
            Vec::new()
        }
        Expr::Between(b) if !b.negated && is_time_col(&b.expr, time_col) => {
            let lo = literal_nanos(&b.low).and_then(|n| bound(Operator::GtEq, n));
            let hi = literal_nanos(&b.high).and_then(|n| bound(Operator::LtEq, n));
            lo.into_iter().chain(hi).collect()
        }
        _ => Vec::new(),
    }
}

/// Expands Panther's time macros (outside string literals, quoted identifiers and comments):
///
/// | macro | becomes |
/// |---|---|
/// | `p_occurs_since(offset [, alias])` | `alias.p_event_time >= now() - INTERVAL 'offset'` |
/// | `p_occurs_between(start, end [, alias])` | `p_event_time BETWEEN CAST(start AS TIMESTAMP) AND CAST(end AS TIMESTAMP)` |
/// | `p_occurs_after(t [, alias])`, `p_occurs_before(t [, alias])` | `p_event_time >= t`, `p_event_time <= t` |
/// | `p_occurs_around(t, window [, alias])` | `p_event_time` within `window` of `t` |
///
/// An offset or window is `'1 day'`, `'6 h'`, `'30 minutes'`, `'2 weeks'` or a number of seconds.
pub fn expand_macros(sql: &str) -> Result<String, LakeError> {
    let b = sql.as_bytes();
    let mut out = String::with_capacity(sql.len());
    let mut i = 0;
    let mut last = 0;
    while i < b.len() {
        match b[i] {
            b'\'' | b'"' => i = skip_quoted(b, i),
            b'-' if b.get(i + 1) == Some(&b'-') => {
                i = sql[i..].find('\n').map_or(b.len(), |n| i + n);
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i = sql[i + 2..].find("*/").map_or(b.len(), |n| i + 2 + n + 2);
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                let word = sql[start..i].to_ascii_lowercase();
                let Some(kind) = word.strip_prefix("p_occurs_") else {
                    continue;
                };
                let mut j = i;
                while j < b.len() && b[j].is_ascii_whitespace() {
                    j += 1;
                }
                if b.get(j) != Some(&b'(') {
                    continue;
                }
                let (args, end) = macro_args(sql, j)?;
                out.push_str(&sql[last..start]);
                out.push_str(&expand(kind, &word, &args)?);
                i = end;
                last = end;
            }
            _ => i += 1,
        }
    }
    out.push_str(&sql[last..]);
    Ok(out)
}

fn skip_quoted(b: &[u8], start: usize) -> usize {
    let q = b[start];
    let mut i = start + 1;
    while i < b.len() {
        if b[i] == q {
            if b.get(i + 1) == Some(&q) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    b.len()
}

/// The comma-separated arguments of a macro call starting at `(`; returns them and the index after `)`.
fn macro_args(sql: &str, open: usize) -> Result<(Vec<String>, usize), LakeError> {
    let b = sql.as_bytes();
    let (mut depth, mut i, mut arg_start) = (0usize, open + 1, open + 1);
    let mut args = Vec::new();
    while i < b.len() {
        match b[i] {
            b'\'' | b'"' => {
                i = skip_quoted(b, i);
                continue;
            }
            b'(' => depth += 1,
            b')' if depth == 0 => {
                let last = sql[arg_start..i].trim();
                if !last.is_empty() || !args.is_empty() {
                    args.push(last.to_owned());
                }
                return Ok((args, i + 1));
            }
            b')' => depth -= 1,
            b',' if depth == 0 => {
                args.push(sql[arg_start..i].trim().to_owned());
                arg_start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    Err(LakeError::Query(format!(
        "unclosed parenthesis after the macro at position {}",
        open + 1
    )))
}

fn expand(kind: &str, name: &str, args: &[String]) -> Result<String, LakeError> {
    let usage = |u: &str| {
        LakeError::Query(format!(
            "{name}: expected {u}, got {} argument(s)",
            args.len()
        ))
    };
    let column = |alias: Option<&String>| match alias {
        Some(a) => format!("{}.p_event_time", a.trim_matches('\'')),
        None => "p_event_time".to_owned(),
    };
    let time = |t: &str| format!("CAST({t} AS TIMESTAMP)");
    Ok(match kind {
        "since" => {
            let [offset, alias @ ..] = args else {
                return Err(usage("(offset [, table alias])"));
            };
            if alias.len() > 1 {
                return Err(usage("(offset [, table alias])"));
            }
            format!(
                "({} >= now() - {})",
                column(alias.first()),
                interval(offset)?
            )
        }
        "between" => {
            let [start, end, alias @ ..] = args else {
                return Err(usage("(start, end [, table alias])"));
            };
            format!(
                "({} BETWEEN {} AND {})",
                column(alias.first()),
                time(start),
                time(end)
            )
        }
        "after" | "before" => {
            let [t, alias @ ..] = args else {
                return Err(usage("(time [, table alias])"));
            };
            let op = if kind == "after" { ">=" } else { "<=" };
            format!("({} {op} {})", column(alias.first()), time(t))
        }
        "around" => {
            let [t, window, alias @ ..] = args else {
                return Err(usage("(time, window [, table alias])"));
            };
            let w = interval(window)?;
            format!(
                "({c} BETWEEN {t} - {w} AND {t} + {w})",
                c = column(alias.first()),
                t = time(t)
            )
        }
        _ => {
            return Err(LakeError::Query(format!(
                "unknown macro {name}: use p_occurs_since, p_occurs_between, p_occurs_after, p_occurs_before or p_occurs_around"
            )));
        }
    })
}

/// `'6 h'` → `INTERVAL '6 hours'`; a bare number is seconds.
fn interval(arg: &str) -> Result<String, LakeError> {
    let text = arg.trim().trim_matches('\'').trim();
    let bad = || {
        LakeError::Query(format!(
            "bad time offset {arg}: use e.g. '1 day', '6 h', '30 minutes' or a number of seconds"
        ))
    };
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    if number.is_empty() || number.parse::<f64>().is_err() {
        return Err(bad());
    }
    let unit = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "s" | "sec" | "secs" | "second" | "seconds" => "seconds",
        "m" | "min" | "mins" | "minute" | "minutes" => "minutes",
        "h" | "hr" | "hrs" | "hour" | "hours" => "hours",
        "d" | "day" | "days" => "days",
        "w" | "week" | "weeks" => "weeks",
        _ => return Err(bad()),
    };
    Ok(format!("INTERVAL '{number} {unit}'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macros_expand_outside_strings_and_comments() {
        assert_eq!(
            expand_macros("SELECT * FROM t WHERE p_occurs_since('1 day')").unwrap(),
            "SELECT * FROM t WHERE (p_event_time >= now() - INTERVAL '1 days')"
        );
        assert_eq!(
            expand_macros("select 1 from t a where P_OCCURS_SINCE('6 h', a) and x = 'p_occurs_since(1)' -- p_occurs_since(2)").unwrap(),
            "select 1 from t a where (a.p_event_time >= now() - INTERVAL '6 hours') and x = 'p_occurs_since(1)' -- p_occurs_since(2)"
        );
        assert_eq!(
            expand_macros("where p_occurs_between('2025-06-01', '2025-06-02 12:00:00')").unwrap(),
            "where (p_event_time BETWEEN CAST('2025-06-01' AS TIMESTAMP) AND CAST('2025-06-02 12:00:00' AS TIMESTAMP))"
        );
        assert_eq!(
            expand_macros("where p_occurs_since(3600)").unwrap(),
            "where (p_event_time >= now() - INTERVAL '3600 seconds')"
        );
        assert!(
            expand_macros("where p_occurs_since('1 fortnight')")
                .unwrap_err()
                .to_string()
                .contains("bad time offset")
        );
        assert!(expand_macros("where p_occurs_since()").is_err());
        assert!(expand_macros("where p_occurs_since('1 day'").is_err());
        assert!(expand_macros("where p_occurs_whenever(1)").is_err());
    }

    #[test]
    fn time_predicates_become_partition_predicates() {
        let t = Timestamp::from_second(1_748_853_727).unwrap(); // 2025-06-02T08:42:07Z
        let ts = lit(ScalarValue::TimestampNanosecond(
            Some(t.as_nanosecond() as i64),
            Some("UTC".into()),
        ));
        let f = col("p_event_time")
            .gt_eq(ts.clone())
            .and(col("x").eq(lit(1)));
        let parts = partition_filters(&f, "p_event_time");
        assert_eq!(parts.len(), 1);
        assert_eq!(
            parts[0].to_string(),
            "year || month || day || hour >= Utf8(\"2025060208\")"
        );
        let rev = ts.clone().lt(col("p_event_time"));
        assert_eq!(
            partition_filters(&rev, "p_event_time")[0].to_string(),
            "year || month || day || hour >= Utf8(\"2025060208\")"
        );
        assert!(partition_filters(&col("p_parse_time").gt(ts), "p_event_time").is_empty());
    }
}
