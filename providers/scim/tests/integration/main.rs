//! The SCIM provider against two real downstream apps (`scim2-server`, started by
//! `closeout_testkit::ScimApp`) with different matching attributes and leaver modes, seeded
//! through their SCIM APIs.
//!
//! `cargo test -p closeout-scim --test integration`

mod apps;
