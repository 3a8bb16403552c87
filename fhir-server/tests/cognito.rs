//! Real ID and access tokens from a Cognito user pool (moto's, started by `scripts/test`), with a
//! group and a tenant attribute, accepted by a server in `jwt` mode that fetches the pool's JWKS.

mod common;

use base64::Engine;
use common::TestServer;
use fhir_server::config::{AuthConfig, AuthMode};
use serde_json::{json, Value};

/// One call of the Cognito user pool API (JSON 1.1; moto does not check signatures).
async fn cognito(client: &reqwest::Client, endpoint: &str, action: &str, body: Value) -> Value {
    let response = client
        .post(endpoint)
        .header("content-type", "application/x-amz-json-1.1")
        .header("x-amz-target", format!("AWSCognitoIdentityProviderService.{action}"))
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    assert!(status.is_success(), "{action}: {status} {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

#[tokio::test]
async fn tokens_from_a_cognito_user_pool_are_accepted() {
    let endpoint = std::env::var("FHIR_TEST_AWS_ENDPOINT").expect("FHIR_TEST_AWS_ENDPOINT is not set: run the tests with scripts/test");
    let client = reqwest::Client::new();
    let call = |action: &'static str, body: Value| cognito(&client, &endpoint, action, body);
    let schema = json!([{ "Name": "tenantId", "AttributeDataType": "String", "Mutable": true }]);
    let pool = call("CreateUserPool", json!({ "PoolName": "fhir-users", "Schema": schema })).await["UserPool"]["Id"].as_str().unwrap().to_string();
    let app = call("CreateUserPoolClient", json!({ "UserPoolId": pool, "ClientName": "fhir-app", "ExplicitAuthFlows": ["ADMIN_USER_PASSWORD_AUTH"] })).await;
    let client_id = app["UserPoolClient"]["ClientId"].as_str().unwrap().to_string();
    call("CreateGroup", json!({ "UserPoolId": pool, "GroupName": "practitioner" })).await;
    let attributes = json!([{ "Name": "custom:tenantId", "Value": "clinic-1" }]);
    call("AdminCreateUser", json!({ "UserPoolId": pool, "Username": "dr-who", "UserAttributes": attributes, "MessageAction": "SUPPRESS" })).await;
    call("AdminSetUserPassword", json!({ "UserPoolId": pool, "Username": "dr-who", "Password": "Sonic-Screwdriver-1", "Permanent": true })).await;
    call("AdminAddUserToGroup", json!({ "UserPoolId": pool, "Username": "dr-who", "GroupName": "practitioner" })).await;
    let parameters = json!({ "USERNAME": "dr-who", "PASSWORD": "Sonic-Screwdriver-1" });
    let signed_in = call("AdminInitiateAuth", json!({ "UserPoolId": pool, "ClientId": client_id, "AuthFlow": "ADMIN_USER_PASSWORD_AUTH", "AuthParameters": parameters })).await;
    let id_token = signed_in["AuthenticationResult"]["IdToken"].as_str().unwrap().to_string();
    let access_token = signed_in["AuthenticationResult"]["AccessToken"].as_str().unwrap().to_string();
    let claims = claims_of(&id_token);
    assert_eq!(claims["cognito:groups"], json!(["practitioner"]));
    assert_eq!(claims["custom:tenantId"], "clinic-1");

    // The issuer names AWS; the keys come from the stand-in.
    let auth = AuthConfig {
        mode: AuthMode::Jwt,
        jwks_url: Some(format!("{}/{pool}/.well-known/jwks.json", endpoint.trim_end_matches('/'))),
        issuer: Some(claims["iss"].as_str().unwrap().to_string()),
        audience: Some(client_id),
        ..AuthConfig::default()
    };
    let server = TestServer::start_with(|config| config.auth = auth).await;
    for token in [&id_token, &access_token] {
        let response = server.client.get(server.url("Patient")).bearer_auth(token).send().await.unwrap();
        assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    }
    let forged = format!("{}x", id_token);
    assert_eq!(server.client.get(server.url("Patient")).bearer_auth(forged).send().await.unwrap().status(), 401);
    server.stop().await;
}
