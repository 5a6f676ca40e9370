//! The error a plugin returns, and the error the SDK reports when the server refuses.

use crate::abi;

/// Why a plugin operation or a host service failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PluginError {
    /// The operation failed; the message says why.
    #[error("{0}")]
    Failed(String),
    /// The plugin's config is not valid; the message names the key.
    #[error("invalid config: {0}")]
    Config(String),
    /// The arguments were not acceptable.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The server running this plugin is too old to offer the named service.
    #[error("the server does not offer {0}; it needs a newer Cairn")]
    Unsupported(String),
    /// The server refused (a name already taken, an unknown database…).
    #[error("refused: {0}")]
    Refused(String),
    /// Code panicked; the message is the panic's.
    #[error("panicked: {0}")]
    Panicked(String),
}

impl PluginError {
    /// A [`PluginError::Failed`] with `message`.
    pub fn failed(message: impl Into<String>) -> PluginError {
        PluginError::Failed(message.into())
    }

    /// The ABI error code of this error.
    pub fn code(&self) -> abi::CairnErrorCode {
        match self {
            PluginError::Failed(_) | PluginError::Config(_) => abi::CAIRN_ERROR_FAILED,
            PluginError::InvalidArgument(_) => abi::CAIRN_ERROR_INVALID_ARGUMENT,
            PluginError::Unsupported(_) => abi::CAIRN_ERROR_UNSUPPORTED,
            PluginError::Refused(_) => abi::CAIRN_ERROR_REFUSED,
            PluginError::Panicked(_) => abi::CAIRN_ERROR_PANICKED,
        }
    }

    /// The message alone, without the prefix the variant adds.
    pub fn message(&self) -> &str {
        match self {
            PluginError::Failed(m)
            | PluginError::Config(m)
            | PluginError::InvalidArgument(m)
            | PluginError::Unsupported(m)
            | PluginError::Refused(m)
            | PluginError::Panicked(m) => m,
        }
    }

    /// Rebuilds an error from what crossed the ABI.
    pub fn from_code(code: abi::CairnErrorCode, message: String) -> PluginError {
        match code {
            abi::CAIRN_ERROR_INVALID_ARGUMENT => PluginError::InvalidArgument(message),
            abi::CAIRN_ERROR_UNSUPPORTED => PluginError::Unsupported(message),
            abi::CAIRN_ERROR_REFUSED => PluginError::Refused(message),
            abi::CAIRN_ERROR_PANICKED => PluginError::Panicked(message),
            _ => PluginError::Failed(message),
        }
    }

    /// Whether the plugin panicked (the server then marks it failed).
    pub fn is_panic(&self) -> bool {
        matches!(self, PluginError::Panicked(_))
    }
}

/// The result of an operation that crossed the ABI.
pub type Outcome = Result<crate::Reply, PluginError>;
