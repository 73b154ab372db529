//! Authorization hardening of the LLM bridge: it cannot publish what its
//! caller may not, one credential cannot take every job slot, and requests
//! name only allowed models.

mod authz_support;
mod support;

use std::time::{Duration, Instant};

use authz_support::*;
use reqwest::Method;
use serde_json::{Value, json};
use support::{TestServer, WAIT};
use tether_fake_llm::{FakeLlm, FakeOptions};
use tether_server::Config;

struct Bridge {
    server: TestServer,
    _fake: FakeLlm,
}

async fn bridge(tokens_per_second: f64, adjust: impl FnOnce(&mut Config)) -> Bridge {
    let options = FakeOptions {
        tokens_per_second,
        ..FakeOptions::default()
    };
    let (server, fake) = TestServer::with_fake_llm(options, adjust).await;
    Bridge {
        server,
        _fake: fake,
    }
}

fn ask(prompt: &str) -> Value {
    json!({"messages": [{"role": "user", "content": prompt}]})
}

async fn running_jobs(api: &Api) -> Vec<String> {
    let (status, body) = api.get("/llm/jobs").await;
    assert_eq!(status, 200, "{body}");
    body["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .filter_map(|j| j["job"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_llm_bridge_cannot_publish_a_handoff() {
    let setup = bridge(0.0, secure).await;
    let user = Api::token(&setup.server.base, &user_token(&setup.server).await);
    let mut body = ask("[[tokens:1]]");
    body["name"] = json!("handoff");
    body["extras"] = json!({"action": "claim"});
    let (status, reply) = user.post(&format!("/channels/{CHANNEL}/llm"), body).await;
    assert_eq!((status, code(&reply)), (403, Some(40300)), "{reply}");
    assert!(user.history(CHANNEL).await.is_empty());
    assert!(running_jobs(&Api::admin(&setup.server)).await.is_empty());
    // An ordinary response still streams.
    let (status, reply) = user
        .post(&format!("/channels/{CHANNEL}/llm"), ask("[[tokens:1]]"))
        .await;
    assert_eq!(status, 202, "{reply}");
    setup.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_credential_cannot_take_every_llm_job_slot() {
    let setup = bridge(20.0, |c| {
        c.llm.max_concurrent_jobs = 8;
        c.llm.max_jobs_per_credential = 2;
    })
    .await;
    let base = &setup.server.base;
    let (alice, bob) = (
        Api::new(base).acting_as("alice"),
        Api::new(base).acting_as("bob"),
    );
    let path = "/channels/chat:jobs/llm";
    let mut jobs = Vec::new();
    for _ in 0..2 {
        let (status, reply) = alice.post(path, ask("[[tokens:1000]]")).await;
        assert_eq!(status, 202, "{reply}");
        jobs.push(reply["job"].as_str().expect("job").to_owned());
    }
    let (status, reply) = alice.post(path, ask("[[tokens:1000]]")).await;
    assert_eq!((status, code(&reply)), (429, Some(42906)), "{reply}");
    assert!(
        reply["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("max_jobs_per_credential")),
        "{reply}"
    );
    // Someone else still gets a slot.
    let (status, reply) = bob.post(path, ask("[[tokens:1000]]")).await;
    assert_eq!(status, 202, "{reply}");
    let bobs = reply["job"].as_str().expect("job").to_owned();

    // When one of alice's jobs ends, she may start another.
    let (status, _) = alice
        .call(Method::DELETE, &format!("/llm/jobs/{}", jobs[0]), None)
        .await;
    assert_eq!(status, 202);
    let deadline = Instant::now() + WAIT;
    while running_jobs(&alice).await.contains(&jobs[0]) {
        assert!(Instant::now() < deadline, "job did not end");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (status, reply) = alice.post(path, ask("[[tokens:1000]]")).await;
    assert_eq!(status, 202, "{reply}");
    let again = reply["job"].as_str().expect("job").to_owned();
    for job in [&jobs[1], &bobs, &again] {
        alice
            .call(Method::DELETE, &format!("/llm/jobs/{job}"), None)
            .await;
    }
    setup.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_may_name_only_allowed_models() {
    let setup = bridge(0.0, |_| {}).await;
    let api = Api::new(&setup.server.base);
    let mut body = ask("[[tokens:1]]");
    body["model"] = json!("gpt-4o");
    let (status, reply) = api.post("/channels/chat:m/llm", body.clone()).await;
    assert_eq!((status, code(&reply)), (403, Some(40300)), "{reply}");
    let message = reply["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("gpt-4o") && message.contains("not allowed") && message.contains("fake-1"),
        "{message}"
    );
    assert!(api.history("chat:m").await.is_empty());
    body["model"] = json!("fake-1");
    let (status, reply) = api.post("/channels/chat:m/llm", body.clone()).await;
    assert_eq!(status, 202, "the configured model is allowed: {reply}");
    setup.server.stop().await;

    let setup = bridge(0.0, |c| c.llm.allowed_models = vec!["fake-2".into()]).await;
    let api = Api::new(&setup.server.base);
    body["model"] = json!("fake-2");
    let (status, reply) = api.post("/channels/chat:m/llm", body.clone()).await;
    assert_eq!(status, 202, "{reply}");
    body["model"] = json!("fake-3");
    let (status, reply) = api.post("/channels/chat:m/llm", body).await;
    assert_eq!((status, code(&reply)), (403, Some(40300)), "{reply}");
    setup.server.stop().await;
}
