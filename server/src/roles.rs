//! Roles and what each may do. A user has exactly one role, declared in the config.

use serde::Deserialize;

/// What a logged-in user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything, including creating and dropping databases.
    Admin,
    /// Read any database, plus the backup, export and restore statements.
    Backup,
    /// Read and write rows and schema in existing databases.
    Readwrite,
    /// Read only: every write is refused.
    Readonly,
}

impl Role {
    /// The role's name as written in the config.
    pub fn name(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Backup => "backup",
            Role::Readwrite => "readwrite",
            Role::Readonly => "readonly",
        }
    }

    /// The role written `name` (as in the config, any case).
    pub fn from_name(name: &str) -> Option<Role> {
        Role::ALL
            .into_iter()
            .find(|role| role.name().eq_ignore_ascii_case(name))
    }

    /// Every role, from the most to the least it may do.
    pub const ALL: [Role; 4] = [Role::Admin, Role::Backup, Role::Readwrite, Role::Readonly];

    /// Whether SQL from this role may change a database file.
    pub fn may_write(self) -> bool {
        matches!(self, Role::Admin | Role::Readwrite)
    }

    /// Whether this role may call plugin procedures, which run with the server's privileges.
    pub fn may_call_plugins(self) -> bool {
        matches!(self, Role::Admin | Role::Backup)
    }

    /// Whether this role may back up and restore databases and read the backup history.
    pub fn may_back_up(self) -> bool {
        matches!(self, Role::Admin | Role::Backup)
    }

    /// Whether this role's statements may still write while the data disk is full: the
    /// admin's, who needs the reserved room to free space.
    pub fn may_write_on_a_full_disk(self) -> bool {
        self == Role::Admin
    }

    /// Whether this role may create and drop databases.
    pub fn may_manage_databases(self) -> bool {
        self == Role::Admin
    }
}

/// User names become file names (generated credentials), so they follow the database rule.
pub fn validate_user_name(name: &str) -> Result<(), String> {
    crate::catalog::validate_identifier("user", name)
}
