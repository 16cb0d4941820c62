//! Shared harness for the AWS provider's integration tests: a real moto server per test, SDK
//! clients to seed it and read it back, and a sample organisation.
//!
//! moto is found in the Python venv at `CLOSEOUT_VENV` (default: `<workspace>/.venv`). When it
//! cannot be started the test fails with what is missing and how to install it; it never skips.

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use closeout_aws::{AwsConfig, AwsProvider};
use closeout_contract::{Finding, Identity, IdentityKind, IdentityStatus, Resolution};
use serde_json::json;
use std::sync::Once;

pub const CANARY: &str = "canary-7f3e9c";

/// A moto server on a free loopback port (started by the shared testkit, which fails the test
/// with install instructions when moto is missing), killed on drop.
pub struct Moto {
    /// Held for its `Drop`: the server is killed with the handle.
    _server: closeout_testkit::MotoServer,
    pub endpoint: String,
}

impl Moto {
    pub fn start() -> Moto {
        setup_env();
        let server = closeout_testkit::MotoServer::start();
        let endpoint = server.endpoint();
        Moto {
            _server: server,
            endpoint,
        }
    }

    /// A provider pointed at this server (credentials from the environment, set by the harness).
    pub async fn provider(&self) -> AwsProvider {
        self.provider_with(AwsConfig::default()).await
    }

    /// A provider with `config`, pointed at this server unless `config` names another endpoint
    /// (a fault-injecting proxy in front of it).
    pub async fn provider_with(&self, config: AwsConfig) -> AwsProvider {
        AwsProvider::connect(AwsConfig {
            region: Some("us-east-1".into()),
            endpoint_url: config
                .endpoint_url
                .clone()
                .or_else(|| Some(self.endpoint.clone())),
            requests_per_second: Some(1000.0),
            ..config
        })
        .await
        .expect("connect")
    }

    pub async fn clients(&self) -> Clients {
        Clients::new(&self.endpoint).await
    }
}

static ENV: Once = Once::new();

/// Credentials for the SDK's default chain (moto accepts any). Set once, before any test reads
/// the environment.
pub fn setup_env() {
    ENV.call_once(|| {
        std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
        std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    });
}

/// SDK clients used to seed moto and read it back, independent of the provider.
pub struct Clients {
    pub conf: SdkConfig,
    pub iam: aws_sdk_iam::Client,
    pub sm: aws_sdk_secretsmanager::Client,
    pub sts: aws_sdk_sts::Client,
}

impl Clients {
    pub async fn new(endpoint: &str) -> Clients {
        let conf = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(endpoint)
            .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
            .load()
            .await;
        Clients {
            iam: aws_sdk_iam::Client::new(&conf),
            sm: aws_sdk_secretsmanager::Client::new(&conf),
            sts: aws_sdk_sts::Client::new(&conf),
            conf,
        }
    }

    pub async fn account(&self) -> String {
        self.sts
            .get_caller_identity()
            .send()
            .await
            .unwrap()
            .account()
            .unwrap()
            .to_string()
    }

    pub async fn user(&self, name: &str, tags: &[(&str, &str)]) {
        let mut req = self.iam.create_user().user_name(name);
        for (k, v) in tags {
            req = req.tags(
                aws_sdk_iam::types::Tag::builder()
                    .key(*k)
                    .value(*v)
                    .build()
                    .unwrap(),
            );
        }
        req.send().await.unwrap();
    }

    pub async fn role(&self, name: &str, trust: serde_json::Value, tags: &[(&str, &str)]) {
        let mut req = self
            .iam
            .create_role()
            .role_name(name)
            .assume_role_policy_document(trust.to_string());
        for (k, v) in tags {
            req = req.tags(
                aws_sdk_iam::types::Tag::builder()
                    .key(*k)
                    .value(*v)
                    .build()
                    .unwrap(),
            );
        }
        req.send().await.unwrap();
    }

    pub async fn managed_policy(&self, name: &str, doc: serde_json::Value) -> String {
        self.iam
            .create_policy()
            .policy_name(name)
            .policy_document(doc.to_string())
            .send()
            .await
            .unwrap()
            .policy()
            .unwrap()
            .arn()
            .unwrap()
            .to_string()
    }

    /// Returns the ARN.
    pub async fn secret(
        &self,
        name: &str,
        value: &str,
        tags: &[(&str, &str)],
        policy: Option<serde_json::Value>,
    ) -> String {
        let mut req = self.sm.create_secret().name(name).secret_string(value);
        for (k, v) in tags {
            req = req.tags(
                aws_sdk_secretsmanager::types::Tag::builder()
                    .key(*k)
                    .value(*v)
                    .build(),
            );
        }
        let arn = req.send().await.unwrap().arn().unwrap().to_string();
        if let Some(p) = policy {
            self.sm
                .put_resource_policy()
                .secret_id(&arn)
                .resource_policy(p.to_string())
                .send()
                .await
                .unwrap();
        }
        arn
    }

    /// The value of the secret's version with `stage`.
    pub async fn secret_value(&self, secret: &str, stage: &str) -> Option<String> {
        self.sm
            .get_secret_value()
            .secret_id(secret)
            .version_stage(stage)
            .send()
            .await
            .ok()
            .and_then(|o| o.secret_string().map(str::to_string))
    }

    pub async fn key_status(&self, user: &str, key: &str) -> Option<String> {
        self.iam
            .list_access_keys()
            .user_name(user)
            .send()
            .await
            .unwrap()
            .access_key_metadata()
            .iter()
            .find(|k| k.access_key_id() == Some(key))
            .and_then(|k| k.status().map(|s| s.as_str().to_string()))
    }

    pub async fn key_ids(&self, user: &str) -> Vec<String> {
        self.iam
            .list_access_keys()
            .user_name(user)
            .send()
            .await
            .unwrap()
            .access_key_metadata()
            .iter()
            .filter_map(|k| k.access_key_id().map(str::to_string))
            .collect()
    }

    pub async fn user_tags(&self, user: &str) -> Vec<(String, String)> {
        self.iam
            .list_user_tags()
            .user_name(user)
            .send()
            .await
            .unwrap()
            .tags()
            .iter()
            .map(|t| (t.key().to_string(), t.value().to_string()))
            .collect()
    }

    pub async fn role_tags(&self, role: &str) -> Vec<(String, String)> {
        self.iam
            .list_role_tags()
            .role_name(role)
            .send()
            .await
            .unwrap()
            .tags()
            .iter()
            .map(|t| (t.key().to_string(), t.value().to_string()))
            .collect()
    }

    pub async fn has_login_profile(&self, user: &str) -> bool {
        self.iam
            .get_login_profile()
            .user_name(user)
            .send()
            .await
            .is_ok()
    }

    pub async fn groups_of(&self, user: &str) -> Vec<String> {
        self.iam
            .list_groups_for_user()
            .user_name(user)
            .send()
            .await
            .unwrap()
            .groups()
            .iter()
            .map(|g| g.group_name().to_string())
            .collect()
    }

    pub async fn user_inline_policy(&self, user: &str, name: &str) -> Option<String> {
        self.iam
            .get_user_policy()
            .user_name(user)
            .policy_name(name)
            .send()
            .await
            .ok()
            .map(|o| {
                urlencoding::decode(o.policy_document())
                    .map(|s| s.into_owned())
                    .unwrap_or_else(|_| o.policy_document().to_string())
            })
    }

    pub async fn role_inline_policy(&self, role: &str, name: &str) -> Option<String> {
        self.iam
            .get_role_policy()
            .role_name(role)
            .policy_name(name)
            .send()
            .await
            .ok()
            .map(|o| {
                urlencoding::decode(o.policy_document())
                    .map(|s| s.into_owned())
                    .unwrap_or_else(|_| o.policy_document().to_string())
            })
    }
}

pub fn identity(id: &str, email: &str, manager: Option<&str>) -> Identity {
    Identity {
        id: id.into(),
        email: email.into(),
        name: id.into(),
        kind: IdentityKind::Human,
        status: IdentityStatus::Terminated,
        manager: manager.map(str::to_string),
        department: None,
        role: None,
        location: None,
        employment_type: None,
        tags: Default::default(),
    }
}

/// The finding `id` of a resolution; panics naming the ids it has when it is not there.
pub fn find<'a>(r: &'a Resolution, id: &str) -> &'a Finding {
    r.findings.iter().find(|f| f.id == id).unwrap_or_else(|| {
        let ids: Vec<_> = r.findings.iter().map(|f| f.id.as_str()).collect();
        panic!("no finding {id}; have {ids:#?}")
    })
}

pub fn allow(action: &str, resource: &str) -> serde_json::Value {
    json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": action, "Resource": resource}]})
}

pub fn trust(principal: &str) -> serde_json::Value {
    json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": principal}, "Action": "sts:AssumeRole"}]})
}

pub const CERT: &str = "-----BEGIN CERTIFICATE-----
MIIDEzCCAfugAwIBAgIUYN14mV+Nz8GkNucKxNXa1umWo38wDQYJKoZIhvcNAQEL
BQAwGDEWMBQGA1UEAwwNY2xvc2VvdXQtdGVzdDAgFw0yNjExMjgxMDU4MTNaGA8y
MTI2MTEwNDEwNTgxM1owGDEWMBQGA1UEAwwNY2xvc2VvdXQtdGVzdDCCASIwDQYJ
KoZIhvcNAQEBBQADggEPADCCAQoCggEBALiyUktYS89Vws/BrCRf++5RNi0PsADG
EDiv/WLPRmqq8KAZa1YgYdiA1kij9ubGw9XBU5zS66/nR+dUFaHOVps8QQNc1Ncs
dGqt35+IXIKU43/2YStm3BQpwFPJuRgi7UvLRMg9kyV0agdPD9aUw/BO0EtXutDT
ZzDd+4ritXMS6mbYFw/iH+OGX5UqQytE1IbwDP0+DI1H9frUJhL77PxqVQ4TKuwy
0dpWxOGm40M3RAjzWSLAO2z7gIB+Ap5jMcv3y7DHvnG82mSO1j+RTbE9HQ2zt27h
JaC3iPpzsSsiU+htGljnJOFtSYtHR2bJ3H2biWjsIkyNzNRhsFeZ45sCAwEAAaNT
MFEwHQYDVR0OBBYEFPd9QYXn2alTMbdLvIl8kQKqSo3sMB8GA1UdIwQYMBaAFPd9
QYXn2alTMbdLvIl8kQKqSo3sMA8GA1UdEwEB/wQFMAMBAf8wDQYJKoZIhvcNAQEL
BQADggEBAD8ZB12O0scKntYiHsyRUhKMGZWGJrNR8AuOvVaIyhp/gezzEXnYUZWg
d60AArt5cDhoCYaUr3Z0yhDId4wrZYcUjQoja1vaUg7o410hSitpOlsqjHDyUPNh
CjB7Ogd5LpAsLZtv3PAO19IvjqcF5nPG37LwJIJ3GEe/MiLvKRkF4VIzGImxeVdr
En0Ybd7jqXBObxrow2zuSdU+e83CgLDt0iwu7UFlpjGJf+5HsaDenISU3pwfBvum
EzrZZm5vNgIoOvIPmJkxkTg/QfsH9QkysJbwdzjqr7yDQjgQSkdJGl441hWYm2O4
dI5pn+1Z416cb99udrLamwo6SiNDMIE=
-----END CERTIFICATE-----
";

pub const SSH_KEY: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC91cp9rgeIOiPiYIEqsRyKokN4dfx1pbq8b9Dz9EWT+C8ZEpduIBeH8buVCipzjbD0uRK17/p/4OjasEYxa9vpqwQ4OhnNcOs1aLPboSCYSKIYjZzcoEQJDlwZ6y0kUdSFcyaRIx4+0sW+QGOCZEvH2rcW4ORw6/2nA+8r7afsZfufmA7x/dHRp4se5TI1zoOhzgFlxGi9edBvwY/x2NOyaBCNyPDf1nOAY/8NNgWeRD8n+WVSwLTH3+Hfu627T0ZU4ThyyfNcm3iUqG+G5FeGf8K7IEpGZubt6tKsUTsbHVO4STk78jN04sljaZWyW3y6UAA1MZdfyGQHfqRq6gjt test";

/// What [`seed_org`] created.
pub struct Org {
    pub account: String,
    pub alice_keys: Vec<String>,
    pub dave_keys: Vec<String>,
    pub svc_keys: Vec<String>,
    pub mfa_serial: String,
    pub user_read_arn: String,
    pub assume_app_arn: String,
    /// Secret name -> ARN.
    pub secrets: std::collections::BTreeMap<String, String>,
}

/// A sample organisation:
/// - alice (identity E100, alice@example.com; tag identity=E100): login profile, two access keys,
///   an SSH key, a signing certificate, an MFA device, group devs, attached policy user-read,
///   inline policy inline-extra.
/// - dave (colleague, also in devs): login profile, a key.
/// - group devs: attached assume-app (sts:Assume* on role/app-*), inline group-read
///   (secretsmanager:GetSecret* on secret:group-*).
/// - roles: direct-role (trust names alice; reads secret:role-*), app-deploy (trusts the
///   account), ops-admin (trusts the account, nothing allows alice), dave-role (trusts dave),
///   svc-role (owner tag alice@example.com, trusts ec2).
/// - NHI user svc-ci (owner tag E100) with one key.
/// - secrets: owned-secret (owner tag), user-db, group-db, role-db, rp-user (resource policy
///   names alice), rp-role (resource policy names app-deploy), and not reachable: unreachable
///   (owner dave), rp-dave (resource policy names dave), other-db.
pub async fn seed_org(c: &Clients) -> Org {
    let acct = c.account().await;
    c.user("alice", &[("identity", "E100"), ("team", "payments")])
        .await;
    c.user("dave", &[("identity", "E200")]).await;
    c.user("svc-ci", &[("owner", "E100")]).await;
    c.user("svc-other", &[("owner", "E200")]).await;

    c.iam
        .create_login_profile()
        .user_name("alice")
        .password("Initial-passw0rd!")
        .send()
        .await
        .unwrap();
    c.iam
        .create_login_profile()
        .user_name("dave")
        .password("Initial-passw0rd!")
        .send()
        .await
        .unwrap();
    let mut alice_keys = Vec::new();
    for _ in 0..2 {
        let k = c
            .iam
            .create_access_key()
            .user_name("alice")
            .send()
            .await
            .unwrap();
        alice_keys.push(k.access_key().unwrap().access_key_id().to_string());
    }
    alice_keys.sort();
    let dave_key = c
        .iam
        .create_access_key()
        .user_name("dave")
        .send()
        .await
        .unwrap();
    let dave_keys = vec![dave_key.access_key().unwrap().access_key_id().to_string()];
    let svc_key = c
        .iam
        .create_access_key()
        .user_name("svc-ci")
        .send()
        .await
        .unwrap();
    let svc_keys = vec![svc_key.access_key().unwrap().access_key_id().to_string()];
    c.iam
        .upload_ssh_public_key()
        .user_name("alice")
        .ssh_public_key_body(SSH_KEY)
        .send()
        .await
        .unwrap();
    c.iam
        .upload_signing_certificate()
        .user_name("alice")
        .certificate_body(CERT)
        .send()
        .await
        .unwrap();
    let mfa = c
        .iam
        .create_virtual_mfa_device()
        .virtual_mfa_device_name("alice-mfa")
        .send()
        .await
        .unwrap();
    let mfa_serial = mfa
        .virtual_mfa_device()
        .unwrap()
        .serial_number()
        .to_string();
    c.iam
        .enable_mfa_device()
        .user_name("alice")
        .serial_number(&mfa_serial)
        .authentication_code1("123456")
        .authentication_code2("654321")
        .send()
        .await
        .unwrap();

    c.iam
        .create_group()
        .group_name("devs")
        .send()
        .await
        .unwrap();
    for u in ["alice", "dave"] {
        c.iam
            .add_user_to_group()
            .group_name("devs")
            .user_name(u)
            .send()
            .await
            .unwrap();
    }
    let assume_app_arn = c
        .managed_policy(
            "assume-app",
            allow("sts:Assume*", "arn:aws:iam::*:role/app-*"),
        )
        .await;
    c.iam
        .attach_group_policy()
        .group_name("devs")
        .policy_arn(&assume_app_arn)
        .send()
        .await
        .unwrap();
    c.iam
        .put_group_policy()
        .group_name("devs")
        .policy_name("group-read")
        .policy_document(
            allow(
                "secretsmanager:GetSecret*",
                "arn:aws:secretsmanager:us-east-1:*:secret:group-*",
            )
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    let user_read_arn = c
        .managed_policy(
            "user-read",
            allow(
                "secretsmanager:GetSecretValue",
                "arn:aws:secretsmanager:*:*:secret:user-??-??????",
            ),
        )
        .await;
    c.iam
        .attach_user_policy()
        .user_name("alice")
        .policy_arn(&user_read_arn)
        .send()
        .await
        .unwrap();
    c.iam
        .put_user_policy()
        .user_name("alice")
        .policy_name("inline-extra")
        .policy_document(allow("s3:ListBucket", "*").to_string())
        .send()
        .await
        .unwrap();
    // dave can read everything: his reach must never become alice's.
    c.iam
        .put_user_policy()
        .user_name("dave")
        .policy_name("dave-all")
        .policy_document(allow("*", "*").to_string())
        .send()
        .await
        .unwrap();

    let alice_arn = format!("arn:aws:iam::{acct}:user/alice");
    let dave_arn = format!("arn:aws:iam::{acct}:user/dave");
    c.role("direct-role", trust(&alice_arn), &[]).await;
    c.iam
        .put_role_policy()
        .role_name("direct-role")
        .policy_name("role-read")
        .policy_document(
            allow(
                "secretsmanager:*",
                "arn:aws:secretsmanager:*:*:secret:role-*",
            )
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    c.role(
        "app-deploy",
        trust(&format!("arn:aws:iam::{acct}:root")),
        &[],
    )
    .await;
    c.role("ops-admin", trust(&acct), &[]).await;
    c.role("dave-role", trust(&dave_arn), &[]).await;
    c.role(
        "svc-role",
        json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]}),
        &[("owner", "alice@example.com")],
    )
    .await;

    let mut secrets = std::collections::BTreeMap::new();
    let value = |n: &str| format!("{{\"username\":\"{n}\",\"password\":\"{CANARY}-{n}\"}}");
    // JSON secrets are rotated by a named strategy (docs/rotation.md): only the password.
    const TEMPLATE: (&str, &str) = ("closeout:rotation", "template:password");
    let owned = c
        .secret(
            "owned-secret",
            &value("owned"),
            &[("owner", "alice@example.com"), TEMPLATE],
            None,
        )
        .await;
    secrets.insert("owned-secret".to_string(), owned);
    for name in ["user-db", "group-db", "role-db", "other-db"] {
        let arn = c.secret(name, &value(name), &[TEMPLATE], None).await;
        secrets.insert(name.to_string(), arn);
    }
    let rp = |principal: &str| json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": principal}, "Action": "secretsmanager:GetSecretValue", "Resource": "*"}]});
    let arn = c
        .secret(
            "rp-user",
            &format!("{CANARY}-plain-rp-user"),
            &[],
            Some(rp(&alice_arn)),
        )
        .await;
    secrets.insert("rp-user".into(), arn);
    let arn = c
        .secret(
            "rp-role",
            &value("rp-role"),
            &[TEMPLATE],
            Some(rp(&format!("arn:aws:iam::{acct}:role/app-deploy"))),
        )
        .await;
    secrets.insert("rp-role".into(), arn);
    let arn = c
        .secret(
            "unreachable",
            &value("unreachable"),
            &[("owner", "dave@example.com"), TEMPLATE],
            None,
        )
        .await;
    secrets.insert("unreachable".into(), arn);
    let arn = c
        .secret(
            "rp-dave",
            &value("rp-dave"),
            &[TEMPLATE],
            Some(rp(&dave_arn)),
        )
        .await;
    secrets.insert("rp-dave".into(), arn);

    Org {
        account: acct,
        alice_keys,
        dave_keys,
        svc_keys,
        mfa_serial,
        user_read_arn,
        assume_app_arn,
        secrets,
    }
}
