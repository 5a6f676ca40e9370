//! The SQL functions of PostgreSQL's that act on sessions, registered on every session's
//! connection: `pg_backend_pid()`, and for admins `pg_cancel_backend(id)` and
//! `pg_terminate_backend(id)` (true when the session exists, as in PostgreSQL).

use std::sync::Arc;

use rusqlite::Connection;
use rusqlite::functions::FunctionFlags;

use super::registry::{Activity, Interruption, Registry};
use crate::roles::Role;

pub(super) fn register(
    conn: &Connection,
    registry: &Arc<Registry>,
    me: &Arc<Activity>,
) -> rusqlite::Result<()> {
    let id = me.id;
    conn.create_scalar_function(
        "pg_backend_pid",
        0,
        FunctionFlags::SQLITE_UTF8
            | FunctionFlags::SQLITE_DETERMINISTIC
            | FunctionFlags::SQLITE_DIRECTONLY,
        move |_| Ok(i64::from(id)),
    )?;
    for (name, why) in [
        ("pg_cancel_backend", Interruption::Cancel),
        ("pg_terminate_backend", Interruption::Terminate),
    ] {
        let registry = Arc::clone(registry);
        let role = me.role;
        let user = me.user.clone();
        // Direct only: a trigger or view another user wrote must not end sessions with the
        // rights of the admin whose statement fired it.
        let flags = FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DIRECTONLY;
        conn.create_scalar_function(name, 1, flags, move |ctx| {
            if role != Role::Admin {
                return Err(rusqlite::Error::UserFunctionError(
                    format!(
                        "permission denied: {name} needs the admin role; user \"{user}\" has role {}",
                        role.name()
                    )
                    .into(),
                ));
            }
            let target: i64 = ctx.get(0)?;
            let found = i32::try_from(target).ok().and_then(|id| registry.get(id));
            Ok(match found {
                Some(activity) => {
                    activity.interrupt(why);
                    true
                }
                None => false,
            })
        })?;
    }
    Ok(())
}
