//! What can go wrong making or removing a lab network. Failures of `ip` itself come as the builder's
//! [`ToolError`](talforge_builder::tool::ToolError), which names the command line, its exit status and its
//! stderr.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use talforge_builder::ErrorClass;
use talforge_builder::tool::ToolError;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    #[error(
        "the lab's network (a namespace with a bridge and taps) needs root or a user namespace, and effective \
         uid {euid} cannot have one here: {reason}"
    )]
    NeedsRoot { euid: u32, reason: String },

    #[error("{0}")]
    Unsupported(String),

    #[error(
        "network namespace {netns:?} exists already (/run/netns/{netns}); if it is a stale lab's, remove it \
         with delete_netns"
    )]
    Exists { netns: String },

    #[error("{what} name {name:?}: expected {expected}")]
    BadName { what: &'static str, name: String, expected: &'static str },

    #[error("interface name {name:?} is given twice (the bridge and the taps share one namespace)")]
    DuplicateName { name: String },

    #[error("gateway {gateway}/{prefix}: {problem}")]
    BadAddress { gateway: Ipv4Addr, prefix: u8, problem: &'static str },

    #[error(transparent)]
    Tool(#[from] ToolError),

    #[error("cannot {op} {}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl NetError {
    /// The class the binary maps to an exit code.
    pub fn class(&self) -> ErrorClass {
        match self {
            NetError::NeedsRoot { .. } | NetError::Unsupported(_) => ErrorClass::Unsupported,
            NetError::BadName { .. } | NetError::DuplicateName { .. } | NetError::BadAddress { .. } => {
                ErrorClass::BadInput
            }
            NetError::Tool(ToolError::Missing { .. }) => ErrorClass::MissingDependency,
            NetError::Exists { .. } | NetError::Tool(_) | NetError::Io { .. } => ErrorClass::Io,
        }
    }
}
