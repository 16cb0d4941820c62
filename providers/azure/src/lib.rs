//! Closeout's provider for Azure: Entra ID (Microsoft Graph), RBAC and Key Vault.
//!
//! Work in progress (issue 4). What is here is the pure core every later part builds on:
//!
//! - [`rbac`]: role definitions and assignments as ARM returns them; operation matching with
//!   wildcards, `actions` minus `notActions` and `dataActions` minus `notDataActions` per
//!   permission block; assignments applying down the scope tree.
//! - [`condition`]: the role-assignment conditions Closeout evaluates (which roles, to which
//!   principals, a role-assignment writer may assign); anything else counts as allowing.
//! - [`keyvault`]: every way a person reaches a vault's secrets, keys and certificates, directly
//!   (access policies, data roles) or indirectly (the right to add an access policy, or to
//!   assign oneself a data role), each with the rule that makes it.
//!
//! - [`http`]: typed ARM and Graph calls with `azure_identity` tokens, paging and throttling.
//! - [`arm`]: the scope tree, role definitions, the assignments reaching a user and the vaults,
//!   turned into every path to each vault.
//! - [`directory`]: the person's Entra user, groups (transitively) and owned applications and
//!   service principals with their credentials.
//!
//! - [`data_plane`]: the Key Vault data plane on the Azure SDK crates: list secrets, keys and
//!   certificates with their versions, rotate them, disable old versions, publish a value.
//!
//! Not yet built: resolution into findings, actions, verification, registration in the
//! orchestrator.

pub mod arm;
pub mod condition;
pub mod data_plane;
pub mod directory;
pub mod http;
pub mod keyvault;
pub mod rbac;

/// The provider's name in findings, playbooks and configuration.
pub const PROVIDER: &str = "azure";
