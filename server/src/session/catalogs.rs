//! A session's copy of PostgreSQL's catalogs (`pgcompat::catalogs`): made when a statement
//! first reads one, filled again before each statement that reads one whenever the schema or
//! the list of databases changed, and the functions catalog queries call (`format_type`,
//! `pg_get_indexdef`, `pg_table_is_visible`, the `REGEXP` behind `~`…).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rusqlite::functions::{Context, FunctionFlags};
use rusqlite::types::{Value, ValueRef};
use rusqlite::{Connection, OptionalExtension};

use crate::pgcompat::catalogs;
use crate::roles::Role;

/// What the functions read of the catalogs' last filling: the definitions of indexes,
/// constraints and views by oid (`pg_get_indexdef`, `pg_get_constraintdef`,
/// `pg_get_viewdef`). A function cannot query its own connection.
#[derive(Debug, Default)]
pub(super) struct Definitions(Mutex<(String, HashMap<i64, String>)>);

impl Definitions {
    fn lock(&self) -> std::sync::MutexGuard<'_, (String, HashMap<i64, String>)> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn get(&self, oid: i64) -> Option<String> {
        self.lock().1.get(&oid).cloned()
    }

    /// Whether they were read from the filling with this key.
    fn are_of(&self, key: &str) -> bool {
        self.lock().0 == key
    }

    fn replace(&self, key: &str, definitions: HashMap<i64, String>) {
        *self.lock() = (key.to_owned(), definitions);
    }
}

/// Who the catalogs are filled for.
pub(super) struct Filling<'a> {
    pub user: &'a str,
    pub role: Role,
    pub databases: Vec<String>,
    /// The users it may see, with their roles, by name: every one for an admin, else only
    /// itself.
    pub users: Vec<(String, Role)>,
    /// Changes so far to the users (the key of their filling).
    pub users_version: u64,
    pub definitions: &'a Definitions,
    /// The session's run-time parameters (name, value, description), for a statement that
    /// reads `pg_settings`: they change without the schema, so they are written each time.
    pub settings: Option<Vec<Vec<rusqlite::types::Value>>>,
}

/// Makes the catalog tables if they are missing and fills them if what they were filled
/// from has changed. Inside the client's transaction, it is part of it (a rollback takes the
/// filling back too, and the next statement fills them again); outside one, it is a
/// transaction of its own on the temporary database, with nothing for the log to sync.
pub(super) fn prepare(conn: &Connection, filling: &Filling<'_>) -> rusqlite::Result<()> {
    let made: bool = conn.query_row(
        "SELECT count(*) > 0 FROM temp.sqlite_schema WHERE name = 'pg_cairn_refreshed'",
        [],
        |r| r.get(0),
    )?;
    let version: i64 = conn.query_row("PRAGMA main.schema_version", [], |r| r.get(0))?;
    let key = format!(
        "{version}|{}|{}|{}|{}",
        filling.user,
        filling.role.name(),
        filling.databases.join(","),
        filling.users_version
    );
    let filled: Option<String> = if made {
        conn.query_row("SELECT key FROM temp.pg_cairn_refreshed", [], |r| r.get(0))
            .optional()?
    } else {
        None
    };
    if filled.as_deref() != Some(key.as_str()) {
        conn.execute_batch("SAVEPOINT cairn_catalogs")?;
        match fill(conn, filling, &key) {
            Ok(()) => conn.execute_batch("RELEASE cairn_catalogs")?,
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK TO cairn_catalogs; RELEASE cairn_catalogs");
                return Err(e);
            }
        }
    } else if filling.definitions.are_of(&key) {
        return fill_settings(conn, filling);
    }
    // Read again with the tables: a rollback may have taken back a filling whose
    // definitions were read, and brought back an older one.
    let mut definitions = HashMap::new();
    let mut stmt = conn.prepare("SELECT oid, def FROM temp.pg_cairn_definitions")?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        definitions.insert(row.get::<_, i64>(0)?, row.get::<_, String>(1)?);
    }
    filling.definitions.replace(&key, definitions);
    fill_settings(conn, filling)
}

/// `pg_settings` as `SHOW ALL` has it, when the statement reads it.
fn fill_settings(conn: &Connection, filling: &Filling<'_>) -> rusqlite::Result<()> {
    let Some(settings) = &filling.settings else {
        return Ok(());
    };
    conn.execute_batch("SAVEPOINT cairn_settings")?;
    let filled = (|| {
        conn.execute_batch("DELETE FROM temp.pg_settings")?;
        let mut insert = conn.prepare(
            "INSERT INTO temp.pg_settings VALUES (?1, ?2, NULL, 'Cairn', ?3, NULL, 'user', 'string', 'session', NULL, NULL, NULL, ?2, ?2, NULL, NULL, 0)",
        )?;
        for row in settings {
            insert.execute(rusqlite::params_from_iter(row.iter().take(3)))?;
        }
        Ok(())
    })();
    match filled {
        Ok(()) => conn.execute_batch("RELEASE cairn_settings"),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK TO cairn_settings; RELEASE cairn_settings");
            Err(e)
        }
    }
}

fn fill(conn: &Connection, filling: &Filling<'_>, key: &str) -> rusqlite::Result<()> {
    // Made again each time: cheap next to a filling, and a table the client dropped is back.
    conn.execute_batch(catalogs::CREATE)?;
    conn.execute_batch(catalogs::EMPTY)?;
    conn.execute_batch(catalogs::CURSORS)?;
    conn.execute_batch(&catalogs::fixed_rows())?;
    conn.execute_batch(catalogs::REFRESH)?;
    let views: Vec<(i64, String)> = {
        let mut stmt =
            conn.prepare("SELECT oid, name FROM temp.pg_cairn_objects WHERE type = 'view'")?;
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?
    };
    for (oid, name) in views {
        // A view whose tables are gone fails to describe: it is listed without columns.
        let _ = conn.execute(catalogs::VIEW_COLUMNS, rusqlite::params![oid, name]);
    }
    conn.execute_batch(catalogs::REFRESH_DERIVED)?;
    conn.execute_batch("DELETE FROM temp.pg_database; DELETE FROM temp.pg_roles;")?;
    {
        let mut database = conn.prepare(
            "INSERT INTO temp.pg_database VALUES (?1, ?2, 10, 6, 'c', 0, 1, -1, 1663, 'C.UTF-8', 'C.UTF-8', NULL, NULL, NULL)",
        )?;
        for (i, name) in filling.databases.iter().enumerate() {
            database.execute(rusqlite::params![20000 + i as i64, name])?;
        }
    }
    fill_roles(conn, filling)?;
    conn.execute("DELETE FROM temp.pg_cairn_refreshed", [])?;
    conn.execute("INSERT INTO temp.pg_cairn_refreshed VALUES (?1)", [key])?;
    Ok(())
}

/// PostgreSQL's predefined roles that Cairn's roles stand for, with their oids there.
const READ_ALL_DATA: (i64, &str) = (6181, "pg_read_all_data");
const WRITE_ALL_DATA: (i64, &str) = (6182, "pg_write_all_data");

/// `pg_roles` and `pg_auth_members`: the users, the session's own at oid 10 (it owns every
/// object), each with its Cairn role in PostgreSQL's words: admin a superuser, backup a
/// replication user, and every role but admin a member of `pg_read_all_data`, readwrite of
/// `pg_write_all_data` too (`\du` prints those under "Member of").
fn fill_roles(conn: &Connection, filling: &Filling<'_>) -> rusqlite::Result<()> {
    conn.execute_batch("DELETE FROM temp.pg_auth_members")?;
    let mut role = conn.prepare(
        "INSERT INTO temp.pg_roles VALUES (?1, ?2, ?3, 1, ?3, ?3, ?4, ?5, -1, '********', NULL, ?3, NULL)",
    )?;
    for (oid, name) in [(6171, "pg_database_owner"), READ_ALL_DATA, WRITE_ALL_DATA] {
        role.execute(rusqlite::params![oid, name, false, false, false])?;
    }
    let mut member =
        conn.prepare("INSERT INTO temp.pg_auth_members VALUES (NULL, ?1, ?2, 10, 0)")?;
    // The session's own user is 10 (every object's owner) even if it is gone from the list;
    // the others are numbered by their place among every user, the same in every session.
    let own = (filling.user.to_owned(), filling.role);
    let listed = filling.users.iter().any(|(name, _)| name == filling.user);
    let users = filling.users.iter().chain((!listed).then_some(&own));
    for (place, (name, user_role)) in users.enumerate() {
        let oid = if *name == filling.user {
            10
        } else {
            16384 + place as i64
        };
        let admin = *user_role == Role::Admin;
        role.execute(rusqlite::params![
            oid,
            name,
            admin,
            true,
            *user_role == Role::Backup
        ])?;
        if !admin {
            member.execute([READ_ALL_DATA.0, oid])?;
        }
        if *user_role == Role::Readwrite {
            member.execute([WRITE_ALL_DATA.0, oid])?;
        }
    }
    Ok(())
}

/// Defines the functions catalog queries call on a session's connection.
pub(super) fn register(
    conn: &Connection,
    user: &str,
    definitions: &Arc<Definitions>,
) -> rusqlite::Result<()> {
    let pure = FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC;
    conn.create_scalar_function("regexp", 2, pure, regexp)?;
    conn.create_scalar_function("cairn_pg_type", 1, pure, |ctx| {
        Ok(catalogs::declared_type(&text(ctx, 0)?.unwrap_or_default()).0)
    })?;
    conn.create_scalar_function("cairn_pg_typmod", 1, pure, |ctx| {
        Ok(catalogs::declared_type(&text(ctx, 0)?.unwrap_or_default()).1)
    })?;
    conn.create_scalar_function("cairn_information_schema_type", 1, pure, |ctx| {
        Ok(catalogs::information_schema_type(ctx.get::<i64>(0)?))
    })?;
    conn.create_scalar_function("format_type", 2, pure, |ctx| {
        let Some(oid) = ctx.get::<Option<i64>>(0)? else {
            return Ok(None);
        };
        Ok(Some(
            catalogs::format_type(oid, ctx.get::<Option<i64>>(1)?).unwrap_or_else(|| "???".into()),
        ))
    })?;
    for (name, arity) in [
        ("pg_table_is_visible", 1),
        ("pg_type_is_visible", 1),
        ("pg_function_is_visible", 1),
        ("has_table_privilege", 2),
        ("has_table_privilege", 3),
        ("has_schema_privilege", 2),
        ("has_schema_privilege", 3),
        ("has_database_privilege", 2),
        ("has_database_privilege", 3),
        ("has_column_privilege", 3),
        ("has_column_privilege", 4),
    ] {
        conn.create_scalar_function(name, arity, pure, |_| Ok(true))?;
    }
    for (name, arity) in [
        ("obj_description", 1),
        ("obj_description", 2),
        ("col_description", 2),
        ("shobj_description", 2),
    ] {
        conn.create_scalar_function(name, arity, pure, |_| Ok(None::<String>))?;
    }
    for name in [
        "pg_get_function_result",
        "pg_get_function_arguments",
        "pg_get_function_identity_arguments",
    ] {
        conn.create_scalar_function(name, 1, pure, |_| Ok(String::new()))?;
    }
    // Sizes are unknown: SQLite keeps no page count per table, and counting (dbstat) reads
    // every page of it.
    for name in [
        "pg_relation_size",
        "pg_total_relation_size",
        "pg_table_size",
        "pg_indexes_size",
    ] {
        conn.create_scalar_function(name, 1, pure, |_| Ok(None::<i64>))?;
    }
    conn.create_scalar_function("pg_relation_is_publishable", 1, pure, |_| Ok(false))?;
    conn.create_scalar_function("pg_get_triggerdef", 2, pure, |_| Ok(None::<String>))?;
    // Cairn keeps no privileges on objects: none are granted beyond their defaults.
    conn.create_scalar_function("acldefault", 2, pure, |_| Ok(None::<String>))?;
    for (name, arity) in [
        ("pg_get_partkeydef", 1),
        ("pg_get_statisticsobjdef", 1),
        ("pg_get_ruledef", 2),
        ("pg_get_function_sqlbody", 1),
    ] {
        conn.create_scalar_function(name, arity, pure, |_| Ok(None::<String>))?;
    }
    // Cairn's keys number rows without sequences.
    conn.create_scalar_function("pg_get_serial_sequence", 2, pure, |_| Ok(None::<String>))?;
    conn.create_scalar_function("pg_collation_is_visible", 1, pure, |_| Ok(true))?;
    // The oid of a type by name; NULL for one Cairn does not have (hstore, citext…).
    conn.create_scalar_function("to_regtype", 1, pure, |ctx| {
        Ok(text(ctx, 0)?.and_then(|name| catalogs::type_named(&name)))
    })?;
    conn.create_aggregate_function("array_agg", 1, FunctionFlags::SQLITE_UTF8, ArrayAgg)?;
    // A relation's partition ancestors: Cairn has no partitions, so the relation alone.
    conn.create_scalar_function("pg_partition_ancestors", 1, pure, |ctx| {
        Ok(text(ctx, 0)?.and_then(|oid| oid.trim().parse::<i64>().ok()))
    })?;
    conn.create_scalar_function("pg_size_pretty", 1, pure, |ctx| {
        Ok(ctx.get::<Option<i64>>(0)?.map(size_pretty))
    })?;
    conn.create_scalar_function("pg_get_statisticsobjdef_columns", 1, pure, |_| {
        Ok(None::<String>)
    })?;
    conn.create_scalar_function("pg_is_in_recovery", 0, pure, |_| Ok(false))?;
    let owner = user.to_owned();
    conn.create_scalar_function("pg_get_userbyid", 1, pure, move |ctx| {
        Ok(match ctx.get::<Option<i64>>(0)? {
            Some(catalogs::OWNER_OID) => owner.clone(),
            Some(catalogs::DATABASE_OWNER_OID) => "pg_database_owner".to_owned(),
            Some(oid) => format!("unknown (OID={oid})"),
            None => String::new(),
        })
    })?;
    conn.create_scalar_function("pg_encoding_to_char", 1, pure, |ctx| {
        Ok(if ctx.get::<Option<i64>>(0)? == Some(6) {
            "UTF8"
        } else {
            ""
        })
    })?;
    for arity in [2, 3] {
        conn.create_scalar_function("pg_get_expr", arity, pure, |ctx| text(ctx, 0))?;
    }
    for (name, arities) in [
        ("pg_get_indexdef", &[1, 3][..]),
        ("pg_get_constraintdef", &[1, 2][..]),
        ("pg_get_viewdef", &[1, 2][..]),
    ] {
        for &arity in arities {
            let definitions = Arc::clone(definitions);
            conn.create_scalar_function(name, arity, FunctionFlags::SQLITE_UTF8, move |ctx| {
                let definition = ctx
                    .get::<Option<i64>>(0)?
                    .and_then(|oid| definitions.get(oid));
                // pg_get_indexdef(index, column, pretty): that column's part alone.
                let column = if arity == 3 {
                    ctx.get::<Option<i64>>(1)?
                } else {
                    None
                };
                Ok(match column {
                    Some(n) if n > 0 => definition.and_then(|d| index_column(&d, n)),
                    _ => definition,
                })
            })?;
        }
    }
    for arity in [2, 3] {
        conn.create_scalar_function("array_to_string", arity, pure, move |ctx| {
            let Some(array) = text(ctx, 0)? else {
                return Ok(None);
            };
            let separator = text(ctx, 1)?.unwrap_or_default();
            Ok(Some(array_elements(&array).join(&separator)))
        })?;
    }
    // ARRAY[a, b]: its elements as an array's text, each quoted where it needs it.
    conn.create_scalar_function("cairn_array", -1, pure, |ctx| {
        let elements: Vec<Option<String>> = (0..ctx.len())
            .map(|i| text(ctx, i))
            .collect::<rusqlite::Result<_>>()?;
        Ok(crate::pgcompat::arrays::text(&elements))
    })?;
    conn.create_scalar_function("array_remove", 2, pure, |ctx| {
        let Some(array) = text(ctx, 0)? else {
            return Ok(None);
        };
        let gone = text(ctx, 1)?;
        let kept: Vec<Option<String>> = crate::pgcompat::arrays::elements(&array)
            .into_iter()
            .filter(|e| *e != gone)
            .collect();
        Ok(Some(crate::pgcompat::arrays::text(&kept)))
    })?;
    conn.create_scalar_function("cairn_array_json", 1, pure, |ctx| {
        Ok(text(ctx, 0)?.map(|array| crate::pgcompat::arrays::to_json(&array)))
    })?;
    conn.create_scalar_function("cairn_array_element", 2, pure, |ctx| {
        let (Some(array), Some(index)) = (text(ctx, 0)?, ctx.get::<Option<i64>>(1)?) else {
            return Ok(Value::Null);
        };
        Ok(match crate::pgcompat::arrays::element_at(&array, index) {
            Some(serde_json::Value::Number(n)) => match n.as_i64() {
                Some(i) => Value::Integer(i),
                None => n.as_f64().map_or(Value::Null, Value::Real),
            },
            Some(serde_json::Value::String(s)) => Value::Text(s),
            Some(serde_json::Value::Bool(b)) => Value::Integer(i64::from(b)),
            Some(other @ (serde_json::Value::Array(_) | serde_json::Value::Object(_))) => {
                Value::Text(other.to_string())
            }
            Some(serde_json::Value::Null) | None => Value::Null,
        })
    })?;
    // The number of elements (one dimension): NULL for an empty array, as PostgreSQL has it.
    for (name, arity) in [("array_upper", 2), ("array_length", 2), ("cardinality", 1)] {
        conn.create_scalar_function(name, arity, pure, move |ctx| {
            let Some(array) = text(ctx, 0)? else {
                return Ok(None);
            };
            let count = array_elements(&array).len() as i64;
            Ok((count > 0 || name == "cardinality").then_some(count))
        })?;
    }
    conn.create_scalar_function("cairn_series_step", 1, pure, |ctx| {
        match ctx.get::<Option<i64>>(0)? {
            Some(0) => Err(rusqlite::Error::UserFunctionError(
                "step size cannot equal zero".into(),
            )),
            step => Ok(step),
        }
    })?;
    // The search path: pg_catalog (when asked for implicit schemas too), then public.
    conn.create_scalar_function("current_schemas", 1, pure, |ctx| {
        Ok(if ctx.get::<Option<bool>>(0)?.unwrap_or(false) {
            "{pg_catalog,public}"
        } else {
            "{public}"
        })
    })?;
    conn.create_scalar_function("quote_literal", 1, pure, |ctx| {
        Ok(text(ctx, 0)?.map(|value| crate::pgcompat::casts::quote(&value)))
    })?;
    conn.create_scalar_function("quote_ident", 1, pure, |ctx| {
        Ok(text(ctx, 0)?.map(|name| quote_ident(&name)))
    })?;
    Ok(())
}

/// PostgreSQL's `array_agg(x)`: the group's values as an array's text (`{a,NULL,"b c"}`).
struct ArrayAgg;

impl rusqlite::functions::Aggregate<Vec<Option<String>>, Option<String>> for ArrayAgg {
    fn init(&self, _: &mut Context<'_>) -> rusqlite::Result<Vec<Option<String>>> {
        Ok(Vec::new())
    }

    fn step(
        &self,
        ctx: &mut Context<'_>,
        values: &mut Vec<Option<String>>,
    ) -> rusqlite::Result<()> {
        values.push(text(ctx, 0)?);
        Ok(())
    }

    fn finalize(
        &self,
        _: &mut Context<'_>,
        values: Option<Vec<Option<String>>>,
    ) -> rusqlite::Result<Option<String>> {
        Ok(values.map(|values| crate::pgcompat::arrays::text(&values)))
    }
}

/// Argument `i` as text (NULL as `None`; numbers as their text).
fn text(ctx: &Context<'_>, i: usize) -> rusqlite::Result<Option<String>> {
    Ok(match ctx.get_raw(i) {
        ValueRef::Null => None,
        ValueRef::Text(t) | ValueRef::Blob(t) => Some(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Integer(n) => Some(n.to_string()),
        ValueRef::Real(r) => Some(r.to_string()),
    })
}

/// SQLite's `x REGEXP pattern` (PostgreSQL's `x ~ pattern`): whether the pattern matches
/// anywhere in `x`; NULL if either is NULL. The compiled pattern is kept for the statement.
fn regexp(ctx: &Context<'_>) -> rusqlite::Result<Option<bool>> {
    if let ValueRef::Null = ctx.get_raw(0) {
        return Ok(None);
    }
    let pattern = ctx.get_or_create_aux(0, |value| -> Result<regex::Regex, BoxedError> {
        match value {
            ValueRef::Text(t) => Ok(regex::Regex::new(std::str::from_utf8(t)?)
                .map_err(|e| format!("invalid regular expression: {e}"))?),
            _ => Err("a regular expression must be text".into()),
        }
    });
    let pattern = pattern?;
    Ok(match ctx.get_raw(1) {
        ValueRef::Null => None,
        ValueRef::Text(t) | ValueRef::Blob(t) => {
            Some(pattern.is_match(&String::from_utf8_lossy(t)))
        }
        ValueRef::Integer(n) => Some(pattern.is_match(&n.to_string())),
        ValueRef::Real(r) => Some(pattern.is_match(&r.to_string())),
    })
}

type BoxedError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The elements of an array written as PostgreSQL writes one (`{a,b}`) or as JSON
/// (`["a","b"]`).
fn array_elements(array: &str) -> Vec<String> {
    if let Ok(serde_json::Value::Array(items)) = serde_json::from_str(array) {
        return items
            .into_iter()
            .filter(|v| !v.is_null())
            .map(|v| match v {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            })
            .collect();
    }
    let inner = array
        .strip_prefix('{')
        .and_then(|a| a.strip_suffix('}'))
        .unwrap_or(array);
    if inner.is_empty() {
        return Vec::new();
    }
    inner
        .split(',')
        .map(|e| e.trim_matches('"').to_owned())
        .collect()
}

/// Column `n` (from 1) of an index definition `… USING btree (a, b)`.
fn index_column(definition: &str, n: i64) -> Option<String> {
    let open = definition.find(" USING btree (")? + " USING btree (".len();
    let close = open + definition[open..].find(')')?;
    let at = usize::try_from(n - 1).ok()?;
    definition[open..close]
        .split(", ")
        .nth(at)
        .map(str::to_owned)
}

/// PostgreSQL's `pg_size_pretty`: bytes, kB, MB, GB, TB, rounding half up past 10 units.
fn size_pretty(bytes: i64) -> String {
    let mut size = i128::from(bytes);
    for unit in ["bytes", "kB", "MB", "GB", "TB"] {
        if size.abs() < 10 * 1024 || unit == "TB" {
            return format!("{size} {unit}");
        }
        size = (size + if size < 0 { -512 } else { 512 }) / 1024;
    }
    format!("{size} PB")
}

/// PostgreSQL's `quote_ident`: quoted unless it is a lowercase name.
fn quote_ident(name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain {
        name.to_owned()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrays_and_identifiers_are_written_as_postgresql_writes_them() {
        assert_eq!(array_elements("{a,b}"), ["a", "b"]);
        assert_eq!(array_elements("[\"x\",1]"), ["x", "1"]);
        assert!(array_elements("{}").is_empty());
        let def = "CREATE INDEX i ON public.t USING btree (a, b)";
        assert_eq!(index_column(def, 2).as_deref(), Some("b"));
        assert_eq!(index_column(def, 3), None);
        assert_eq!(size_pretty(8192), "8192 bytes");
        assert_eq!(size_pretty(i64::MAX), "8388608 TB");
        assert_eq!(size_pretty(101_711_872), "97 MB");
        assert_eq!(size_pretty(6_455_296), "6304 kB");
        assert_eq!(quote_ident("users"), "users");
        assert_eq!(quote_ident("Users"), "\"Users\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
