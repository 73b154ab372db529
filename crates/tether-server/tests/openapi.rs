//! `GET /openapi.json` describes the API the server really serves.
//!
//! The routes are read from `src/router.rs` itself, so a route added there
//! without a `#[utoipa::path]` annotation (and an entry in `ApiDoc`) fails
//! here; and the schemas of a few bodies are compared with what the
//! protocol's real types serialize and accept, so a field added to a type
//! (or to its schema-only twin in `tether_protocol::openapi`) without the
//! other fails too.

mod support;

use std::collections::{BTreeSet, HashMap};

use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use support::TestServer;
use tether_core::capability::Operation;
use tether_core::{Capabilities, ErrorCode, ErrorInfo};
use tether_protocol::SseEvent;
use tether_protocol::llm::StartRequest;
use tether_protocol::rest::{AckBody, AppendOp, NewMessage, TokenRequest, UpdateOp};
use tether_protocol::{ErrorBody, Message};
use tether_server::auth::KeyConfig;

/// HTTP methods axum's routing functions are named after.
const METHODS: [&str; 7] = ["get", "post", "put", "patch", "delete", "head", "options"];

/// `(path, method)` of every `.route(...)` in the `router` function of
/// `src`, from the source text: the path literal, then each routing
/// function (`get(`, `.post(`...) inside the call's parentheses.
fn routes_in(src: &str) -> BTreeSet<(String, String)> {
    let start = src.find("fn router(").expect("the router function");
    let body = &src[start..];
    let end = body.find(".fallback(").expect("the router's fallback");
    let body = &body[..end];
    let mut routes = BTreeSet::new();
    let mut rest = body;
    while let Some(at) = rest.find(".route(") {
        let call = &rest[at + ".route(".len()..];
        // The call's argument list, up to its closing parenthesis.
        let mut depth = 1;
        let len = call
            .char_indices()
            .find_map(|(i, c)| {
                match c {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    _ => {}
                }
                (depth == 0).then_some(i)
            })
            .expect("balanced route call");
        let args = &call[..len];
        let path = args
            .split('"')
            .nth(1)
            .expect("a route's path is a string literal");
        let after_path = &args[args.find(',').expect("path, handlers")..];
        let mut found = false;
        for (i, _) in after_path.match_indices('(') {
            let before = &after_path[..i];
            let name_start = before
                .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .map_or(0, |p| p + 1);
            let name = &before[name_start..];
            let preceded_by = before[..name_start].chars().next_back();
            // `get(h)` or `.post(h)`, not a handler path like `rest::delete`.
            if METHODS.contains(&name) && matches!(preceded_by, Some('.' | ',' | ' ' | '\n' | '('))
            {
                routes.insert((path.to_owned(), name.to_owned()));
                found = true;
            }
        }
        assert!(found, "no method found for route {path}: {args}");
        rest = &call[len..];
    }
    routes
}

fn router_routes() -> BTreeSet<(String, String)> {
    let src = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/router.rs"))
        .expect("read router.rs");
    routes_in(&src)
}

#[test]
fn the_route_scan_reads_chained_methods() {
    let src = r#"
        fn router(app: App) -> Router {
            Router::new()
                .route("/a/{x}", get(rest::get).post(rest::delete))
                .route(
                    "/b",
                    delete(llm::cancel),
                )
                .route("/c", get(|| async { "ok" }))
                .fallback(|| async {})
        }
        fn other() { x.route("/not-here", get(y)) }
    "#;
    let found = routes_in(src);
    let expected: BTreeSet<(String, String)> = [
        ("/a/{x}", "get"),
        ("/a/{x}", "post"),
        ("/b", "delete"),
        ("/c", "get"),
    ]
    .into_iter()
    .map(|(p, m)| (p.to_owned(), m.to_owned()))
    .collect();
    assert_eq!(found, expected);
}

async fn fetch_document(server: &TestServer) -> Value {
    let response = reqwest::get(format!("{}/openapi.json", server.base))
        .await
        .expect("GET /openapi.json");
    assert_eq!(response.status(), 200);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    response.json().await.expect("JSON document")
}

/// The document's `(path, method)` pairs.
fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let mut found = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in METHODS {
            if item.get(method).is_some() {
                found.insert((path.clone(), method.to_owned()));
            }
        }
    }
    found
}

#[tokio::test]
async fn every_route_of_the_router_is_documented_and_nothing_else() {
    let server = TestServer::start().await;
    let doc = fetch_document(&server).await;
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "{}",
        doc["openapi"]
    );
    let routes = router_routes();
    assert!(routes.len() >= 20, "the scan found the routes: {routes:?}");
    let documented = documented(&doc);
    let missing: Vec<_> = routes.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "routes in router.rs without an OpenAPI description (add #[utoipa::path] \
         to the handler and list it in ApiDoc): {missing:?}"
    );
    let phantom: Vec<_> = documented.difference(&routes).collect();
    assert!(phantom.is_empty(), "documented but not routed: {phantom:?}");
    // Client generators name methods after operation ids: one each.
    let mut ids = BTreeSet::new();
    for item in doc["paths"].as_object().expect("paths").values() {
        for operation in item.as_object().expect("item").values() {
            let id = operation["operationId"].as_str().expect("operationId");
            assert!(ids.insert(id.to_owned()), "operationId {id} is used twice");
        }
    }
    server.stop().await;
}

/// Every `$ref` in `value`.
fn refs(value: &Value, out: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                if key == "$ref" {
                    out.insert(v.as_str().expect("ref string").to_owned());
                } else {
                    refs(v, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn references_resolve_and_credentials_are_the_servers() {
    let server = TestServer::start().await;
    let doc = fetch_document(&server).await;
    let mut all = BTreeSet::new();
    refs(&doc, &mut all);
    assert!(all.len() > 10, "{all:?}");
    for reference in &all {
        let name = reference
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("unexpected ref {reference}"));
        assert!(
            doc["components"]["schemas"].get(name).is_some(),
            "{reference} does not resolve"
        );
    }

    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["type"], "http");
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    assert_eq!(schemes["basic"]["scheme"], "basic");
    assert_eq!(
        schemes["token"],
        json!({"type": "apiKey", "in": "query", "name": "token", "description": schemes["token"]["description"]})
    );
    assert_eq!(schemes["key"]["in"], "query");
    assert_eq!(schemes["key"]["name"], "key");
    let global = doc["security"].as_array().expect("document-wide security");
    assert_eq!(
        global.len(),
        4,
        "any one of the four credentials: {global:?}"
    );

    let public: BTreeSet<&str> = ["/healthz", "/readyz", "/openapi.json"].into();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("item") {
            let security = operation.get("security").unwrap_or(&doc["security"]);
            for requirement in security.as_array().expect("security list") {
                for scheme in requirement.as_object().expect("requirement").keys() {
                    assert!(
                        schemes.get(scheme).is_some(),
                        "{method} {path}: unknown scheme {scheme}"
                    );
                }
            }
            let no_credential = security
                .as_array()
                .is_some_and(|s| s.iter().any(|r| r == &json!({})));
            let expected = public.contains(path.as_str()) || path == "/ws";
            assert_eq!(no_credential, expected, "{method} {path}: {security}");
            // Everything that takes a credential takes a client id with it.
            if path != "/healthz" && path != "/readyz" && path != "/openapi.json" {
                let names: Vec<&str> = operation["parameters"]
                    .as_array()
                    .map(|ps| ps.iter().filter_map(|p| p["name"].as_str()).collect())
                    .unwrap_or_default();
                assert!(
                    names.contains(&"x-tether-client-id") && names.contains(&"client_id"),
                    "{method} {path}: {names:?}"
                );
            }
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn public_with_keys_while_the_api_is_not() {
    let server = TestServer::start_with(|c| {
        c.dev = false;
        c.cors_origins.clear();
        c.keys = HashMap::from([(
            "app".to_owned(),
            KeyConfig {
                secret: "app-secret-0123456789".into(),
                capabilities: Capabilities::all(),
            },
        )]);
    })
    .await;
    let doc = fetch_document(&server).await;
    let dev = TestServer::start().await;
    assert_eq!(
        doc,
        fetch_document(&dev).await,
        "the same with --dev and with keys"
    );
    let refused = reqwest::get(format!("{}/channels/c/messages", server.base))
        .await
        .expect("GET history");
    assert_eq!(refused.status(), 401, "authentication is on for the API");
    server.stop().await;
    dev.stop().await;
}

fn schema<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["components"]["schemas"]
        .get(name)
        .unwrap_or_else(|| panic!("no schema {name}"))
}

/// The schema `name` describes the object type `T`: its properties are
/// exactly the fields `full` (a value with every field set, as `T`
/// serializes it) has; a required property is one `T` refuses to do
/// without, an optional one it accepts missing; unknown fields are
/// refused by the schema exactly when `T` refuses them.
fn check_object<T: DeserializeOwned>(doc: &Value, name: &str, full: Value) {
    let schema = schema(doc, name);
    let accepts = |v: &Value| serde_json::from_value::<T>(v.clone()).is_ok();
    let full_map = full.as_object().expect("an object");
    assert!(
        accepts(&full),
        "{name}: the sample is not a valid {name}: {full}"
    );
    let properties: BTreeSet<&String> = schema["properties"]
        .as_object()
        .unwrap_or_else(|| panic!("{name}: no properties: {schema}"))
        .keys()
        .collect();
    let fields: BTreeSet<&String> = full_map.keys().collect();
    assert_eq!(
        properties, fields,
        "{name}: schema properties vs. the type's fields"
    );
    let required: BTreeSet<&str> = schema["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for field in fields {
        let mut without = full_map.clone();
        without.remove(field);
        let needed = !accepts(&Value::Object(without));
        assert_eq!(
            required.contains(field.as_str()),
            needed,
            "{name}.{field}: required in the schema iff the type needs it"
        );
    }
    let mut extra = full_map.clone();
    extra.insert("zz_not_a_field".into(), json!(1));
    let refuses_unknown = !accepts(&Value::Object(extra));
    assert_eq!(
        schema["additionalProperties"] == json!(false),
        refuses_unknown,
        "{name}: additionalProperties: false iff the type denies unknown fields"
    );
}

const SERIAL: &str = "1733318400000-0000000000000042";

#[tokio::test]
async fn body_schemas_match_the_protocol_types() {
    let server = TestServer::start().await;
    let doc = fetch_document(&server).await;

    // The publish body: one new message, or an array of them.
    let new_message =
        json!({"id": "m1", "name": "prompt", "data": "hi", "extras": {"role": "user"}});
    check_object::<NewMessage>(&doc, "NewMessage", new_message.clone());
    let one_of = schema(&doc, "PublishBody")["oneOf"]
        .as_array()
        .expect("oneOf")
        .clone();
    let shapes: Vec<Value> = one_of
        .iter()
        .map(|s| json!({"type": s["type"], "ref": s["$ref"], "items": s["items"]["$ref"]}))
        .collect();
    assert!(
        shapes.contains(
            &json!({"type": null, "ref": "#/components/schemas/NewMessage", "items": null})
        ),
        "{shapes:?}"
    );
    assert!(
        shapes.contains(
            &json!({"type": "array", "ref": null, "items": "#/components/schemas/NewMessage"})
        ),
        "{shapes:?}"
    );
    let publish = &doc["paths"]["/channels/{channel}/messages"]["post"];
    assert_eq!(
        publish["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/PublishBody"
    );

    // The error body, and its codes: every one the core defines.
    let error = ErrorBody {
        error: ErrorInfo::new(ErrorCode::Forbidden, "no"),
    };
    check_object::<ErrorBody>(
        &doc,
        "ErrorBody",
        serde_json::to_value(&error).expect("json"),
    );
    check_object::<ErrorInfo>(
        &doc,
        "ErrorInfo",
        serde_json::to_value(&error.error).expect("json"),
    );
    assert_eq!(
        schema(&doc, "ErrorBody")["properties"]["error"]["$ref"],
        "#/components/schemas/ErrorInfo"
    );
    let codes: BTreeSet<u64> = schema(&doc, "ErrorCode")["enum"]
        .as_array()
        .expect("code enum")
        .iter()
        .filter_map(Value::as_u64)
        .collect();
    let all: BTreeSet<u64> = ErrorCode::ALL.iter().map(|c| u64::from(c.code())).collect();
    assert_eq!(codes, all);

    // Operations' bodies and replies.
    check_object::<AckBody>(
        &doc,
        "AckBody",
        json!({"serial": SERIAL, "version_serial": SERIAL, "duplicate": false}),
    );
    check_object::<AppendOp>(
        &doc,
        "AppendOp",
        json!({"data": "x", "name": "n", "extras": {"stream": "complete"}}),
    );
    check_object::<UpdateOp>(
        &doc,
        "UpdateOp",
        json!({"name": "n", "data": 1, "extras": {}, "description": "d", "metadata": {"k": 1}}),
    );
    check_object::<TokenRequest>(
        &doc,
        "TokenRequest",
        json!({"client_id": "u1", "capabilities": {"c": ["subscribe"]}, "ttl_secs": 60}),
    );
    check_object::<StartRequest>(
        &doc,
        "StartRequest",
        json!({"messages": [], "model": "m", "temperature": 0.5, "max_tokens": 9, "name": "r", "extras": {}}),
    );
    let capabilities: BTreeSet<&str> = schema(&doc, "Capability")["enum"]
        .as_array()
        .expect("capability enum")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let ops: BTreeSet<&str> = Operation::ALL
        .iter()
        .map(|op| op.as_str())
        .chain(["*"])
        .collect();
    assert_eq!(capabilities, ops);
    let serial = schema(&doc, "Serial");
    let pattern = serial["pattern"].as_str().expect("serial pattern");
    assert!(
        pattern.contains("{13}") && pattern.contains("{16}"),
        "{pattern}"
    );
    assert!(serde_json::from_value::<tether_core::Serial>(serial["example"].clone()).is_ok());

    // A message as the server really returns it, every optional field set.
    let http = reqwest::Client::new();
    let url = format!("{}/channels/conversation:1/messages", server.base);
    let ack: AckBody = http
        .post(&url)
        .json(&new_message)
        .send()
        .await
        .expect("publish")
        .json()
        .await
        .expect("ack");
    let reply: Value = http
        .patch(format!("{url}/{}", ack.serial))
        .json(&json!({"description": "why", "metadata": {"k": 1}}))
        .send()
        .await
        .expect("update")
        .json()
        .await
        .expect("update ack");
    assert!(reply["version_serial"].is_string(), "{reply}");
    let message: Value = http
        .get(format!("{url}/{}", ack.serial))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("message");
    let mut message = message;
    // Identities are stamped from credentials (none in --dev) and the
    // connection id over a WebSocket only: set here so every field is.
    message["connection_id"] = json!("c1");
    message["client_id"] = json!("u1");
    message["version"]["client_id"] = json!("u1");
    check_object::<Message>(&doc, "Message", message.clone());
    check_object::<tether_core::Version>(&doc, "Version", message["version"].clone());

    // History's `direction`: the store's type, described by a twin.
    let directions: Vec<Value> = schema(&doc, "Direction")["enum"]
        .as_array()
        .expect("enum")
        .clone();
    assert_eq!(directions.len(), 2, "{directions:?}");
    for direction in directions.iter().cloned().chain([json!("sideways")]) {
        let documented = directions.contains(&direction);
        let parsed = serde_json::from_value::<tether_store::Direction>(direction.clone()).is_ok();
        assert_eq!(parsed, documented, "{direction}");
    }

    // The SSE stream names every event it sends.
    let sse = doc["paths"]["/channels/{channel}/stream"]["get"]["responses"]["200"]["description"]
        .as_str()
        .expect("stream description");
    for name in SseEvent::NAMES {
        assert!(
            sse.contains(&format!("`{name}`")),
            "the SSE description misses {name}: {sse}"
        );
    }
    server.stop().await;
}
