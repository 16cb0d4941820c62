//! The call limits of each Azure API family, from Microsoft's documented quotas, and the gates
//! that enforce them. ARM, Graph and the Key Vault data plane are throttled by different
//! services with different budgets, so each has a gate of its own (all named `azure` in spans
//! and `--timings`); a throttle from one slows only that family.
//!
//! | family | documented quota (2024-2025) | default here |
//! |---|---|---|
//! | ARM | per subscription, principal and operation type, token bucket: reads 250 refilled 25/s, writes and deletes 200 refilled 10/s each ("Azure Resource Manager request limits and throttling") | 25 calls/s, 16 in flight |
//! | Graph | identity and access, per app and tenant: 3,500 resource units per 10 s in a small tenant (5,000 medium, 8,000 large), most requests 1 unit; writes 3,000 per 150 s ("Microsoft Graph service-specific throttling limits") | 100 calls/s, 32 in flight |
//! | Key Vault | per vault and region: 4,000 secret and software-key transactions per 10 s, 20 software RSA key creates per 10 s; the subscription 5× that ("Azure Key Vault service limits") | 100 calls/s, 16 in flight |
//!
//! Key Vault's budget is shared with the applications reading their secrets from the same vault
//! at run time, so Closeout takes a quarter of it. A quota the defaults still exceed (a large
//! rotation's key creates, a tenant's other apps) answers 429: the gate halves its rate and
//! waits out `Retry-After` (`closeout_contract::CallGate::throttled`). `max_in_flight` and
//! `requests_per_second` in `[providers.azure]`, when set, replace the limits of every family.

use crate::config::AzureConfig;
use closeout_contract::{CallGate, Limits};

/// ARM's default limits (see the module documentation).
pub const ARM: (usize, f64) = (16, 25.0);
/// Graph's default limits.
pub const GRAPH: (usize, f64) = (32, 100.0);
/// The Key Vault data plane's default limits.
pub const KEY_VAULT: (usize, f64) = (16, 100.0);

/// One gate per API family.
#[derive(Debug, Clone)]
pub struct Gates {
    /// Azure Resource Manager.
    pub arm: CallGate,
    /// Microsoft Graph.
    pub graph: CallGate,
    /// The Key Vault data plane (every vault).
    pub key_vault: CallGate,
}

impl Gates {
    /// The gates `config` asks for: the documented defaults, or its overrides for every family.
    pub fn from_config(config: &AzureConfig) -> Gates {
        let limits = |(in_flight, rate): (usize, f64)| {
            Limits::configured(
                config.max_in_flight.unwrap_or(in_flight),
                config.requests_per_second.unwrap_or(rate),
            )
        };
        Gates {
            arm: CallGate::named("azure", limits(ARM)),
            graph: CallGate::named("azure", limits(GRAPH)),
            key_vault: CallGate::named("azure", limits(KEY_VAULT)),
        }
    }

    /// One gate for every family (tests that count or pace all calls together).
    pub fn shared(gate: CallGate) -> Gates {
        Gates {
            arm: gate.clone(),
            graph: gate.clone(),
            key_vault: gate,
        }
    }

    /// What the provider as a whole allows: the widest family (bounds how many actions the
    /// executor runs at once for this provider).
    pub fn widest(&self) -> Limits {
        Limits::widest([&self.arm, &self.graph, &self.key_vault])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_family_has_its_documented_default_unless_the_config_overrides_all() {
        let gates = Gates::from_config(&AzureConfig::default());
        assert_eq!(gates.arm.limits().requests_per_second, 25.0);
        assert_eq!(gates.graph.limits().max_in_flight, 32);
        assert_eq!(gates.key_vault.limits().requests_per_second, 100.0);
        assert_eq!(gates.widest().max_in_flight, 32);
        let overridden = Gates::from_config(&AzureConfig {
            max_in_flight: Some(4),
            requests_per_second: Some(7.0),
            ..AzureConfig::default()
        });
        for gate in [&overridden.arm, &overridden.graph, &overridden.key_vault] {
            assert_eq!(gate.limits().max_in_flight, 4);
            assert_eq!(gate.limits().requests_per_second, 7.0);
        }
    }
}
