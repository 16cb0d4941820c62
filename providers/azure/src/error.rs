//! The provider errors every module raises, and reading a finding's attributes (a missing one is
//! the finding's fault, not Azure's).

use crate::capabilities::PROVIDER;
use closeout_contract::{Finding, ProviderError};

/// A permanent failure: retrying the same request will not help.
pub(crate) fn permanent(message: impl Into<String>) -> ProviderError {
    ProviderError::Permanent {
        provider: PROVIDER,
        message: message.into(),
    }
}

/// A configuration (or plan) mistake: names something Azure does not have.
pub(crate) fn config_error(message: impl Into<String>) -> ProviderError {
    ProviderError::Config {
        provider: PROVIDER,
        message: message.into(),
    }
}

/// The non-empty attribute `key` of `finding`.
pub(crate) fn attr<'a>(finding: &'a Finding, key: &str) -> Result<&'a str, ProviderError> {
    finding
        .attr(key)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| permanent(format!("finding {} has no {key} attribute", finding.id)))
}
