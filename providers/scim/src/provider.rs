//! [`ScimProvider`]: resolution across the configured apps, actions, live state, and the
//! [`Provider`] impl.

use crate::app::{literal, App, CallError, Versioned};
use crate::capabilities::{gap_kinds, kinds, CAPABILITIES, PROVIDER};
use crate::config::{LeaverMode, MatchAttribute, MatchValue, ScimConfig, ScimError};
use closeout_contract::{
    ActionOutcome, ActionRequest, CallGate, Capabilities, Entitlement, Finding, Gap, Health,
    Holder, Identity, Limits, Path, ProbeOutcome, Provider, ProviderError, Relation, Resolution,
    ResolveContext, State, UnclaimedAccount,
};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::future::Future;
use tracing::Instrument;

const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// The SCIM provider: every configured downstream app.
pub struct ScimProvider {
    apps: Vec<App>,
    gate: CallGate,
}

impl std::fmt::Debug for ScimProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScimProvider")
            .field("apps", &self.apps.iter().map(App::name).collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

fn permanent(message: impl Into<String>) -> ProviderError {
    ProviderError::Permanent {
        provider: PROVIDER,
        message: message.into(),
    }
}

fn need<'a>(f: &'a Finding, key: &str) -> Result<&'a str, ProviderError> {
    f.attr(key)
        .ok_or_else(|| permanent(format!("finding {} has no attribute {key}", f.id)))
}

/// The identity's value in the form an app matches on.
fn identity_value(identity: &Identity, form: MatchValue) -> Option<String> {
    match form {
        MatchValue::Id => Some(identity.id.clone()),
        MatchValue::Email => Some(identity.email.clone()),
        MatchValue::EmailLocalPart => identity.email_local_part(),
    }
    .filter(|v| !v.trim().is_empty())
}

/// Whether a User resource carries `value` in the app's match attribute (the server's filter
/// is not trusted to have applied it exactly).
fn user_matches(user: &Value, attr: MatchAttribute, value: &str) -> bool {
    match attr {
        MatchAttribute::ExternalId => user["externalId"].as_str() == Some(value),
        MatchAttribute::UserName => user["userName"]
            .as_str()
            .is_some_and(|u| u.eq_ignore_ascii_case(value)),
        MatchAttribute::Email => user["emails"].as_array().is_some_and(|es| {
            es.iter().any(|e| {
                e["value"]
                    .as_str()
                    .is_some_and(|v| v.eq_ignore_ascii_case(value))
            })
        }),
    }
}

fn has_member(group: &Value, user_id: &str) -> bool {
    group["members"]
        .as_array()
        .is_some_and(|ms| ms.iter().any(|m| m["value"].as_str() == Some(user_id)))
}

/// A filter the app did not accept: fall back to listing everything.
fn filter_refused(e: &CallError) -> bool {
    matches!(e.status, Some(400) | Some(403) | Some(501))
}

fn attrs<const N: usize>(pairs: [(&str, String); N]) -> BTreeMap<String, String> {
    pairs
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}

fn account_path(app: &str, user_name: &str) -> Path {
    Path::new().then("account", format!("app {app} user {user_name}"))
}

impl ScimProvider {
    /// Read every app's token and build the HTTP clients. No call is made.
    pub async fn connect(config: ScimConfig) -> Result<ScimProvider, ScimError> {
        config.validate()?;
        let gate = CallGate::named(
            "scim",
            Limits::configured(config.max_in_flight, config.requests_per_second),
        );
        let apps = config
            .apps
            .iter()
            .cloned()
            .map(|a| App::new(a, gate.clone(), config.retry))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ScimProvider { apps, gate })
    }

    fn app(&self, name: &str) -> Result<&App, ProviderError> {
        self.apps
            .iter()
            .find(|a| a.name() == name)
            .ok_or_else(|| ProviderError::Config {
                provider: PROVIDER,
                message: format!("no SCIM app named {name} is configured"),
            })
    }

    /// The person's User in one app; `Ok(None)` when none. Filters on the match attribute,
    /// or lists every User when the app refuses the filter.
    async fn find_user(
        &self,
        app: &App,
        identity: &Identity,
    ) -> Result<Option<Value>, ProviderError> {
        let attr = app.config.match_attribute;
        let Some(value) = identity_value(identity, app.config.value_form()) else {
            return Ok(None);
        };
        let filter = format!("{} eq {}", attr.filter_path(), literal(&value));
        let listed = match app.list("/Users", Some(&filter)).await {
            Ok(l) => l,
            Err(e) if filter_refused(&e) => app.list("/Users", None).await?,
            Err(e) => return Err(e.into()),
        };
        let mut found: Vec<Value> = listed
            .into_iter()
            .filter(|u| user_matches(u, attr, &value))
            .collect();
        match found.len() {
            0 => Ok(None),
            1 => Ok(found.pop()),
            n => Err(permanent(format!(
                "app {}: {n} Users have {} = {value}: correlation is ambiguous",
                app.name(),
                attr.filter_path()
            ))),
        }
    }

    /// The Groups the user is a direct member of: filter `members.value`, else every Group.
    async fn groups_of(&self, app: &App, user_id: &str) -> Result<Vec<Value>, ProviderError> {
        let filter = format!("members.value eq {}", literal(user_id));
        let listed = match app.list("/Groups", Some(&filter)).await {
            Ok(l) => l,
            Err(e) if filter_refused(&e) => app.list("/Groups", None).await?,
            Err(e) => return Err(e.into()),
        };
        Ok(listed
            .into_iter()
            .filter(|g| has_member(g, user_id))
            .collect())
    }

    async fn resolve_app(
        &self,
        app: &App,
        identity: &Identity,
        res: &mut Resolution,
    ) -> Result<(), ProviderError> {
        let Some(user) = self.find_user(app, identity).await? else {
            return Ok(());
        };
        let name = app.name();
        let uid = user["id"].as_str().unwrap_or_default().to_string();
        if uid.is_empty() {
            return Err(permanent(format!("app {name}: a User without an id")));
        }
        let user_name = user["userName"].as_str().unwrap_or(&uid).to_string();
        let active = user["active"].as_bool().unwrap_or(true);
        res.accounts.push(closeout_contract::Account {
            provider: PROVIDER.into(),
            resource: format!("{name}/{uid}"),
            display: format!("user {user_name} in app {name}"),
            matched_by: format!("{} of app {name}", app.config.match_attribute.filter_path()),
        });
        let base = account_path(name, &user_name);
        res.findings.push(Finding {
            id: format!("{PROVIDER}:{}:{name}/{uid}", kinds::APP_ACCOUNT),
            provider: PROVIDER.into(),
            kind: kinds::APP_ACCOUNT.into(),
            relation: Relation::Owns,
            holder: Holder::Account,
            resource: uid.clone(),
            display: format!("user {user_name} in app {name}"),
            state: if active {
                State::Active
            } else {
                State::Disabled
            },
            paths: vec![base.clone()],
            attributes: attrs([
                ("app", name.to_string()),
                ("user_id", uid.clone()),
                ("user_name", user_name.clone()),
                ("leaver", format!("{:?}", app.config.leaver).to_lowercase()),
            ]),
        });
        for g in self.groups_of(app, &uid).await? {
            let gid = g["id"].as_str().unwrap_or_default().to_string();
            let display = g["displayName"].as_str().unwrap_or(&gid).to_string();
            res.findings.push(Finding {
                id: format!(
                    "{PROVIDER}:{}:{name}/{uid}/{gid}",
                    kinds::APP_GROUP_MEMBERSHIP
                ),
                provider: PROVIDER.into(),
                kind: kinds::APP_GROUP_MEMBERSHIP.into(),
                relation: Relation::MemberOf,
                holder: Holder::Account,
                resource: gid.clone(),
                display: format!("membership of {user_name} in group {display} of app {name}"),
                state: State::Active,
                paths: vec![base.then("member-of", format!("group {display}"))],
                attributes: attrs([
                    ("app", name.to_string()),
                    ("user_id", uid.clone()),
                    ("group_id", gid),
                    ("group", display),
                ]),
            });
        }
        Ok(())
    }

    async fn resolve_impl(&self, ctx: &ResolveContext) -> Result<Resolution, ProviderError> {
        let mut res = Resolution::default();
        for app in &self.apps {
            let mut part = Resolution::default();
            match self.resolve_app(app, &ctx.identity, &mut part).await {
                Ok(()) => {
                    res.accounts.extend(part.accounts);
                    res.findings.extend(part.findings);
                }
                // One app that cannot be read leaves that app unknown (an open gap), not the rest.
                Err(e) => res.gaps.push(Gap {
                    provider: PROVIDER.into(),
                    kind: gap_kinds::APP.into(),
                    resource: app.name().to_string(),
                    reason: e.to_string(),
                    paths: Vec::new(),
                }),
            }
        }
        res.normalize();
        Ok(res)
    }

    async fn user_of(
        &self,
        f: &Finding,
    ) -> Result<(&App, String, Option<Versioned>), ProviderError> {
        let app = self.app(need(f, "app")?)?;
        let uid = need(f, "user_id")?.to_string();
        let user = app
            .get(&format!("/Users/{}", urlencoding::encode(&uid)))
            .await?;
        Ok((app, uid, user))
    }

    async fn execute_impl(&self, a: &ActionRequest) -> Result<ActionOutcome, ProviderError> {
        let span = tracing::info_span!("scim.execute", finding = %a.finding.id, verb = %a.verb);
        self.execute_inner(a).instrument(span).await
    }

    async fn execute_inner(&self, a: &ActionRequest) -> Result<ActionOutcome, ProviderError> {
        let f = &a.finding;
        match (f.kind.as_str(), a.verb.as_str()) {
            (kinds::APP_ACCOUNT, verb @ ("disable" | "remove")) => {
                let (app, uid, user) = self.user_of(f).await?;
                let Some(user) = user else {
                    return Ok(ActionOutcome::already(
                        State::Deleted,
                        format!("{} is gone", f.display),
                    ));
                };
                let path = format!("/Users/{}", urlencoding::encode(&uid));
                if verb == "remove" || app.config.leaver == LeaverMode::Delete {
                    match app.call("DELETE", &path, None, user.etag.as_deref()).await {
                        Ok(_) => {}
                        Err(e) if e.is_not_found() => {
                            return Ok(ActionOutcome::already(
                                State::Deleted,
                                format!("{} is gone", f.display),
                            ))
                        }
                        Err(e) => return Err(e.into()),
                    }
                    return Ok(ActionOutcome::done(
                        State::Deleted,
                        format!("deleted {}", f.display),
                    ));
                }
                if user.body["active"].as_bool() == Some(false) {
                    return Ok(ActionOutcome::already(
                        State::Disabled,
                        format!("{} already inactive", f.display),
                    ));
                }
                let body = json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "active", "value": false}]});
                app.call("PATCH", &path, Some(&body), user.etag.as_deref())
                    .await?;
                Ok(ActionOutcome::done(
                    State::Disabled,
                    format!("set {} inactive", f.display),
                ))
            }
            (kinds::APP_GROUP_MEMBERSHIP, verb @ ("remove" | "grant")) => {
                let app = self.app(need(f, "app")?)?;
                let uid = need(f, "user_id")?;
                let gid = need(f, "group_id")?;
                let path = format!("/Groups/{}", urlencoding::encode(gid));
                let group = app.get(&path).await?;
                let grant = verb == "grant";
                let Some(group) = group else {
                    if grant {
                        return Err(permanent(format!(
                            "app {}: group {gid} does not exist",
                            app.name()
                        )));
                    }
                    return Ok(ActionOutcome::already(
                        State::Deleted,
                        format!("{}: the group is gone", f.display),
                    ));
                };
                let held = has_member(&group.body, uid);
                if held == grant {
                    let state = if grant { State::Active } else { State::Deleted };
                    return Ok(ActionOutcome::already(
                        state,
                        format!(
                            "{} already {}",
                            f.display,
                            if grant { "held" } else { "removed" }
                        ),
                    ));
                }
                let op = if grant {
                    json!({"op": "add", "path": "members", "value": [{"value": uid}]})
                } else {
                    json!({"op": "remove", "path": format!("members[value eq {}]", literal(uid))})
                };
                let body = json!({"schemas": [PATCH_OP], "Operations": [op]});
                app.call("PATCH", &path, Some(&body), group.etag.as_deref())
                    .await?;
                Ok(if grant {
                    ActionOutcome::done(State::Active, format!("granted {}", f.display))
                } else {
                    ActionOutcome::done(State::Deleted, format!("removed {}", f.display))
                })
            }
            (_, verb) => Err(ProviderError::Unsupported {
                provider: PROVIDER,
                message: format!("{verb} on a {} finding", f.kind),
            }),
        }
    }

    async fn live_state_impl(&self, f: &Finding) -> Result<State, ProviderError> {
        let (app, uid, user) = self.user_of(f).await?;
        let Some(user) = user else {
            return Ok(State::Deleted);
        };
        match f.kind.as_str() {
            kinds::APP_ACCOUNT => Ok(if user.body["active"].as_bool() == Some(false) {
                State::Disabled
            } else {
                State::Active
            }),
            kinds::APP_GROUP_MEMBERSHIP => {
                let gid = need(f, "group_id")?;
                let group = app
                    .get(&format!("/Groups/{}", urlencoding::encode(gid)))
                    .await?;
                Ok(match group {
                    Some(g) if has_member(&g.body, &uid) => State::Active,
                    _ => State::Deleted,
                })
            }
            _ => Err(permanent(format!("no live state for a {} finding", f.kind))),
        }
    }

    /// Every User of every app that none of `identities` matches by the app's attribute.
    async fn unclaimed_impl(
        &self,
        identities: &[Identity],
    ) -> Result<Vec<UnclaimedAccount>, ProviderError> {
        let mut out = Vec::new();
        for app in &self.apps {
            let attr = app.config.match_attribute;
            let form = app.config.value_form();
            for u in app.list("/Users", None).await? {
                let claimed = identities
                    .iter()
                    .any(|i| identity_value(i, form).is_some_and(|v| user_matches(&u, attr, &v)));
                if claimed {
                    continue;
                }
                let id = u["id"].as_str().unwrap_or_default();
                let name = u["userName"].as_str().unwrap_or(id);
                out.push(UnclaimedAccount {
                    provider: PROVIDER.into(),
                    resource: format!("{}/{id}", app.name()),
                    display: format!("user {name} in app {}", app.name()),
                    reason: format!(
                        "no active identity matches its {} in app {}",
                        attr.filter_path(),
                        app.name()
                    ),
                    enabled: u["active"].as_bool().unwrap_or(true),
                });
            }
        }
        Ok(out)
    }

    async fn health_impl(&self) -> Result<Health, ProviderError> {
        let mut names = Vec::new();
        for app in &self.apps {
            app.call("GET", "/Users?startIndex=1&count=1", None, None)
                .await?;
            names.push(app.name().to_string());
        }
        Ok(Health {
            principal: format!("bearer tokens of apps {}", names.join(", ")),
            missing: Vec::new(),
            unchecked: Vec::new(),
        })
    }

    async fn grant_finding_impl(
        &self,
        ctx: &ResolveContext,
        e: &Entitlement,
    ) -> Result<Finding, ProviderError> {
        let config = |message: String| ProviderError::Config {
            provider: PROVIDER,
            message,
        };
        let (app_name, group_name) = e
            .target
            .split_once('/')
            .ok_or_else(|| config(format!("SCIM group {} is not APP/GROUP", e.target)))?;
        let app = self.app(app_name)?;
        let user = self.find_user(app, &ctx.identity).await?.ok_or_else(|| {
            config(format!(
                "identity {} has no user in app {app_name}",
                ctx.identity.id
            ))
        })?;
        let filter = format!("displayName eq {}", literal(group_name));
        let groups = match app.list("/Groups", Some(&filter)).await {
            Ok(l) => l,
            Err(err) if filter_refused(&err) => app.list("/Groups", None).await?,
            Err(err) => return Err(err.into()),
        };
        let group = groups
            .into_iter()
            .find(|g| g["displayName"].as_str() == Some(group_name))
            .ok_or_else(|| config(format!("app {app_name} has no group {group_name}")))?;
        let uid = user["id"].as_str().unwrap_or_default().to_string();
        let user_name = user["userName"].as_str().unwrap_or(&uid).to_string();
        let gid = group["id"].as_str().unwrap_or_default().to_string();
        Ok(Finding {
            id: format!(
                "{PROVIDER}:{}:{app_name}/{uid}/{gid}",
                kinds::APP_GROUP_MEMBERSHIP
            ),
            provider: PROVIDER.into(),
            kind: kinds::APP_GROUP_MEMBERSHIP.into(),
            relation: Relation::MemberOf,
            holder: Holder::Account,
            resource: gid.clone(),
            display: format!("membership of {user_name} in group {group_name} of app {app_name}"),
            state: State::Deleted,
            paths: vec![
                account_path(app_name, &user_name).then("member-of", format!("group {group_name}"))
            ],
            attributes: attrs([
                ("app", app_name.to_string()),
                ("user_id", uid),
                ("group_id", gid),
                ("group", group_name.to_string()),
            ]),
        })
    }
}

impl Provider for ScimProvider {
    type Config = ScimConfig;
    const CAPABILITIES: &'static Capabilities = &CAPABILITIES;

    fn connect(config: ScimConfig) -> impl Future<Output = Result<ScimProvider, ScimError>> + Send {
        ScimProvider::connect(config)
    }

    fn limits(&self) -> Limits {
        self.gate.limits()
    }

    fn health(
        &self,
        _needs: &[&'static str],
    ) -> impl Future<Output = Result<Health, ProviderError>> + Send {
        Box::pin(self.health_impl())
    }

    fn resolve(
        &self,
        ctx: &ResolveContext,
    ) -> impl Future<Output = Result<Resolution, ProviderError>> + Send {
        Box::pin(self.resolve_impl(ctx))
    }

    fn execute(
        &self,
        action: &ActionRequest,
    ) -> impl Future<Output = Result<ActionOutcome, ProviderError>> + Send {
        Box::pin(self.execute_impl(action))
    }

    fn live_state(
        &self,
        finding: &Finding,
        _ctx: &ResolveContext,
    ) -> impl Future<Output = Result<State, ProviderError>> + Send {
        Box::pin(self.live_state_impl(finding))
    }

    fn probe(
        &self,
        _finding: &Finding,
    ) -> impl Future<Output = Result<Option<ProbeOutcome>, ProviderError>> + Send {
        std::future::ready(Ok(None))
    }

    fn entitlement(&self, f: &Finding) -> Option<Entitlement> {
        if f.kind != kinds::APP_GROUP_MEMBERSHIP {
            return None;
        }
        let target = format!("{}/{}", f.attr("app")?, f.attr("group")?);
        Some(Entitlement::new(
            PROVIDER,
            kinds::APP_GROUP_MEMBERSHIP,
            target,
        ))
    }

    fn grant_finding(
        &self,
        ctx: &ResolveContext,
        entitlement: &Entitlement,
    ) -> impl Future<Output = Result<Finding, ProviderError>> + Send {
        Box::pin(self.grant_finding_impl(ctx, entitlement))
    }

    fn unclaimed_accounts(
        &self,
        identities: &[Identity],
    ) -> impl Future<Output = Result<Vec<UnclaimedAccount>, ProviderError>> + Send {
        Box::pin(self.unclaimed_impl(identities))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_match_by_the_apps_attribute() {
        let u = json!({"id": "1", "userName": "Alice", "externalId": "E1",
                       "emails": [{"value": "alice@example.com"}]});
        assert!(user_matches(&u, MatchAttribute::ExternalId, "E1"));
        assert!(!user_matches(&u, MatchAttribute::ExternalId, "e1"));
        assert!(user_matches(&u, MatchAttribute::UserName, "alice"));
        assert!(user_matches(&u, MatchAttribute::Email, "ALICE@example.com"));
        assert!(has_member(&json!({"members": [{"value": "1"}]}), "1"));
    }
}
