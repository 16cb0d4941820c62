//! The person's tokens: every accessor is looked up (bounded and concurrent; only matches are
//! kept), and — when the configuration names a file audit log — the orphan tokens the person's
//! tokens created and the leases their requests obtained.
//!
//! A token is the person's when its entity is one of the person's entities (children inherit
//! their parent's entity), or its `owner_key` metadata names the person. An orphan carries no
//! entity, so the audit log is read for the person's `auth/token/create*` responses; their
//! accessors are HMAC'd there, so tokens created within a few seconds of such a response are
//! hashed through `sys/audit-hash/<device>` and compared. Tokens found that way (and owned
//! tokens without an entity) are themselves requesters in the next pass, a few rounds deep, so
//! the orphans of orphans are found too.

use crate::audit_trail::{self, AuditTrail, CreatedToken, LeaseGrant, Requesters};
use crate::capabilities::{kinds, PROVIDER};
use crate::client::{seg, CallError};
use crate::correlation::owned_by;
use crate::findings::refused_listing;
use crate::model::TokenInfo;
use crate::server::VaultProvider;
use closeout_contract::reuse::{self, Reuse};
use closeout_contract::{Gap, Identity, ProviderError};
use futures::stream::{self, StreamExt, TryStreamExt};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path as FsPath;

/// How many requester generations are followed through the audit log (person → orphan →
/// orphan's orphan ...).
const MAX_AUDIT_ROUNDS: usize = 4;

/// One of the person's tokens, and the audit entry that attributed it, if that is how it was
/// found.
pub(crate) struct PersonToken {
    pub info: TokenInfo,
    pub created: Option<CreatedToken>,
}

#[derive(Default)]
pub(crate) struct TokenScan {
    pub tokens: Vec<PersonToken>,
    /// Leases the person's requests obtained, per the audit log.
    pub leases: Vec<LeaseGrant>,
    pub warnings: Vec<String>,
    /// The accessor listing, when Vault refused it: the person's tokens are unknown.
    pub gaps: Vec<Gap>,
}

enum Keep {
    Match,
    Candidate,
    Drop,
}

impl VaultProvider {
    /// Every token accessor. vaultrs has no function listing accessors: a typed call.
    async fn accessors(&self) -> Result<Vec<String>, CallError> {
        self.client.list("auth/token/accessors").await
    }

    /// Look every accessor up (`listed`, or a fresh listing); keep the ones `classify` keeps,
    /// split into (matches, candidates).
    async fn scan_accessors<F>(
        &self,
        listed: Option<Vec<String>>,
        classify: F,
    ) -> Result<(Vec<TokenInfo>, Vec<TokenInfo>), CallError>
    where
        F: Fn(&TokenInfo) -> Keep + Sync,
    {
        let accessors = match listed {
            Some(a) => a,
            None => self.accessors().await?,
        };
        let classify = &classify;
        // In a verification's resolution, an accessor whose remembered token `classify` drops
        // is not looked up again: a token's entity, metadata and creation time never change,
        // so the live token (if any) would be dropped too (`memory.rs`).
        let reuse = reuse::current() == Reuse::SinceLastRead;
        let listed_set: BTreeSet<String> = accessors.iter().cloned().collect();
        let to_look_up: Vec<String> = {
            let mut memory = self.memory.lock().unwrap_or_else(|p| p.into_inner());
            memory.tokens.retain(|acc, _| listed_set.contains(acc));
            accessors
                .into_iter()
                .filter(|acc| {
                    !reuse
                        || !memory
                            .tokens
                            .get(acc)
                            .is_some_and(|t| matches!(classify(t), Keep::Drop))
                })
                .collect()
        };
        let looked_up: Vec<TokenInfo> = stream::iter(to_look_up)
            .map(|acc| async move { self.lookup_accessor(&acc).await })
            .buffer_unordered(self.config.max_in_flight.max(1))
            .try_filter_map(|t| async move { Ok(t) })
            .try_collect()
            .await?;
        {
            // Only what decides whether a token is the person's (or a candidate) is kept: a
            // token that is either is looked up live again anyway.
            let mut memory = self.memory.lock().unwrap_or_else(|p| p.into_inner());
            for t in &looked_up {
                memory.tokens.insert(
                    t.accessor.clone(),
                    TokenInfo {
                        accessor: t.accessor.clone(),
                        entity_id: t.entity_id.clone(),
                        meta: t.meta.clone(),
                        creation_time: t.creation_time,
                        orphan: t.orphan,
                        display_name: String::new(),
                        policies: Vec::new(),
                        path: String::new(),
                        expire_time: String::new(),
                    },
                );
            }
        }
        let kept: Vec<(bool, TokenInfo)> = looked_up
            .into_iter()
            .filter_map(|t| match classify(&t) {
                Keep::Match => Some((true, t)),
                Keep::Candidate => Some((false, t)),
                Keep::Drop => None,
            })
            .collect();
        let (matches, candidates): (Vec<_>, Vec<_>) = kept.into_iter().partition(|(m, _)| *m);
        Ok((
            matches.into_iter().map(|(_, t)| t).collect(),
            candidates.into_iter().map(|(_, t)| t).collect(),
        ))
    }

    /// `input` as the audit device HMACs it.
    async fn audit_hash(&self, input: &str) -> Result<String, CallError> {
        #[derive(Deserialize)]
        struct Hash {
            #[serde(default)]
            hash: String,
            #[serde(default)]
            data: Option<Box<Hash>>,
        }
        let path = format!("sys/audit-hash/{}", seg(&self.config.audit_device));
        let h: Option<Hash> = self
            .client
            .post(&path, &serde_json::json!({ "input": input }))
            .await?;
        Ok(match h {
            Some(Hash { hash, .. }) if !hash.is_empty() => hash,
            Some(Hash { data: Some(d), .. }) => d.hash,
            _ => String::new(),
        })
    }

    /// HMACs of the tokens' accessors, hashed concurrently within the gate.
    async fn hash_accessors(
        &self,
        accessors: Vec<String>,
    ) -> Result<BTreeMap<String, String>, CallError> {
        stream::iter(accessors)
            .map(|acc| async move { Ok::<_, CallError>((self.audit_hash(&acc).await?, acc)) })
            .buffer_unordered(self.config.max_in_flight.max(1))
            .try_collect()
            .await
    }

    async fn read_trail(&self, log: &FsPath, who: Requesters) -> Result<AuditTrail, ProviderError> {
        let path = log.to_path_buf();
        let read = tokio::task::spawn_blocking(move || {
            let file = std::fs::File::open(&path)?;
            audit_trail::scan(std::io::BufReader::new(file), &who)
        })
        .await
        .map_err(|e| ProviderError::Transient {
            provider: PROVIDER,
            message: format!("reading the audit log was interrupted: {e}"),
        })?;
        read.map_err(|e| ProviderError::Config {
            provider: PROVIDER,
            message: format!("audit_log {}: {e}", log.display()),
        })
    }

    pub(crate) async fn resolve_tokens(
        &self,
        identity: &Identity,
        own_entity_ids: &BTreeSet<String>,
    ) -> Result<TokenScan, ProviderError> {
        let cfg = &self.config;
        let is_persons = |t: &TokenInfo| {
            own_entity_ids.contains(&t.entity_id) || owned_by(cfg, identity, &t.meta)
        };
        // The first listing: refused, every token of the person's is unknown (a gap).
        let listed = match self.accessors().await {
            Ok(a) => a,
            Err(e) if e.is_refused() => {
                return Ok(TokenScan {
                    gaps: vec![refused_listing(kinds::TOKEN, "auth/token/accessors", &e)],
                    ..TokenScan::default()
                })
            }
            Err(e) => return Err(e.into()),
        };
        let Some(log) = cfg.audit_log.as_deref() else {
            let (matches, _) = self
                .scan_accessors(Some(listed), |t| {
                    if is_persons(t) {
                        Keep::Match
                    } else {
                        Keep::Drop
                    }
                })
                .await?;
            return Ok(TokenScan {
                tokens: matches
                    .into_iter()
                    .map(|info| PersonToken {
                        info,
                        created: None,
                    })
                    .collect(),
                ..TokenScan::default()
            });
        };

        let mut scan = TokenScan::default();
        // Round one: what the person's entities created; candidates are kept during the one
        // full scan every resolution makes anyway.
        let mut trail = self
            .read_trail(
                log,
                Requesters {
                    entity_ids: own_entity_ids.clone(),
                    accessor_hmacs: BTreeSet::new(),
                },
            )
            .await?;
        let (matches, mut candidates) = self
            .scan_accessors(Some(listed), |t| {
                if is_persons(t) {
                    Keep::Match
                } else if trail.created_near(t.creation_time) {
                    Keep::Candidate
                } else {
                    Keep::Drop
                }
            })
            .await?;
        let mut known: BTreeSet<String> = matches.iter().map(|t| t.accessor.clone()).collect();
        // Entity-less tokens of the person request as themselves: their HMACs find their
        // creations in the next round.
        let mut next_requesters = self.hash_accessors(entity_less(&matches)).await?;
        scan.tokens
            .extend(matches.into_iter().map(|info| PersonToken {
                info,
                created: None,
            }));

        for round in 1..=MAX_AUDIT_ROUNDS {
            scan.leases.append(&mut trail.leases);
            if trail.unreadable_lines > 0 {
                scan.warnings.push(format!(
                    "audit log {}: {} lines were not audit entries and were skipped",
                    log.display(),
                    trail.unreadable_lines
                ));
            }
            // Which candidate is which creation: compare HMACs.
            let wanted: BTreeMap<&str, &CreatedToken> = trail
                .created
                .iter()
                .map(|c| (c.accessor_hmac.as_str(), c))
                .collect();
            let fresh: Vec<TokenInfo> = std::mem::take(&mut candidates)
                .into_iter()
                .filter(|t| !known.contains(&t.accessor))
                .collect();
            let hashes = self
                .hash_accessors(fresh.iter().map(|t| t.accessor.clone()).collect())
                .await?;
            let mut by_accessor: BTreeMap<String, TokenInfo> =
                fresh.into_iter().map(|t| (t.accessor.clone(), t)).collect();
            for (hmac, accessor) in hashes {
                if let (Some(created), Some(info)) =
                    (wanted.get(hmac.as_str()), by_accessor.remove(&accessor))
                {
                    known.insert(accessor);
                    next_requesters.insert(hmac, info.accessor.clone());
                    scan.tokens.push(PersonToken {
                        info,
                        created: Some((*created).clone()),
                    });
                }
            }
            if next_requesters.is_empty() || round == MAX_AUDIT_ROUNDS {
                break;
            }
            // Next round: what the tokens found so far (without an entity) created.
            trail = self
                .read_trail(
                    log,
                    Requesters {
                        entity_ids: BTreeSet::new(),
                        accessor_hmacs: std::mem::take(&mut next_requesters).into_keys().collect(),
                    },
                )
                .await?;
            if trail.created.is_empty() {
                scan.leases.append(&mut trail.leases);
                break;
            }
            let known_ref = &known;
            let trail_ref = &trail;
            (_, candidates) = self
                .scan_accessors(None, |t| {
                    if !known_ref.contains(&t.accessor) && trail_ref.created_near(t.creation_time) {
                        Keep::Candidate
                    } else {
                        Keep::Drop
                    }
                })
                .await?;
        }
        scan.warnings.dedup();
        Ok(scan)
    }
}

/// Accessors of the tokens without an entity (they appear in the audit log by accessor only).
fn entity_less(tokens: &[TokenInfo]) -> Vec<String> {
    tokens
        .iter()
        .filter(|t| t.entity_id.is_empty())
        .map(|t| t.accessor.clone())
        .collect()
}
