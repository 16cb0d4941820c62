//! A client of the Azure test double, for the provider's integration tests.

use closeout_azure::http::{AzureHttp, Endpoints};
use closeout_azure_double::{AzureDouble, Config, DEFAULT_CLIENT_ID, DEFAULT_TENANT_ID};
use closeout_contract::{CallGate, Limits};

/// A double with small pages, so every list is paged.
pub async fn double() -> AzureDouble {
    AzureDouble::start(Config {
        page_size: 2,
        ..Config::default()
    })
    .await
    .expect("the Azure double starts")
}

/// The provider's HTTP layer pointed at `double`, authenticating with `secret`.
pub fn client(double: &AzureDouble, secret: &str) -> AzureHttp {
    AzureHttp::new(
        DEFAULT_TENANT_ID,
        DEFAULT_CLIENT_ID,
        secret.to_string().into(),
        Endpoints {
            authority_host: double.base_url(),
            arm: double.base_url(),
            graph: double.base_url(),
            ..Endpoints::default()
        },
        Some(double.ca_pem()),
        CallGate::new(Limits {
            max_in_flight: 4,
            requests_per_second: 100.0,
            burst: 10,
        }),
    )
    .expect("client")
}
