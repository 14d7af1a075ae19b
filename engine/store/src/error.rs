//! Storage errors, classified as the house style asks.

/// A storage failure. `Display` describes this error only, not its source.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened (path, lock, permissions, version).
    #[error("cannot open the state store at {path}: {reason}")]
    Open { path: String, reason: String },
    /// A read or write failed in the engine.
    #[error("state store {op} failed: {reason}")]
    Engine { op: &'static str, reason: String },
}

impl StoreError {
    /// Whether the caller may retry the same operation.
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Open { .. } => false,
            StoreError::Engine { reason, .. } => reason.contains("Busy") || reason.contains("TryAgain"),
        }
    }

    /// User errors are fixed by the operator (a wrong path, a locked dir);
    /// the rest are external failures.
    pub fn is_user_error(&self) -> bool {
        matches!(self, StoreError::Open { .. })
    }
}
