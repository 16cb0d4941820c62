//! The application registrations and service principals made for a service identity of the
//! source (`Provider::nhi_findings`): a joiner records the person the source names as the
//! service's owner as an owner of each, so a later leaver of that person finds and hands them
//! over.
//!
//! An application or service principal is the service identity's when its `displayName` equals
//! the identity's id, email, or the email's local part (as IAM user names are matched on AWS).

use crate::client::AzureProvider;
use crate::directory::odata_literal;
use crate::entra::OwnedObject;
use crate::findings::owned_object_finding;
use crate::http::Api;
use closeout_contract::{Finding, Identity, ProviderError, ResolveContext};
use std::collections::BTreeSet;

/// The Graph collections searched, each with the `@odata.type` its items have (a list of one
/// collection does not repeat it on each item).
const COLLECTIONS: [(&str, &str); 2] = [
    ("applications", "#microsoft.graph.application"),
    ("servicePrincipals", "#microsoft.graph.servicePrincipal"),
];

/// The display names that name the service identity, without repeats or blanks (Graph
/// compares `displayName` case-insensitively, so neither do we).
pub(crate) fn candidate_names(identity: &Identity) -> Vec<String> {
    let local = identity.email_local_part().unwrap_or_default();
    let mut seen = BTreeSet::new();
    [
        identity.id.as_str(),
        identity.email.as_str(),
        local.as_str(),
    ]
    .into_iter()
    .map(str::trim)
    .filter(|n| !n.is_empty() && seen.insert(n.to_ascii_lowercase()))
    .map(String::from)
    .collect()
}

impl AzureProvider {
    /// One filtered Graph query per candidate name and collection (Graph filters
    /// `displayName` server-side; nothing is listed in full).
    pub(crate) async fn nhi_findings_impl(
        &self,
        ctx: &ResolveContext,
    ) -> Result<Vec<Finding>, ProviderError> {
        let names = candidate_names(&ctx.identity);
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for (collection, odata_type) in COLLECTIONS {
            for name in &names {
                let path = format!(
                    "/v1.0/{collection}?$filter=displayName%20eq%20'{}'&$select=id,appId,displayName",
                    odata_literal(name)
                );
                let found: Vec<OwnedObject> = self.http.list(Api::Graph, &path).await?;
                for mut object in found {
                    if seen.insert(object.id.clone()) {
                        object.odata_type = odata_type.to_string();
                        out.push(owned_object_finding(&object, None));
                    }
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use closeout_contract::{IdentityKind, IdentityStatus};

    fn service(id: &str, email: &str) -> Identity {
        Identity {
            id: id.into(),
            email: email.into(),
            name: id.into(),
            kind: IdentityKind::Service,
            status: IdentityStatus::Active,
            manager: Some("E2003".into()),
            department: None,
            role: None,
            location: None,
            employment_type: None,
            tags: Default::default(),
        }
    }

    #[test]
    fn names_are_the_id_the_email_and_its_local_part_once_each() {
        assert_eq!(
            candidate_names(&service("S3001", "svc-etl@example.com")),
            ["S3001", "svc-etl@example.com", "svc-etl"]
        );
        assert_eq!(candidate_names(&service("svc-etl", "")), ["svc-etl"]);
        assert_eq!(
            candidate_names(&service("SVC-ETL", "svc-etl@example.com")),
            ["SVC-ETL", "svc-etl@example.com"]
        );
    }
}
