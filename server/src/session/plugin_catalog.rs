//! What plugins registered, as tables any role may query: `plugin_functions()` (the SQL
//! functions, with their kind and argument count, and a table function's typed arguments
//! and columns) and `plugin_procedures()` (the procedures,
//! with their result columns).

use rusqlite::types::Value;

use super::{SqlError, rewrite_call, values_table};
use crate::plugin::Plugins;

const FUNCTION_COLUMNS: [&str; 8] = [
    "plugin",
    "name",
    "kind",
    "arg_count",
    "deterministic",
    "description",
    "arguments",
    "columns",
];
const PROCEDURE_COLUMNS: [&str; 4] = ["plugin", "name", "columns", "description"];

/// `text` with `plugin_functions()` and `plugin_procedures()` replaced by their rows now.
pub(super) fn rewrite(plugins: &Plugins, text: &str) -> Result<Option<String>, SqlError> {
    let names = |columns: &[&str]| columns.iter().map(|c| (*c).to_owned()).collect::<Vec<_>>();
    let functions = rewrite_call(text, "plugin_functions", || {
        let rows: Vec<Vec<Value>> = plugins
            .functions()
            .describe()
            .into_iter()
            .map(|f| {
                // A table function's typed arguments and columns; NULL for the others, whose
                // arguments are any SQL values.
                let typed = |columns: Option<Vec<cairn_plugin_api::Column>>| {
                    columns.map_or(Value::Null, |c| Value::Text(column_list(&c)))
                };
                vec![
                    Value::Text(f.plugin),
                    Value::Text(f.name),
                    Value::Text(f.kind.into()),
                    // Any number of arguments: NULL.
                    if f.arg_count < 0 {
                        Value::Null
                    } else {
                        Value::Integer(i64::from(f.arg_count))
                    },
                    Value::Integer(i64::from(f.deterministic)),
                    Value::Text(f.description),
                    typed(f.arguments),
                    typed(f.columns),
                ]
            })
            .collect();
        Ok(values_table(&names(&FUNCTION_COLUMNS), &rows))
    })?;
    let text = functions.as_deref().unwrap_or(text);
    let procedures = rewrite_call(text, "plugin_procedures", || {
        let rows: Vec<Vec<Value>> = plugins
            .procedures()
            .into_iter()
            .map(|(plugin, name, description, columns)| {
                vec![
                    Value::Text(plugin),
                    Value::Text(name),
                    Value::Text(column_list(&columns)),
                    Value::Text(description),
                ]
            })
            .collect();
        Ok(values_table(&names(&PROCEDURE_COLUMNS), &rows))
    })?;
    Ok(procedures.or(functions))
}

/// `name type, name type`.
fn column_list(columns: &[cairn_plugin_api::Column]) -> String {
    let each: Vec<String> = columns
        .iter()
        .map(|c| format!("{} {}", c.name, type_name(c.ty)))
        .collect();
    each.join(", ")
}

fn type_name(ty: cairn_plugin_api::ColumnType) -> &'static str {
    use cairn_plugin_api::ColumnType;
    match ty {
        ColumnType::Integer => "integer",
        ColumnType::Real => "real",
        ColumnType::Text => "text",
        ColumnType::Blob => "blob",
    }
}
