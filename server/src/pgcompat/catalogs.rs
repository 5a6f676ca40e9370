//! PostgreSQL's system catalogs (`pg_catalog`) and `information_schema`, as tables a session
//! fills from its database's SQLite schema, so that the SQL psql, drivers and ORMs send to
//! find tables, columns, keys and types runs as SQLite's own SQL (joins, filters, ordering).
//!
//! They are temporary tables of the session's connection, declared with PostgreSQL's column
//! types (so `relhasindex` is a bool on the wire, as the clients that read it test it), made
//! when a statement first reads one and filled again whenever the schema (or the list of
//! databases) changed since they were last filled. `pg_catalog.pg_class` reaches them once
//! the schema qualifier is dropped (`spellings`); `information_schema.tables` is the table
//! named `"information_schema.tables"`.
//!
//! Object identifiers (written in the filling's SQL): a table, view or index is `16384 +
//! its rowid in sqlite_schema`; the index an `INTEGER PRIMARY KEY` is (SQLite's rowid, with
//! no index of its own) is `1000000000 + the table's oid`; a constraint is `2000000000 +
//! its index's oid`, a foreign key `3000000000 + 100 × the table's oid + its number`;
//! namespaces have PostgreSQL's (`pg_catalog` 11, `public` 2200). They are stable
//! while the schema is; an oid read before a DDL may name nothing after it.

use crate::sql::lexer::{Spanned, Token};

/// The catalog tables a statement may read, by the names it reads them by.
pub const TABLES: &[&str] = &[
    "pg_namespace",
    "pg_class",
    "pg_attribute",
    "pg_attrdef",
    "pg_index",
    "pg_constraint",
    "pg_type",
    "pg_database",
    "pg_roles",
    "pg_user",
    "pg_authid",
    "pg_auth_members",
    "pg_am",
    "pg_opclass",
    "pg_proc",
    "pg_description",
    "pg_shdescription",
    "pg_collation",
    "pg_tablespace",
    "pg_inherits",
    "pg_policy",
    "pg_statistic_ext",
    "pg_publication",
    "pg_publication_rel",
    "pg_publication_namespace",
    "pg_trigger",
    "pg_rewrite",
    "pg_extension",
    "pg_enum",
    "pg_range",
    "pg_depend",
    "pg_init_privs",
    "pg_sequence",
    "pg_settings",
    "pg_tables",
    "pg_views",
    "pg_indexes",
    "pg_matviews",
    "pg_seclabels",
    "pg_stat_activity",
    "pg_cursors",
    "pg_foreign_table",
    "pg_partitioned_table",
    "pg_aggregate",
    "pg_amop",
    "pg_amproc",
    "pg_cast",
    "pg_conversion",
    "pg_db_role_setting",
    "pg_default_acl",
    "pg_event_trigger",
    "pg_foreign_data_wrapper",
    "pg_foreign_server",
    "pg_language",
    "pg_largeobject",
    "pg_largeobject_metadata",
    "pg_operator",
    "pg_opfamily",
    "pg_parameter_acl",
    "pg_replication_origin",
    "pg_seclabel",
    "pg_shdepend",
    "pg_shseclabel",
    "pg_statistic",
    "pg_statistic_ext_data",
    "pg_subscription",
    "pg_subscription_rel",
    "pg_transform",
    "pg_ts_config",
    "pg_ts_config_map",
    "pg_ts_dict",
    "pg_ts_parser",
    "pg_ts_template",
    "pg_user_mapping",
];

/// The `information_schema` views a statement may read (as `information_schema.NAME`).
pub const INFORMATION_SCHEMA: &[&str] = &[
    "tables",
    "columns",
    "schemata",
    "table_constraints",
    "key_column_usage",
    "views",
    "referential_constraints",
];

/// The words of a cast to an object identifier type, which reads `pg_class` and its kin.
const OID_TYPES: &[&str] = &["regclass", "regtype", "regnamespace", "regproc"];

/// Whether the statement reads a catalog (or casts to an oid type, which looks one up).
pub fn reads_catalogs(tokens: &[Spanned<'_>]) -> bool {
    tokens.iter().any(|t| match &t.token {
        Token::Word(w) => {
            TABLES
                .iter()
                .chain(OID_TYPES)
                .any(|n| w.eq_ignore_ascii_case(n))
                || w.eq_ignore_ascii_case("information_schema")
        }
        Token::QuotedIdent(q) => q.starts_with("information_schema."),
        _ => false,
    })
}

/// Why a statement may not run: it writes one of the catalogs (they are the server's; in
/// PostgreSQL a client may not write them either), or it makes a lasting view or trigger
/// of the database that reads them (they are the session's temporary tables, which a view
/// of the database cannot see). `None` for any other statement.
pub fn refusal(tokens: &[Spanned<'_>]) -> Option<(&'static str, String)> {
    let word = |i: usize| tokens.get(i).and_then(|t| t.token.identifier());
    let first = word(0)?;
    let find = |kw: &str| tokens.iter().position(|t| t.token.is_keyword(kw));
    // Every table the statement writes, wherever it is (after a WITH, in a trigger's body).
    let mut targets: Vec<usize> = Vec::new();
    for (p, t) in tokens.iter().enumerate() {
        let Token::Word(w) = t.token else { continue };
        let next = word(p + 1);
        match w.to_ascii_lowercase().as_str() {
            // INSERT [OR …] INTO, REPLACE INTO (not the function replace(…)).
            "insert" | "replace" => {
                if let Some(into) = tokens[p..tokens.len().min(p + 4)]
                    .iter()
                    .position(|t| t.token.is_keyword("into"))
                {
                    targets.push(p + into + 1);
                }
            }
            "update" if next.as_deref() == Some("or") => targets.push(p + 3),
            "update" => targets.push(p + 1),
            "delete" if next.as_deref() == Some("from") => targets.push(p + 2),
            _ => {}
        }
    }
    match first.as_str() {
        "drop" | "alter" => {
            let mut i = 2;
            if word(i).as_deref() == Some("if") {
                i += 2;
            }
            targets.push(i);
        }
        "create" if find("trigger").is_some() || find("index").is_some() => {
            targets.extend(find("on").map(|i| i + 1));
        }
        _ => {}
    }
    if let Some(name) = targets
        .into_iter()
        .filter_map(|at| target_name(tokens, at))
        .find(|name| is_catalog(name))
    {
        return Some((
            crate::sqlstate::INSUFFICIENT_PRIVILEGE,
            format!(
                "permission denied for table {name}: it is one of PostgreSQL's catalogs, which the server keeps from the database's schema"
            ),
        ));
    }
    let temporary = matches!(word(1).as_deref(), Some("temp" | "temporary"));
    let lasting = first == "create"
        && !temporary
        && (find("view").is_some_and(|i| i <= 4) || find("trigger").is_some_and(|i| i <= 4));
    (lasting && reads_catalogs(tokens)).then(|| {
        (
            crate::sqlstate::FEATURE_NOT_SUPPORTED,
            "a view or trigger of the database cannot read PostgreSQL's catalogs (they are each session's temporary tables): create it with CREATE TEMP".to_owned(),
        )
    })
}

/// The table named at `tokens[at]`, past a `temp.` or `pg_catalog.` qualifier; `None` for
/// one of `main` (the client's own).
fn target_name(tokens: &[Spanned<'_>], at: usize) -> Option<String> {
    let name = tokens.get(at)?.token.identifier()?;
    if tokens
        .get(at + 1)
        .is_some_and(|t| t.token == Token::Punct("."))
    {
        return match name.as_str() {
            "temp" | "pg_catalog" => tokens.get(at + 2)?.token.identifier(),
            "information_schema" => Some(format!(
                "information_schema.{}",
                tokens.get(at + 2)?.token.identifier()?
            )),
            _ => None,
        };
    }
    Some(name)
}

/// Whether `name` is one of the catalog tables (or their helpers).
fn is_catalog(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    TABLES.contains(&lower.as_str())
        || lower.starts_with("pg_cairn_")
        || lower
            .strip_prefix("information_schema.")
            .is_some_and(|v| INFORMATION_SCHEMA.contains(&v))
}

/// The name of the table standing for `information_schema.view`, if it is one of ours.
pub fn information_schema_table(view: &str) -> Option<String> {
    INFORMATION_SCHEMA
        .iter()
        .find(|v| v.eq_ignore_ascii_case(view))
        .map(|v| format!("\"information_schema.{v}\""))
}

/// The oid every object's owner has: the session's user, the only role the catalogs list.
pub const OWNER_OID: i64 = 10;
/// PostgreSQL's owner of schema `public` since version 15.
pub const DATABASE_OWNER_OID: i64 = 6171;

/// The tables, made once a session: `IF NOT EXISTS`, so a session whose client dropped one
/// gets it back. Each catalog has PostgreSQL's system column `tableoid` (pg_dump reads it),
/// and the columns of PostgreSQL's that Cairn has nothing for, generated with their
/// constant, so the fillings' positional rows leave them out. Helpers are `pg_cairn_*`; `pg_cairn_refreshed` holds what the rest was
/// filled from.
pub const CREATE: &str = r#"
CREATE TEMP TABLE IF NOT EXISTS pg_cairn_refreshed(key TEXT);
CREATE TEMP TABLE IF NOT EXISTS pg_cairn_objects(oid INTEGER, type TEXT, name TEXT, tbl_name TEXT, sql TEXT);
CREATE TEMP TABLE IF NOT EXISTS pg_cairn_indexes(oid INTEGER, name TEXT, relid INTEGER, tbl TEXT, is_unique BOOLEAN, is_primary BOOLEAN, origin TEXT, indkey TEXT, columns TEXT, predicate TEXT);
CREATE TEMP TABLE IF NOT EXISTS pg_cairn_definitions(oid INTEGER PRIMARY KEY, def TEXT);
CREATE TEMP TABLE IF NOT EXISTS pg_cairn_fks(relid INTEGER, tbl TEXT, id INTEGER, seq INTEGER, target TEXT, "from" TEXT, "to" TEXT, on_update TEXT, on_delete TEXT);
CREATE INDEX IF NOT EXISTS temp.pg_cairn_objects_name ON pg_cairn_objects(name);
CREATE INDEX IF NOT EXISTS temp.pg_cairn_objects_oid ON pg_cairn_objects(oid);
CREATE INDEX IF NOT EXISTS temp.pg_cairn_indexes_relid ON pg_cairn_indexes(relid);
CREATE INDEX IF NOT EXISTS temp.pg_cairn_fks_relid ON pg_cairn_fks(relid);
CREATE INDEX IF NOT EXISTS temp.pg_cairn_fks_target ON pg_cairn_fks(target);
CREATE TEMP TABLE IF NOT EXISTS pg_namespace(oid INTEGER, nspname TEXT, nspowner INTEGER, nspacl TEXT, tableoid INTEGER GENERATED ALWAYS AS (2615) VIRTUAL);
CREATE TEMP TABLE IF NOT EXISTS pg_class(oid INTEGER, relname TEXT, relnamespace INTEGER, reltype INTEGER, reloftype INTEGER, relowner INTEGER, relam INTEGER, relfilenode INTEGER, reltablespace INTEGER, relpages INTEGER, reltuples REAL, relallvisible INTEGER, reltoastrelid INTEGER, relhasindex BOOLEAN, relisshared BOOLEAN, relpersistence TEXT, relkind TEXT, relnatts INTEGER, relchecks INTEGER, relhasrules BOOLEAN, relhastriggers BOOLEAN, relhassubclass BOOLEAN, relrowsecurity BOOLEAN, relforcerowsecurity BOOLEAN, relispopulated BOOLEAN, relreplident TEXT, relispartition BOOLEAN, relrewrite INTEGER, relfrozenxid INTEGER, relminmxid INTEGER, relacl TEXT, reloptions TEXT, relpartbound TEXT, tableoid INTEGER GENERATED ALWAYS AS (1259) VIRTUAL);
CREATE TEMP TABLE IF NOT EXISTS pg_attribute(attrelid INTEGER, attname TEXT, atttypid INTEGER, attstattarget INTEGER, attlen INTEGER, attnum INTEGER, attndims INTEGER, attcacheoff INTEGER, atttypmod INTEGER, attbyval BOOLEAN, attalign TEXT, attstorage TEXT, attcompression TEXT, attnotnull BOOLEAN, atthasdef BOOLEAN, atthasmissing BOOLEAN, attidentity TEXT, attgenerated TEXT, attisdropped BOOLEAN, attislocal BOOLEAN, attinhcount INTEGER, attcollation INTEGER, attacl TEXT, attoptions TEXT, attfdwoptions TEXT, attmissingval TEXT, tableoid INTEGER GENERATED ALWAYS AS (1249) VIRTUAL);
CREATE INDEX IF NOT EXISTS temp.pg_attribute_relid ON pg_attribute(attrelid, attnum);
CREATE TEMP TABLE IF NOT EXISTS pg_attrdef(oid INTEGER, adrelid INTEGER, adnum INTEGER, adbin TEXT, tableoid INTEGER GENERATED ALWAYS AS (2604) VIRTUAL);
CREATE TEMP TABLE IF NOT EXISTS pg_index(indexrelid INTEGER, indrelid INTEGER, indnatts INTEGER, indnkeyatts INTEGER, indisunique BOOLEAN, indnullsnotdistinct BOOLEAN, indisprimary BOOLEAN, indisexclusion BOOLEAN, indimmediate BOOLEAN, indisclustered BOOLEAN, indisvalid BOOLEAN, indcheckxmin BOOLEAN, indisready BOOLEAN, indislive BOOLEAN, indisreplident BOOLEAN, indkey INT2VECTOR, indcollation OIDVECTOR, indclass OIDVECTOR, indoption INT2VECTOR, indexprs TEXT, indpred TEXT, tableoid INTEGER GENERATED ALWAYS AS (2610) VIRTUAL);
CREATE TEMP TABLE IF NOT EXISTS pg_constraint(oid INTEGER, conname TEXT, connamespace INTEGER, contype TEXT, condeferrable BOOLEAN, condeferred BOOLEAN, convalidated BOOLEAN, conrelid INTEGER, contypid INTEGER, conindid INTEGER, conparentid INTEGER, confrelid INTEGER, confupdtype TEXT, confdeltype TEXT, confmatchtype TEXT, conislocal BOOLEAN, coninhcount INTEGER, connoinherit BOOLEAN, conkey TEXT, confkey TEXT, conbin TEXT, tableoid INTEGER GENERATED ALWAYS AS (2606) VIRTUAL, conpfeqop TEXT GENERATED ALWAYS AS (NULL) VIRTUAL, conppeqop TEXT GENERATED ALWAYS AS (NULL) VIRTUAL, conffeqop TEXT GENERATED ALWAYS AS (NULL) VIRTUAL, confdelsetcols TEXT GENERATED ALWAYS AS (NULL) VIRTUAL, conexclop TEXT GENERATED ALWAYS AS (NULL) VIRTUAL);
CREATE TEMP TABLE IF NOT EXISTS pg_type(oid INTEGER, typname TEXT, typnamespace INTEGER, typowner INTEGER, typlen INTEGER, typbyval BOOLEAN, typtype TEXT, typcategory TEXT, typispreferred BOOLEAN, typisdefined BOOLEAN, typdelim TEXT, typrelid INTEGER, typelem INTEGER, typarray INTEGER, typinput TEXT, typoutput TEXT, typreceive TEXT, typsend TEXT, typbasetype INTEGER, typtypmod INTEGER, typndims INTEGER, typcollation INTEGER, typnotnull BOOLEAN, typdefault TEXT, tableoid INTEGER GENERATED ALWAYS AS (1247) VIRTUAL, typsubscript TEXT GENERATED ALWAYS AS ('-') VIRTUAL, typmodin TEXT GENERATED ALWAYS AS ('-') VIRTUAL, typmodout TEXT GENERATED ALWAYS AS ('-') VIRTUAL, typanalyze TEXT GENERATED ALWAYS AS ('-') VIRTUAL, typalign TEXT GENERATED ALWAYS AS ('i') VIRTUAL, typstorage TEXT GENERATED ALWAYS AS ('p') VIRTUAL, typdefaultbin TEXT GENERATED ALWAYS AS (NULL) VIRTUAL, typacl TEXT GENERATED ALWAYS AS (NULL) VIRTUAL);
CREATE TEMP TABLE IF NOT EXISTS pg_database(oid INTEGER, datname TEXT, datdba INTEGER, encoding INTEGER, datlocprovider TEXT, datistemplate BOOLEAN, datallowconn BOOLEAN, datconnlimit INTEGER, dattablespace INTEGER, datcollate TEXT, datctype TEXT, daticulocale TEXT, datcollversion TEXT, datacl TEXT, tableoid INTEGER GENERATED ALWAYS AS (1262) VIRTUAL, datfrozenxid INTEGER GENERATED ALWAYS AS (0) VIRTUAL, datminmxid INTEGER GENERATED ALWAYS AS (1) VIRTUAL);
CREATE TEMP TABLE IF NOT EXISTS pg_roles(oid INTEGER, rolname TEXT, rolsuper BOOLEAN, rolinherit BOOLEAN, rolcreaterole BOOLEAN, rolcreatedb BOOLEAN, rolcanlogin BOOLEAN, rolreplication BOOLEAN, rolconnlimit INTEGER, rolpassword TEXT, rolvaliduntil TEXT, rolbypassrls BOOLEAN, rolconfig TEXT, tableoid INTEGER GENERATED ALWAYS AS (1260) VIRTUAL);
CREATE TEMP VIEW IF NOT EXISTS pg_authid AS SELECT * FROM pg_roles;
CREATE TEMP VIEW IF NOT EXISTS pg_user AS SELECT rolname AS usename, oid AS usesysid, rolcreatedb AS usecreatedb, rolsuper AS usesuper, rolreplication AS userepl, rolbypassrls AS usebypassrls, rolpassword AS passwd, rolvaliduntil AS valuntil, rolconfig AS useconfig FROM pg_roles;
CREATE TEMP TABLE IF NOT EXISTS pg_auth_members(oid INTEGER, roleid INTEGER, member INTEGER, grantor INTEGER, admin_option BOOLEAN, tableoid INTEGER GENERATED ALWAYS AS (1261) VIRTUAL);
CREATE TEMP TABLE IF NOT EXISTS pg_am(oid INTEGER, amname TEXT, amhandler TEXT, amtype TEXT, tableoid INTEGER GENERATED ALWAYS AS (2601) VIRTUAL);
CREATE TEMP TABLE IF NOT EXISTS pg_opclass(oid INTEGER, opcmethod INTEGER, opcname TEXT, opcnamespace INTEGER, opcowner INTEGER, opcfamily INTEGER, opcintype INTEGER, opcdefault BOOLEAN, opckeytype INTEGER, tableoid INTEGER GENERATED ALWAYS AS (2616) VIRTUAL);
CREATE TEMP TABLE IF NOT EXISTS pg_proc(oid INTEGER, proname TEXT, pronamespace INTEGER, proowner INTEGER, prolang INTEGER, procost REAL, prorows REAL, provariadic INTEGER, prokind TEXT, prosecdef BOOLEAN, proleakproof BOOLEAN, proisstrict BOOLEAN, proretset BOOLEAN, provolatile TEXT, proparallel TEXT, pronargs INTEGER, pronargdefaults INTEGER, prorettype INTEGER, proargtypes TEXT, proallargtypes TEXT, proargmodes TEXT, proargnames TEXT, prosrc TEXT, proacl TEXT, tableoid INTEGER GENERATED ALWAYS AS (1255) VIRTUAL, prosupport TEXT GENERATED ALWAYS AS ('-') VIRTUAL, proargdefaults TEXT GENERATED ALWAYS AS (NULL) VIRTUAL, protrftypes TEXT GENERATED ALWAYS AS (NULL) VIRTUAL, probin TEXT GENERATED ALWAYS AS (NULL) VIRTUAL, prosqlbody TEXT GENERATED ALWAYS AS (NULL) VIRTUAL, proconfig TEXT GENERATED ALWAYS AS (NULL) VIRTUAL);
CREATE TEMP TABLE IF NOT EXISTS pg_description(objoid INTEGER, classoid INTEGER, objsubid INTEGER, description TEXT, tableoid INTEGER GENERATED ALWAYS AS (2609) VIRTUAL);
CREATE TEMP TABLE IF NOT EXISTS pg_shdescription(objoid INTEGER, classoid INTEGER, description TEXT, tableoid INTEGER GENERATED ALWAYS AS (2396) VIRTUAL);
CREATE TEMP TABLE IF NOT EXISTS pg_collation(oid INTEGER, collname TEXT, collnamespace INTEGER, collowner INTEGER, collprovider TEXT, collisdeterministic BOOLEAN, collencoding INTEGER, collcollate TEXT, collctype TEXT, tableoid INTEGER GENERATED ALWAYS AS (3456) VIRTUAL, colliculocale TEXT GENERATED ALWAYS AS (NULL) VIRTUAL, collversion TEXT GENERATED ALWAYS AS (NULL) VIRTUAL);
CREATE TEMP TABLE IF NOT EXISTS pg_tablespace(oid INTEGER, spcname TEXT, spcowner INTEGER, spcacl TEXT, spcoptions TEXT, tableoid INTEGER GENERATED ALWAYS AS (1213) VIRTUAL);
CREATE TEMP TABLE IF NOT EXISTS pg_inherits(inhrelid INTEGER, inhparent INTEGER, inhseqno INTEGER, inhdetachpending BOOLEAN, tableoid INTEGER GENERATED ALWAYS AS (2611) VIRTUAL);
CREATE TEMP TABLE IF NOT EXISTS pg_policy(oid INTEGER, polname TEXT, polrelid INTEGER, polcmd TEXT, polpermissive BOOLEAN, polroles TEXT, polqual TEXT, polwithcheck TEXT, tableoid INTEGER GENERATED ALWAYS AS (3256) VIRTUAL);
CREATE TEMP TABLE IF NOT EXISTS pg_statistic_ext(oid INTEGER, stxrelid INTEGER, stxname TEXT, stxnamespace INTEGER, stxowner INTEGER, stxstattarget INTEGER, stxkeys TEXT, stxkind TEXT, stxexprs TEXT, tableoid INTEGER GENERATED ALWAYS AS (3381) VIRTUAL);
CREATE TEMP TABLE IF NOT EXISTS pg_publication(oid INTEGER, pubname TEXT, pubowner INTEGER, puballtables BOOLEAN, pubinsert BOOLEAN, pubupdate BOOLEAN, pubdelete BOOLEAN, pubtruncate BOOLEAN, pubviaroot BOOLEAN, tableoid INTEGER GENERATED ALWAYS AS (6104) VIRTUAL);
CREATE TEMP TABLE IF NOT EXISTS pg_publication_rel(oid INTEGER, prpubid INTEGER, prrelid INTEGER, prqual TEXT, prattrs TEXT, tableoid INTEGER GENERATED ALWAYS AS (6106) VIRTUAL);
CREATE TEMP TABLE IF NOT EXISTS pg_publication_namespace(oid INTEGER, pnpubid INTEGER, pnnspid INTEGER, tableoid INTEGER GENERATED ALWAYS AS (6237) VIRTUAL);
CREATE TEMP TABLE IF NOT EXISTS pg_trigger(oid INTEGER, tgrelid INTEGER, tgparentid INTEGER, tgname TEXT, tgfoid INTEGER, tgtype INTEGER, tgenabled TEXT, tgisinternal BOOLEAN, tgconstrrelid INTEGER, tgconstrindid INTEGER, tgconstraint INTEGER, tgdeferrable BOOLEAN, tginitdeferred BOOLEAN, tgnargs INTEGER, tgattr TEXT, tgargs TEXT, tgqual TEXT, tableoid INTEGER GENERATED ALWAYS AS (2620) VIRTUAL, tgoldtable TEXT GENERATED ALWAYS AS (NULL) VIRTUAL, tgnewtable TEXT GENERATED ALWAYS AS (NULL) VIRTUAL);
CREATE TEMP TABLE IF NOT EXISTS pg_rewrite(oid INTEGER, rulename TEXT, ev_class INTEGER, ev_type TEXT, ev_enabled TEXT, is_instead BOOLEAN, ev_qual TEXT, ev_action TEXT, tableoid INTEGER GENERATED ALWAYS AS (2618) VIRTUAL);
CREATE TEMP TABLE IF NOT EXISTS pg_extension(oid INTEGER, extname TEXT, extowner INTEGER, extnamespace INTEGER, extrelocatable BOOLEAN, extversion TEXT, extconfig TEXT, extcondition TEXT, tableoid INTEGER GENERATED ALWAYS AS (3079) VIRTUAL);
CREATE TEMP TABLE IF NOT EXISTS pg_enum(oid INTEGER, enumtypid INTEGER, enumsortorder REAL, enumlabel TEXT, tableoid INTEGER GENERATED ALWAYS AS (3501) VIRTUAL);
CREATE TEMP TABLE IF NOT EXISTS pg_depend(classid INTEGER, objid INTEGER, objsubid INTEGER, refclassid INTEGER, refobjid INTEGER, refobjsubid INTEGER, deptype TEXT, tableoid INTEGER GENERATED ALWAYS AS (2608) VIRTUAL);
CREATE TEMP TABLE IF NOT EXISTS pg_init_privs(objoid INTEGER, classoid INTEGER, objsubid INTEGER, privtype TEXT, initprivs TEXT, tableoid INTEGER GENERATED ALWAYS AS (3394) VIRTUAL);
CREATE TEMP TABLE IF NOT EXISTS pg_range(rngtypid INTEGER, rngsubtype INTEGER, rngmultitypid INTEGER, rngcollation INTEGER, rngsubopc INTEGER, rngcanonical TEXT, rngsubdiff TEXT, tableoid INTEGER GENERATED ALWAYS AS (3541) VIRTUAL);
CREATE TEMP TABLE IF NOT EXISTS pg_sequence(seqrelid INTEGER, seqtypid INTEGER, seqstart INTEGER, seqincrement INTEGER, seqmax INTEGER, seqmin INTEGER, seqcache INTEGER, seqcycle BOOLEAN, tableoid INTEGER GENERATED ALWAYS AS (2224) VIRTUAL);
CREATE TEMP TABLE IF NOT EXISTS pg_foreign_table(ftrelid INTEGER, ftserver INTEGER, ftoptions TEXT, tableoid INTEGER GENERATED ALWAYS AS (3118) VIRTUAL);
CREATE TEMP TABLE IF NOT EXISTS pg_partitioned_table(partrelid INTEGER, partstrat TEXT, partnatts INTEGER, partdefid INTEGER, partattrs TEXT, partclass TEXT, partcollation TEXT, partexprs TEXT, tableoid INTEGER GENERATED ALWAYS AS (3350) VIRTUAL);
CREATE TEMP TABLE IF NOT EXISTS pg_settings(name TEXT, setting TEXT, unit TEXT, category TEXT, short_desc TEXT, extra_desc TEXT, context TEXT, vartype TEXT, source TEXT, min_val TEXT, max_val TEXT, enumvals TEXT, boot_val TEXT, reset_val TEXT, sourcefile TEXT, sourceline INTEGER, pending_restart BOOLEAN);
CREATE TEMP TABLE IF NOT EXISTS pg_stat_activity(datid INTEGER, datname TEXT, pid INTEGER, usesysid INTEGER, usename TEXT, application_name TEXT, client_addr TEXT, client_port INTEGER, backend_start TEXT, xact_start TEXT, query_start TEXT, state_change TEXT, wait_event_type TEXT, wait_event TEXT, state TEXT, query TEXT, backend_type TEXT);
CREATE TEMP VIEW IF NOT EXISTS pg_tables AS SELECT 'public' AS schemaname, c.relname AS tablename, r.rolname AS tableowner, NULL AS tablespace, c.relhasindex AS hasindexes, c.relhasrules AS hasrules, c.relhastriggers AS hastriggers, c.relrowsecurity AS rowsecurity FROM pg_class c LEFT JOIN pg_roles r ON r.oid = c.relowner WHERE c.relkind = 'r';
CREATE TEMP VIEW IF NOT EXISTS pg_views AS SELECT 'public' AS schemaname, o.name AS viewname, r.rolname AS viewowner, o.sql AS definition FROM pg_cairn_objects o LEFT JOIN pg_roles r ON r.oid = 10 WHERE o.type = 'view';
CREATE TEMP VIEW IF NOT EXISTS pg_indexes AS SELECT 'public' AS schemaname, i.tbl AS tablename, i.name AS indexname, NULL AS tablespace, d.def AS indexdef FROM pg_cairn_indexes i JOIN pg_cairn_definitions d ON d.oid = i.oid;
CREATE TEMP VIEW IF NOT EXISTS pg_seclabels AS SELECT objoid, classoid, objsubid, NULL AS objtype, NULL AS objnamespace, NULL AS objname, provider, label FROM pg_seclabel;
CREATE TEMP TABLE IF NOT EXISTS pg_matviews(schemaname TEXT, matviewname TEXT, matviewowner TEXT, tablespace TEXT, hasindexes BOOLEAN, ispopulated BOOLEAN, definition TEXT);
CREATE TEMP TABLE IF NOT EXISTS "information_schema.schemata"(catalog_name TEXT, schema_name TEXT, schema_owner TEXT, default_character_set_catalog TEXT, default_character_set_schema TEXT, default_character_set_name TEXT, sql_path TEXT);
CREATE TEMP TABLE IF NOT EXISTS "information_schema.tables"(table_catalog TEXT, table_schema TEXT, table_name TEXT, table_type TEXT, self_referencing_column_name TEXT, reference_generation TEXT, user_defined_type_catalog TEXT, user_defined_type_schema TEXT, user_defined_type_name TEXT, is_insertable_into TEXT, is_typed TEXT, commit_action TEXT);
CREATE TEMP TABLE IF NOT EXISTS "information_schema.columns"(table_catalog TEXT, table_schema TEXT, table_name TEXT, column_name TEXT, ordinal_position INTEGER, column_default TEXT, is_nullable TEXT, data_type TEXT, character_maximum_length INTEGER, character_octet_length INTEGER, numeric_precision INTEGER, numeric_precision_radix INTEGER, numeric_scale INTEGER, datetime_precision INTEGER, udt_catalog TEXT, udt_schema TEXT, udt_name TEXT, is_identity TEXT, identity_generation TEXT, is_generated TEXT, generation_expression TEXT, is_updatable TEXT);
CREATE TEMP TABLE IF NOT EXISTS "information_schema.table_constraints"(constraint_catalog TEXT, constraint_schema TEXT, constraint_name TEXT, table_catalog TEXT, table_schema TEXT, table_name TEXT, constraint_type TEXT, is_deferrable TEXT, initially_deferred TEXT, enforced TEXT, nulls_distinct TEXT);
CREATE TEMP TABLE IF NOT EXISTS "information_schema.key_column_usage"(constraint_catalog TEXT, constraint_schema TEXT, constraint_name TEXT, table_catalog TEXT, table_schema TEXT, table_name TEXT, column_name TEXT, ordinal_position INTEGER, position_in_unique_constraint INTEGER);
CREATE TEMP TABLE IF NOT EXISTS "information_schema.referential_constraints"(constraint_catalog TEXT, constraint_schema TEXT, constraint_name TEXT, unique_constraint_catalog TEXT, unique_constraint_schema TEXT, unique_constraint_name TEXT, match_option TEXT, update_rule TEXT, delete_rule TEXT);
CREATE TEMP TABLE IF NOT EXISTS "information_schema.views"(table_catalog TEXT, table_schema TEXT, table_name TEXT, view_definition TEXT, check_option TEXT, is_updatable TEXT, is_insertable_into TEXT, is_trigger_updatable TEXT, is_trigger_deletable TEXT, is_trigger_insertable_into TEXT);
"#;

/// PostgreSQL's other catalogs, with its columns, always empty here (Cairn has no casts,
/// operators, languages, text search, foreign data or subscriptions of its own): pg_dump and
/// ORMs read them. Generated from a PostgreSQL 15 server's `pg_attribute`.
/// The session's open SQL cursors, as `session::cursors` keeps them (a row each).
pub const CURSORS: &str = "CREATE TEMP TABLE IF NOT EXISTS pg_cursors(name TEXT, statement TEXT, is_holdable BOOLEAN, is_binary BOOLEAN, is_scrollable BOOLEAN, creation_time TEXT);";

pub const EMPTY: &str = r#"
CREATE TEMP TABLE IF NOT EXISTS pg_aggregate(aggfnoid INTEGER, aggkind TEXT, aggnumdirectargs INTEGER, aggtransfn INTEGER, aggfinalfn INTEGER, aggcombinefn INTEGER, aggserialfn INTEGER, aggdeserialfn INTEGER, aggmtransfn INTEGER, aggminvtransfn INTEGER, aggmfinalfn INTEGER, aggfinalextra BOOLEAN, aggmfinalextra BOOLEAN, aggfinalmodify TEXT, aggmfinalmodify TEXT, aggsortop INTEGER, aggtranstype INTEGER, aggtransspace INTEGER, aggmtranstype INTEGER, aggmtransspace INTEGER, agginitval TEXT, aggminitval TEXT, tableoid INTEGER GENERATED ALWAYS AS (2600) VIRTUAL);
CREATE TEMP TABLE IF NOT EXISTS pg_amop(oid INTEGER, amopfamily INTEGER, amoplefttype INTEGER, amoprighttype INTEGER, amopstrategy INTEGER, amoppurpose TEXT, amopopr INTEGER, amopmethod INTEGER, amopsortfamily INTEGER, tableoid INTEGER GENERATED ALWAYS AS (2602) VIRTUAL);
CREATE TEMP TABLE IF NOT EXISTS pg_amproc(oid INTEGER, amprocfamily INTEGER, amproclefttype INTEGER, amprocrighttype INTEGER, amprocnum INTEGER, amproc INTEGER, tableoid INTEGER GENERATED ALWAYS AS (2603) VIRTUAL);
CREATE TEMP TABLE IF NOT EXISTS pg_cast(oid INTEGER, castsource INTEGER, casttarget INTEGER, castfunc INTEGER, castcontext TEXT, castmethod TEXT, tableoid INTEGER GENERATED ALWAYS AS (2605) VIRTUAL);
CREATE TEMP TABLE IF NOT EXISTS pg_conversion(oid INTEGER, conname TEXT, connamespace INTEGER, conowner INTEGER, conforencoding INTEGER, contoencoding INTEGER, conproc INTEGER, condefault BOOLEAN, tableoid INTEGER GENERATED ALWAYS AS (2607) VIRTUAL);
CREATE TEMP TABLE IF NOT EXISTS pg_db_role_setting(setdatabase INTEGER, setrole INTEGER, setconfig TEXT, tableoid INTEGER GENERATED ALWAYS AS (2964) VIRTUAL);
CREATE TEMP TABLE IF NOT EXISTS pg_default_acl(oid INTEGER, defaclrole INTEGER, defaclnamespace INTEGER, defaclobjtype TEXT, defaclacl TEXT, tableoid INTEGER GENERATED ALWAYS AS (826) VIRTUAL);
CREATE TEMP TABLE IF NOT EXISTS pg_event_trigger(oid INTEGER, evtname TEXT, evtevent TEXT, evtowner INTEGER, evtfoid INTEGER, evtenabled TEXT, evttags TEXT, tableoid INTEGER GENERATED ALWAYS AS (3466) VIRTUAL);
CREATE TEMP TABLE IF NOT EXISTS pg_foreign_data_wrapper(oid INTEGER, fdwname TEXT, fdwowner INTEGER, fdwhandler INTEGER, fdwvalidator INTEGER, fdwacl TEXT, fdwoptions TEXT, tableoid INTEGER GENERATED ALWAYS AS (2328) VIRTUAL);
CREATE TEMP TABLE IF NOT EXISTS pg_foreign_server(oid INTEGER, srvname TEXT, srvowner INTEGER, srvfdw INTEGER, srvtype TEXT, srvversion TEXT, srvacl TEXT, srvoptions TEXT, tableoid INTEGER GENERATED ALWAYS AS (1417) VIRTUAL);
CREATE TEMP TABLE IF NOT EXISTS pg_language(oid INTEGER, lanname TEXT, lanowner INTEGER, lanispl BOOLEAN, lanpltrusted BOOLEAN, lanplcallfoid INTEGER, laninline INTEGER, lanvalidator INTEGER, lanacl TEXT, tableoid INTEGER GENERATED ALWAYS AS (2612) VIRTUAL);
CREATE TEMP TABLE IF NOT EXISTS pg_largeobject(loid INTEGER, pageno INTEGER, data TEXT, tableoid INTEGER GENERATED ALWAYS AS (2613) VIRTUAL);
CREATE TEMP TABLE IF NOT EXISTS pg_largeobject_metadata(oid INTEGER, lomowner INTEGER, lomacl TEXT, tableoid INTEGER GENERATED ALWAYS AS (2995) VIRTUAL);
CREATE TEMP TABLE IF NOT EXISTS pg_operator(oid INTEGER, oprname TEXT, oprnamespace INTEGER, oprowner INTEGER, oprkind TEXT, oprcanmerge BOOLEAN, oprcanhash BOOLEAN, oprleft INTEGER, oprright INTEGER, oprresult INTEGER, oprcom INTEGER, oprnegate INTEGER, oprcode INTEGER, oprrest INTEGER, oprjoin INTEGER, tableoid INTEGER GENERATED ALWAYS AS (2617) VIRTUAL);
CREATE TEMP TABLE IF NOT EXISTS pg_opfamily(oid INTEGER, opfmethod INTEGER, opfname TEXT, opfnamespace INTEGER, opfowner INTEGER, tableoid INTEGER GENERATED ALWAYS AS (2753) VIRTUAL);
CREATE TEMP TABLE IF NOT EXISTS pg_parameter_acl(oid INTEGER, parname TEXT, paracl TEXT, tableoid INTEGER GENERATED ALWAYS AS (6243) VIRTUAL);
CREATE TEMP TABLE IF NOT EXISTS pg_replication_origin(roident INTEGER, roname TEXT, tableoid INTEGER GENERATED ALWAYS AS (6000) VIRTUAL);
CREATE TEMP TABLE IF NOT EXISTS pg_seclabel(objoid INTEGER, classoid INTEGER, objsubid INTEGER, provider TEXT, label TEXT, tableoid INTEGER GENERATED ALWAYS AS (3596) VIRTUAL);
CREATE TEMP TABLE IF NOT EXISTS pg_shdepend(dbid INTEGER, classid INTEGER, objid INTEGER, objsubid INTEGER, refclassid INTEGER, refobjid INTEGER, deptype TEXT, tableoid INTEGER GENERATED ALWAYS AS (1214) VIRTUAL);
CREATE TEMP TABLE IF NOT EXISTS pg_shseclabel(objoid INTEGER, classoid INTEGER, provider TEXT, label TEXT, tableoid INTEGER GENERATED ALWAYS AS (3592) VIRTUAL);
CREATE TEMP TABLE IF NOT EXISTS pg_statistic(starelid INTEGER, staattnum INTEGER, stainherit BOOLEAN, stanullfrac REAL, stawidth INTEGER, stadistinct REAL, stakind1 INTEGER, stakind2 INTEGER, stakind3 INTEGER, stakind4 INTEGER, stakind5 INTEGER, staop1 INTEGER, staop2 INTEGER, staop3 INTEGER, staop4 INTEGER, staop5 INTEGER, stacoll1 INTEGER, stacoll2 INTEGER, stacoll3 INTEGER, stacoll4 INTEGER, stacoll5 INTEGER, stanumbers1 TEXT, stanumbers2 TEXT, stanumbers3 TEXT, stanumbers4 TEXT, stanumbers5 TEXT, stavalues1 TEXT, stavalues2 TEXT, stavalues3 TEXT, stavalues4 TEXT, stavalues5 TEXT, tableoid INTEGER GENERATED ALWAYS AS (2619) VIRTUAL);
CREATE TEMP TABLE IF NOT EXISTS pg_statistic_ext_data(stxoid INTEGER, stxdinherit BOOLEAN, stxdndistinct TEXT, stxddependencies TEXT, stxdmcv TEXT, stxdexpr TEXT, tableoid INTEGER GENERATED ALWAYS AS (3429) VIRTUAL);
CREATE TEMP TABLE IF NOT EXISTS pg_subscription(oid INTEGER, subdbid INTEGER, subskiplsn INTEGER, subname TEXT, subowner INTEGER, subenabled BOOLEAN, subbinary BOOLEAN, substream BOOLEAN, subtwophasestate TEXT, subdisableonerr BOOLEAN, subconninfo TEXT, subslotname TEXT, subsynccommit TEXT, subpublications TEXT, tableoid INTEGER GENERATED ALWAYS AS (6100) VIRTUAL);
CREATE TEMP TABLE IF NOT EXISTS pg_subscription_rel(srsubid INTEGER, srrelid INTEGER, srsubstate TEXT, srsublsn INTEGER, tableoid INTEGER GENERATED ALWAYS AS (6102) VIRTUAL);
CREATE TEMP TABLE IF NOT EXISTS pg_transform(oid INTEGER, trftype INTEGER, trflang INTEGER, trffromsql INTEGER, trftosql INTEGER, tableoid INTEGER GENERATED ALWAYS AS (3576) VIRTUAL);
CREATE TEMP TABLE IF NOT EXISTS pg_ts_config(oid INTEGER, cfgname TEXT, cfgnamespace INTEGER, cfgowner INTEGER, cfgparser INTEGER, tableoid INTEGER GENERATED ALWAYS AS (3602) VIRTUAL);
CREATE TEMP TABLE IF NOT EXISTS pg_ts_config_map(mapcfg INTEGER, maptokentype INTEGER, mapseqno INTEGER, mapdict INTEGER, tableoid INTEGER GENERATED ALWAYS AS (3603) VIRTUAL);
CREATE TEMP TABLE IF NOT EXISTS pg_ts_dict(oid INTEGER, dictname TEXT, dictnamespace INTEGER, dictowner INTEGER, dicttemplate INTEGER, dictinitoption TEXT, tableoid INTEGER GENERATED ALWAYS AS (3600) VIRTUAL);
CREATE TEMP TABLE IF NOT EXISTS pg_ts_parser(oid INTEGER, prsname TEXT, prsnamespace INTEGER, prsstart INTEGER, prstoken INTEGER, prsend INTEGER, prsheadline INTEGER, prslextype INTEGER, tableoid INTEGER GENERATED ALWAYS AS (3601) VIRTUAL);
CREATE TEMP TABLE IF NOT EXISTS pg_ts_template(oid INTEGER, tmplname TEXT, tmplnamespace INTEGER, tmplinit INTEGER, tmpllexize INTEGER, tableoid INTEGER GENERATED ALWAYS AS (3764) VIRTUAL);
CREATE TEMP TABLE IF NOT EXISTS pg_user_mapping(oid INTEGER, umuser INTEGER, umserver INTEGER, umoptions TEXT, tableoid INTEGER GENERATED ALWAYS AS (1418) VIRTUAL);
"#;

/// The rows that never change: namespaces, access methods, collations, tablespaces, types.
pub fn fixed_rows() -> String {
    let mut sql = String::from(
        "DELETE FROM temp.pg_namespace; DELETE FROM temp.pg_am; DELETE FROM temp.pg_collation; DELETE FROM temp.pg_tablespace; DELETE FROM temp.pg_type;
INSERT INTO temp.pg_namespace VALUES (11, 'pg_catalog', 10, NULL), (2200, 'public', 6171, NULL), (13000, 'information_schema', 10, NULL);
INSERT INTO temp.pg_am VALUES (2, 'heap', 'heap_tableam_handler', 't'), (403, 'btree', 'bthandler', 'i');
INSERT INTO temp.pg_collation VALUES (100, 'default', 11, 10, 'd', 1, -1, NULL, NULL);
INSERT INTO temp.pg_tablespace VALUES (1663, 'pg_default', 10, NULL, NULL);
DELETE FROM temp.pg_description;
INSERT INTO temp.pg_description VALUES (2200, 2615, 0, 'standard public schema');
",
    );
    // Each type's array type, as drivers look them up to read arrays (asyncpg's codecs).
    for ty in PG_TYPES {
        sql.push_str(&format!(
            "INSERT INTO temp.pg_type VALUES ({array}, '_{name}', 11, 10, -1, 0, 'b', 'A', 0, 1, ',', 0, {oid}, 0, 'array_in', 'array_out', 'array_recv', 'array_send', 0, -1, 0, 0, 0, NULL);\n",
            array = ty.array,
            name = ty.name,
            oid = ty.oid,
        ));
    }
    for ty in PG_TYPES {
        sql.push_str(&format!(
            "INSERT INTO temp.pg_type VALUES ({oid}, '{name}', 11, 10, {len}, {byval}, 'b', '{category}', 0, 1, ',', 0, {elem}, {array}, '{name}in', '{name}out', '{name}recv', '{name}send', 0, -1, 0, 0, 0, NULL);\n",
            oid = ty.oid,
            name = ty.name,
            len = ty.len,
            byval = i32::from(ty.len > 0 && ty.len <= 8),
            category = ty.category,
            array = ty.array,
            // The vectors are arrays of int2 and oid to a driver.
            elem = match ty.oid {
                22 => 21,
                30 => 26,
                _ => 0,
            },
        ));
    }
    sql
}

/// What is read from the database's schema, filled again when it changes: first the
/// objects, keys, indexes and tables' columns (from `sqlite_schema` and SQLite's
/// table-valued pragmas, one statement each); then each view's columns ([`VIEW_COLUMNS`], one
/// view at a time, since a view whose tables are gone cannot be described); then the rest
/// ([`REFRESH_DERIVED`]), from those.
pub const REFRESH: &str = r#"
DELETE FROM temp.pg_cairn_fks;
DELETE FROM temp.pg_cairn_objects;
DELETE FROM temp.pg_cairn_indexes;
DELETE FROM temp.pg_cairn_definitions;
DELETE FROM temp.pg_class;
DELETE FROM temp.pg_attribute;
DELETE FROM temp.pg_attrdef;
DELETE FROM temp.pg_index;
DELETE FROM temp.pg_constraint;
DELETE FROM temp."information_schema.schemata";
DELETE FROM temp."information_schema.tables";
DELETE FROM temp."information_schema.columns";
DELETE FROM temp."information_schema.table_constraints";
DELETE FROM temp."information_schema.key_column_usage";
DELETE FROM temp."information_schema.referential_constraints";
DELETE FROM temp."information_schema.views";
INSERT INTO temp.pg_cairn_objects
  SELECT 16384 + rowid, type, name, tbl_name, sql FROM main.sqlite_schema
  WHERE type IN ('table', 'view', 'index')
    AND (name NOT LIKE 'sqlite!_%' ESCAPE '!' OR name LIKE 'sqlite!_autoindex!_%' ESCAPE '!');
INSERT INTO temp.pg_cairn_fks
  SELECT t.oid, t.name, f.id, f.seq, f."table", f."from",
    coalesce(f."to", (SELECT name FROM pragma_table_info(f."table", 'main') WHERE pk = 1)),
    f.on_update, f.on_delete
  FROM temp.pg_cairn_objects t JOIN pragma_foreign_key_list(t.name, 'main') f
  WHERE t.type = 'table';
INSERT INTO temp.pg_cairn_indexes
  SELECT o.oid,
    CASE l.origin
      WHEN 'pk' THEN t.name || '_pkey'
      WHEN 'u' THEN t.name || '_' || (SELECT group_concat(ii.name, '_' ORDER BY ii.seqno) FROM pragma_index_info(o.name, 'main') ii) || '_key'
      ELSE o.name END,
    t.oid, t.name, l."unique", l.origin = 'pk', l.origin,
    (SELECT group_concat(ii.cid + 1, ' ' ORDER BY ii.seqno) FROM pragma_index_info(o.name, 'main') ii),
    (SELECT group_concat(coalesce(ii.name, 'expression'), ', ' ORDER BY ii.seqno) FROM pragma_index_info(o.name, 'main') ii),
    CASE WHEN l.partial THEN substr(o.sql, instr(upper(o.sql), ' WHERE ') + 7) END
  FROM temp.pg_cairn_objects t
    JOIN pragma_index_list(t.name, 'main') l
    JOIN temp.pg_cairn_objects o ON o.name = l.name AND o.type = 'index'
  WHERE t.type = 'table';
INSERT INTO temp.pg_cairn_indexes
  SELECT t.oid + 1000000000, t.name || '_pkey', t.oid, t.name, 1, 1, 'pk', p.cid + 1, p.name, NULL
  FROM temp.pg_cairn_objects t JOIN pragma_table_info(t.name, 'main') p ON p.pk = 1
  WHERE t.type = 'table' AND upper(p.type) = 'INTEGER'
    AND (SELECT count(*) FROM pragma_table_info(t.name, 'main') WHERE pk > 0) = 1
    AND NOT EXISTS (SELECT 1 FROM pragma_index_list(t.name, 'main') WHERE origin = 'pk');
INSERT INTO temp.pg_cairn_definitions
  SELECT oid, 'CREATE ' || CASE WHEN is_unique THEN 'UNIQUE ' ELSE '' END || 'INDEX ' || name || ' ON public.' || tbl || ' USING btree (' || columns || ')'
    || coalesce(' WHERE ' || predicate, '')
  FROM temp.pg_cairn_indexes;
INSERT INTO temp.pg_cairn_definitions
  -- As PostgreSQL's pg_get_viewdef: the query alone, ended by a semicolon.
  SELECT oid, ltrim(substr(sql, instr(upper(sql), ' AS ') + 4)) || ';' FROM temp.pg_cairn_objects WHERE type = 'view';
INSERT INTO temp.pg_cairn_definitions
  SELECT oid + 2000000000, CASE WHEN is_primary THEN 'PRIMARY KEY (' ELSE 'UNIQUE (' END || columns || ')'
  FROM temp.pg_cairn_indexes WHERE origin IN ('pk', 'u');
INSERT INTO temp.pg_attribute
  SELECT o.oid, p.name, cairn_pg_type(p.type), -1, -1, p.cid + 1, 0, -1, cairn_pg_typmod(p.type), 0, 'i', 'p', '',
    p."notnull" OR p.pk > 0, p.dflt_value IS NOT NULL, 0, '', '', 0, 1, 0, 0, NULL, NULL, NULL, NULL
  FROM temp.pg_cairn_objects o JOIN pragma_table_info(o.name, 'main') p
  WHERE o.type = 'table';
"#;

/// One view's columns (`?1` its oid, `?2` its name); a view that cannot be described (its
/// tables dropped) has none listed.
pub const VIEW_COLUMNS: &str = "INSERT INTO temp.pg_attribute
  SELECT ?1, p.name, cairn_pg_type(p.type), -1, -1, p.cid + 1, 0, -1, cairn_pg_typmod(p.type), 0, 'i', 'p', '',
    p.\"notnull\", 0, 0, '', '', 0, 1, 0, 0, NULL, NULL, NULL, NULL
  FROM pragma_table_info(?2, 'main') p";

/// What is made from the schema's rows once they are in (see [`REFRESH`]).
pub const REFRESH_DERIVED: &str = r#"
INSERT INTO temp.pg_class
  SELECT o.oid, o.name, 2200, 0, 0, 10, CASE o.type WHEN 'table' THEN 2 ELSE 0 END, o.oid, 0, 0, -1, 0, 0,
    o.type = 'table' AND EXISTS (SELECT 1 FROM temp.pg_cairn_indexes i WHERE i.relid = o.oid), 0, 'p',
    CASE o.type WHEN 'table' THEN 'r' ELSE 'v' END,
    (SELECT count(*) FROM temp.pg_attribute a WHERE a.attrelid = o.oid), 0, o.type = 'view',
    -- PostgreSQL's foreign keys are triggers on both tables: psql lists them only then.
    o.type = 'table' AND (EXISTS (SELECT 1 FROM temp.pg_cairn_fks f WHERE f.relid = o.oid)
      OR EXISTS (SELECT 1 FROM temp.pg_cairn_fks f WHERE f.target = o.name)),
    0, 0, 0, 1, 'd', 0, 0, 0, 0,
    NULL, NULL, NULL
  FROM temp.pg_cairn_objects o WHERE o.type IN ('table', 'view')
  UNION ALL
  SELECT i.oid, i.name, 2200, 0, 0, 10, 403, i.oid, 0, 0, -1, 0, 0, 0, 0, 'p', 'i',
    length(i.indkey) - length(replace(i.indkey, ' ', '')) + 1, 0, 0, 0, 0, 0, 0, 1, 'n', 0, 0, 0, 0,
    NULL, NULL, NULL
  FROM temp.pg_cairn_indexes i;
INSERT INTO temp.pg_attribute
  SELECT i.oid, a.attname, a.atttypid, -1, a.attlen, k.key + 1, 0, -1, a.atttypmod, 0, 'i', 'p', '',
    0, 0, 0, '', '', 0, 1, 0, 0, NULL, NULL, NULL, NULL
  FROM temp.pg_cairn_indexes i
    JOIN json_each('[' || replace(i.indkey, ' ', ',') || ']') k
    JOIN temp.pg_attribute a ON a.attrelid = i.relid AND a.attnum = k.value;
INSERT INTO temp.pg_attrdef
  SELECT o.oid * 10000 + p.cid + 1, o.oid, p.cid + 1, p.dflt_value
  FROM temp.pg_cairn_objects o JOIN pragma_table_info(o.name, 'main') p
  WHERE o.type = 'table' AND p.dflt_value IS NOT NULL;
INSERT INTO temp.pg_index
  SELECT i.oid, i.relid, length(i.indkey) - length(replace(i.indkey, ' ', '')) + 1,
    length(i.indkey) - length(replace(i.indkey, ' ', '')) + 1,
    i.is_unique, 0, i.is_primary, 0, 1, 0, 1, 0, 1, 1, 0, i.indkey,
    -- One 0 a column: default collation, operator class and options.
    rtrim(replace(hex(zeroblob(length(i.indkey) - length(replace(i.indkey, ' ', '')) + 1)), '00', '0 ')),
    rtrim(replace(hex(zeroblob(length(i.indkey) - length(replace(i.indkey, ' ', '')) + 1)), '00', '0 ')),
    rtrim(replace(hex(zeroblob(length(i.indkey) - length(replace(i.indkey, ' ', '')) + 1)), '00', '0 ')),
    NULL, i.predicate
  FROM temp.pg_cairn_indexes i;
INSERT INTO temp.pg_constraint
  SELECT i.oid + 2000000000, i.name, 2200, CASE i.origin WHEN 'pk' THEN 'p' ELSE 'u' END, 0, 0, 1, i.relid, 0,
    i.oid, 0, 0, ' ', ' ', ' ', 1, 0, 1, '{' || replace(i.indkey, ' ', ',') || '}', NULL, NULL
  FROM temp.pg_cairn_indexes i WHERE i.origin IN ('pk', 'u');
INSERT INTO temp.pg_constraint
  SELECT 3000000000 + 100 * f.relid + f.id, f.tbl || '_' || group_concat(f."from", '_' ORDER BY f.seq) || '_fkey', 2200, 'f',
    0, 0, 1, f.relid, 0, 0, 0, r.oid,
    CASE max(f.on_update) WHEN 'CASCADE' THEN 'c' WHEN 'SET NULL' THEN 'n' WHEN 'SET DEFAULT' THEN 'd' WHEN 'RESTRICT' THEN 'r' ELSE 'a' END,
    CASE max(f.on_delete) WHEN 'CASCADE' THEN 'c' WHEN 'SET NULL' THEN 'n' WHEN 'SET DEFAULT' THEN 'd' WHEN 'RESTRICT' THEN 'r' ELSE 'a' END,
    's', 1, 0, 1,
    '{' || group_concat((SELECT a.attnum FROM temp.pg_attribute a WHERE a.attrelid = f.relid AND a.attname = f."from"), ',' ORDER BY f.seq) || '}',
    '{' || group_concat((SELECT a.attnum FROM temp.pg_attribute a WHERE a.attrelid = r.oid AND a.attname = f."to"), ',' ORDER BY f.seq) || '}',
    NULL
  FROM temp.pg_cairn_fks f
    LEFT JOIN temp.pg_cairn_objects r ON r.name = f.target AND r.type = 'table'
  GROUP BY f.relid, f.id;
INSERT INTO temp.pg_cairn_definitions
  SELECT 3000000000 + 100 * relid + id,
    'FOREIGN KEY (' || group_concat("from", ', ' ORDER BY seq) || ') REFERENCES ' || max(target) || '(' || group_concat("to", ', ' ORDER BY seq) || ')'
      || CASE max(on_update) WHEN 'NO ACTION' THEN '' ELSE ' ON UPDATE ' || max(on_update) END
      || CASE max(on_delete) WHEN 'NO ACTION' THEN '' ELSE ' ON DELETE ' || max(on_delete) END
  FROM temp.pg_cairn_fks
  GROUP BY relid, id;
INSERT INTO temp."information_schema.schemata" VALUES
  (current_database(), 'pg_catalog', current_user(), NULL, NULL, NULL, NULL),
  (current_database(), 'public', current_user(), NULL, NULL, NULL, NULL),
  (current_database(), 'information_schema', current_user(), NULL, NULL, NULL, NULL);
INSERT INTO temp."information_schema.tables"
  SELECT current_database(), 'public', name, CASE type WHEN 'table' THEN 'BASE TABLE' ELSE 'VIEW' END,
    NULL, NULL, NULL, NULL, NULL, CASE type WHEN 'table' THEN 'YES' ELSE 'NO' END, 'NO', NULL
  FROM temp.pg_cairn_objects WHERE type IN ('table', 'view');
INSERT INTO temp."information_schema.columns"
  SELECT current_database(), 'public', c.relname, a.attname, a.attnum, d.adbin,
    CASE WHEN a.attnotnull THEN 'NO' ELSE 'YES' END,
    cairn_information_schema_type(a.atttypid),
    CASE WHEN a.atttypid IN (1042, 1043) AND a.atttypmod > 4 THEN a.atttypmod - 4 END,
    CASE WHEN a.atttypid IN (25, 1042, 1043) THEN 1073741824 END,
    CASE a.atttypid WHEN 21 THEN 16 WHEN 23 THEN 32 WHEN 20 THEN 64 WHEN 700 THEN 24 WHEN 701 THEN 53
      WHEN 1700 THEN CASE WHEN a.atttypmod > 4 THEN (a.atttypmod - 4) >> 16 END END,
    CASE WHEN a.atttypid IN (21, 23, 20, 700, 701) THEN 2 WHEN a.atttypid = 1700 THEN 10 END,
    CASE WHEN a.atttypid IN (21, 23, 20) THEN 0 WHEN a.atttypid = 1700 AND a.atttypmod > 4 THEN (a.atttypmod - 4) & 65535 END,
    CASE WHEN a.atttypid IN (1082, 1083, 1114, 1184) THEN CASE WHEN a.atttypid = 1082 THEN 0 ELSE 6 END END,
    current_database(), 'pg_catalog', t.typname, 'NO', NULL, 'NEVER', NULL, CASE c.relkind WHEN 'r' THEN 'YES' ELSE 'NO' END
  FROM temp.pg_attribute a
    JOIN temp.pg_class c ON c.oid = a.attrelid
    LEFT JOIN temp.pg_type t ON t.oid = a.atttypid
    LEFT JOIN temp.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
  WHERE c.relkind IN ('r', 'v');
INSERT INTO temp."information_schema.table_constraints"
  SELECT current_database(), 'public', con.conname, current_database(), 'public', c.relname,
    CASE con.contype WHEN 'p' THEN 'PRIMARY KEY' WHEN 'u' THEN 'UNIQUE' WHEN 'f' THEN 'FOREIGN KEY' END,
    'NO', 'NO', 'YES', CASE WHEN con.contype IN ('p', 'u') THEN 'YES' END
  FROM temp.pg_constraint con JOIN temp.pg_class c ON c.oid = con.conrelid;
INSERT INTO temp."information_schema.key_column_usage"
  SELECT current_database(), 'public', con.conname, current_database(), 'public', c.relname, a.attname,
    k.key + 1, CASE WHEN con.contype = 'f' THEN k.key + 1 END
  FROM temp.pg_constraint con
    JOIN temp.pg_class c ON c.oid = con.conrelid
    JOIN json_each('[' || substr(con.conkey, 2, length(con.conkey) - 2) || ']') k
    JOIN temp.pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.value;
INSERT INTO temp."information_schema.referential_constraints"
  SELECT current_database(), 'public', con.conname, current_database(), 'public', pk.conname, 'NONE',
    CASE con.confupdtype WHEN 'c' THEN 'CASCADE' WHEN 'n' THEN 'SET NULL' WHEN 'd' THEN 'SET DEFAULT' WHEN 'r' THEN 'RESTRICT' ELSE 'NO ACTION' END,
    CASE con.confdeltype WHEN 'c' THEN 'CASCADE' WHEN 'n' THEN 'SET NULL' WHEN 'd' THEN 'SET DEFAULT' WHEN 'r' THEN 'RESTRICT' ELSE 'NO ACTION' END
  FROM temp.pg_constraint con
    LEFT JOIN temp.pg_constraint pk ON pk.conrelid = con.confrelid AND pk.contype = 'p'
  WHERE con.contype = 'f';
INSERT INTO temp."information_schema.views"
  SELECT current_database(), 'public', name, sql, 'NONE', 'NO', 'NO', 'NO', 'NO', 'NO'
  FROM temp.pg_cairn_objects WHERE type = 'view';
"#;

/// One of the PostgreSQL types the catalogs list (those a declared type maps to).
#[derive(Debug)]
pub struct PgType {
    pub oid: i64,
    /// `pg_type.typname`.
    pub name: &'static str,
    /// What `format_type` writes, before any modifier.
    pub formatted: &'static str,
    pub len: i32,
    pub category: char,
    /// The oid of its array type.
    pub array: i64,
}

/// The types, with PostgreSQL's oids.
pub const PG_TYPES: &[PgType] = &[
    pg_type(16, "bool", "boolean", 1, 'B', 1000),
    pg_type(17, "bytea", "bytea", -1, 'U', 1001),
    pg_type(18, "char", "\"char\"", 1, 'Z', 1002),
    pg_type(19, "name", "name", 64, 'S', 1003),
    pg_type(20, "int8", "bigint", 8, 'N', 1016),
    pg_type(21, "int2", "smallint", 2, 'N', 1005),
    pg_type(22, "int2vector", "int2vector", -1, 'A', 1006),
    pg_type(23, "int4", "integer", 4, 'N', 1007),
    pg_type(25, "text", "text", -1, 'S', 1009),
    pg_type(26, "oid", "oid", 4, 'N', 1028),
    pg_type(30, "oidvector", "oidvector", -1, 'A', 1013),
    pg_type(114, "json", "json", -1, 'U', 199),
    pg_type(700, "float4", "real", 4, 'N', 1021),
    pg_type(701, "float8", "double precision", 8, 'N', 1022),
    pg_type(1042, "bpchar", "character", -1, 'S', 1014),
    pg_type(1043, "varchar", "character varying", -1, 'S', 1015),
    pg_type(1082, "date", "date", 4, 'D', 1182),
    pg_type(1083, "time", "time without time zone", 8, 'D', 1183),
    pg_type(
        1114,
        "timestamp",
        "timestamp without time zone",
        8,
        'D',
        1115,
    ),
    pg_type(
        1184,
        "timestamptz",
        "timestamp with time zone",
        8,
        'D',
        1185,
    ),
    pg_type(1186, "interval", "interval", 16, 'T', 1187),
    pg_type(1700, "numeric", "numeric", -1, 'N', 1231),
    pg_type(2950, "uuid", "uuid", 16, 'U', 2951),
    pg_type(3802, "jsonb", "jsonb", -1, 'U', 3807),
];

const fn pg_type(
    oid: i64,
    name: &'static str,
    formatted: &'static str,
    len: i32,
    category: char,
    array: i64,
) -> PgType {
    PgType {
        oid,
        name,
        formatted,
        len,
        category,
        array,
    }
}

/// The PostgreSQL type (its oid) and type modifier (-1 for none) a column declared `decl`
/// is listed with: the type the declaration names in PostgreSQL's words (`INTEGER` is
/// integer, `VARCHAR(20)` character varying(20)), by SQLite's affinity where it names none.
pub fn declared_type(decl: &str) -> (i64, i64) {
    let decl = decl.trim().to_ascii_lowercase();
    let (base, modifiers) = match decl.split_once('(') {
        Some((base, rest)) => (base.trim(), rest.trim_end_matches(')').trim()),
        None => (decl.as_str(), ""),
    };
    let base = base.split_whitespace().collect::<Vec<_>>().join(" ");
    let numbers: Vec<i64> = modifiers
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .collect();
    let length = || {
        numbers
            .first()
            .map_or(-1, |n| (*n).clamp(0, 10_485_760) + 4)
    };
    match base.as_str() {
        "int" | "integer" | "int4" | "mediumint" | "serial" => (23, -1),
        "bigint" | "int8" | "bigserial" => (20, -1),
        "smallint" | "int2" | "tinyint" | "smallserial" => (21, -1),
        "bool" | "boolean" => (16, -1),
        "text" | "clob" | "" => (25, -1),
        "varchar" | "character varying" | "nvarchar" | "varying character" => (1043, length()),
        "char" | "character" | "nchar" | "bpchar" | "native character" => (1042, length()),
        "real" | "float4" => (700, -1),
        "double" | "double precision" | "float" | "float8" => (701, -1),
        // PostgreSQL's own limits: precision up to 1000, scale within ±1000.
        "numeric" | "decimal" => match numbers.as_slice() {
            [p] if (1..=1000).contains(p) => (1700, (p << 16) + 4),
            [p, s] if (1..=1000).contains(p) && (0..=*p).contains(s) => (1700, (p << 16) + s + 4),
            _ => (1700, -1),
        },
        "blob" | "bytea" => (17, -1),
        "date" => (1082, -1),
        "time" | "time without time zone" => (1083, -1),
        "timestamp" | "timestamp without time zone" | "datetime" => (1114, -1),
        "timestamptz" | "timestamp with time zone" => (1184, -1),
        "interval" => (1186, -1),
        "uuid" => (2950, -1),
        "json" => (114, -1),
        "jsonb" => (3802, -1),
        _ => match crate::sql::types::from_declared(&base) {
            Some(crate::sql::types::SqlType::Int8) => (20, -1),
            Some(crate::sql::types::SqlType::Float8) => (701, -1),
            Some(crate::sql::types::SqlType::Bytea) => (17, -1),
            Some(crate::sql::types::SqlType::Bool) => (16, -1),
            Some(crate::sql::types::SqlType::Text) | None => (25, -1),
            Some(crate::sql::types::SqlType::TextArray) => (1009, -1),
            Some(crate::sql::types::SqlType::BoolArray) => (1000, -1),
            Some(crate::sql::types::SqlType::Int8Array) => (1016, -1),
            Some(crate::sql::types::SqlType::Float8Array) => (1022, -1),
            Some(crate::sql::types::SqlType::OidArray) => (1028, -1),
            Some(crate::sql::types::SqlType::Int2Vector) => (22, -1),
            Some(crate::sql::types::SqlType::OidVector) => (30, -1),
        },
    }
}

/// The oid of the type named `name` (`int4`, `integer`, `pg_catalog.text`), if listed.
pub fn type_named(name: &str) -> Option<i64> {
    let name = name.trim().to_ascii_lowercase();
    let name = name.strip_prefix("pg_catalog.").unwrap_or(&name);
    PG_TYPES
        .iter()
        .find(|t| t.name == name || t.formatted == name)
        .map(|t| t.oid)
}

/// PostgreSQL's `format_type(oid, typmod)`: the type's name as `\d` shows it.
pub fn format_type(oid: i64, typmod: Option<i64>) -> Option<String> {
    let ty = PG_TYPES.iter().find(|t| t.oid == oid)?;
    let modifier = typmod.filter(|m| *m >= 4).map(|m| m - 4);
    Some(match (oid, modifier) {
        (1042 | 1043, Some(n)) => format!("{}({n})", ty.formatted),
        (1700, Some(m)) => format!("numeric({},{})", m >> 16, m & 0xffff),
        _ => ty.formatted.to_owned(),
    })
}

/// The `data_type` of `information_schema.columns` for a type.
pub fn information_schema_type(oid: i64) -> String {
    match oid {
        1042 => "character".into(),
        1043 => "character varying".into(),
        1700 => "numeric".into(),
        _ => format_type(oid, None).unwrap_or_else(|| "USER-DEFINED".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::lexer::tokenize;

    #[test]
    fn declared_types_are_listed_as_postgresql_names_them() {
        let named = |decl: &str| {
            let (oid, typmod) = declared_type(decl);
            format_type(oid, Some(typmod)).unwrap()
        };
        assert_eq!(named("INTEGER"), "integer");
        assert_eq!(named("bigint"), "bigint");
        assert_eq!(named("VARCHAR(20)"), "character varying(20)");
        assert_eq!(named("varchar"), "character varying");
        assert_eq!(named("numeric(10, 2)"), "numeric(10,2)");
        assert_eq!(named("BOOLEAN"), "boolean");
        assert_eq!(named("double precision"), "double precision");
        assert_eq!(
            named("TIMESTAMP WITHOUT TIME ZONE"),
            "timestamp without time zone"
        );
        assert_eq!(named(""), "text");
        assert_eq!(named("UNSIGNED BIG INT"), "bigint");
        assert_eq!(named("whatever"), "text");
        assert_eq!(format_type(99999, None), None);
        assert_eq!(type_named("pg_catalog.int4"), Some(23));
        assert_eq!(type_named("hstore"), None);
    }

    #[test]
    fn writes_to_catalogs_and_lasting_views_of_them_are_refused() {
        let refused = |sql: &str| refusal(&tokenize(sql).unwrap()).map(|(code, _)| code);
        for sql in [
            "INSERT INTO pg_enum VALUES (1)",
            "insert or replace into pg_catalog.pg_class values (1)",
            "UPDATE pg_class SET relname = 'x'",
            "UPDATE pg_settings SET setting = 'x' WHERE name = 'TimeZone'",
            "DELETE FROM temp.pg_cairn_refreshed",
            "DROP TABLE IF EXISTS pg_attribute",
            "CREATE TEMP TRIGGER x AFTER INSERT ON pg_cairn_refreshed BEGIN SELECT 1; END",
            "DELETE FROM information_schema.tables",
            "WITH x AS (SELECT 1) DELETE FROM pg_class",
            "CREATE TEMP TRIGGER tr AFTER INSERT ON t BEGIN DELETE FROM pg_class; END",
        ] {
            assert_eq!(
                refused(sql),
                Some(crate::sqlstate::INSUFFICIENT_PRIVILEGE),
                "{sql}"
            );
        }
        assert_eq!(
            refused("CREATE VIEW v AS SELECT table_name FROM information_schema.tables"),
            Some(crate::sqlstate::FEATURE_NOT_SUPPORTED)
        );
        for sql in [
            "CREATE TEMP VIEW v AS SELECT relname FROM pg_class",
            "INSERT INTO main.pg_enum VALUES (1)",
            "INSERT INTO names SELECT relname FROM pg_class",
            "CREATE VIEW v AS SELECT 1",
            "CREATE TABLE c(p INTEGER REFERENCES p ON DELETE CASCADE ON UPDATE SET NULL)",
            "SELECT * FROM t FOR UPDATE",
            "SELECT * FROM pg_class",
        ] {
            assert_eq!(refused(sql), None, "{sql}");
        }
    }

    #[test]
    fn statements_that_read_catalogs_are_told_apart() {
        let reads = |sql: &str| reads_catalogs(&tokenize(sql).unwrap());
        assert!(reads("SELECT relname FROM pg_catalog.pg_class"));
        assert!(reads("select * from PG_CLASS"));
        assert!(reads("SELECT * FROM information_schema.tables"));
        assert!(reads("SELECT 't'::regclass"));
        assert!(!reads("SELECT * FROM pg_classes"));
        assert!(!reads("SELECT 'pg_class'"));
        assert!(!reads("SELECT k, pad FROM bench WHERE id = $1"));
        assert!(!reads("SELECT pg_catalog.version(), 'é'"));
    }
}
