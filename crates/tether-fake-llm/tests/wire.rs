//! The fake over real HTTP: the chunk format, directives, pluggable
//! answers and the bearer check.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tether_fake_llm::{Answers, FakeLlm, FakeOptions, answer, serve};

async fn start(options: FakeOptions) -> FakeLlm {
    serve("127.0.0.1:0".parse().expect("addr"), options)
        .await
        .expect("fake starts")
}

async fn post(fake: &FakeLlm, body: Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", fake.base_url()))
        .json(&body)
        .send()
        .await
        .expect("request")
}

/// The `data:` payloads of an SSE body.
fn events(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .map(str::to_owned)
        .collect()
}

fn content(events: &[String]) -> String {
    events
        .iter()
        .filter(|e| *e != "[DONE]")
        .filter_map(|e| serde_json::from_str::<Value>(e).ok())
        .filter_map(|v| {
            v.pointer("/choices/0/delta/content")?
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}

#[tokio::test]
async fn streams_the_echo_answer_in_openai_chunks_with_usage() {
    let fake = start(FakeOptions {
        tokens_per_second: 0.0,
        ..FakeOptions::default()
    })
    .await;
    let response = post(
        &fake,
        json!({"model": "m1", "stream": true, "stream_options": {"include_usage": true},
               "messages": [{"role": "user", "content": "hi [[tokens:5]]"}]}),
    )
    .await;
    assert_eq!(
        response.headers()["content-type"],
        "text/event-stream",
        "SSE content type"
    );
    let events = events(&response.text().await.expect("body"));
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    assert_eq!(content(&events), answer("hi [[tokens:5]]", 5));
    let finish: Value = serde_json::from_str(&events[events.len() - 3]).expect("json");
    assert_eq!(finish["choices"][0]["finish_reason"], "stop");
    assert_eq!(finish["model"], "m1");
    let usage: Value = serde_json::from_str(&events[events.len() - 2]).expect("json");
    assert_eq!(usage["usage"]["completion_tokens"], 6);
}

#[tokio::test]
async fn answers_whole_when_not_streaming_and_honours_max_tokens() {
    let fake = start(FakeOptions::default()).await;
    let body: Value = post(
        &fake,
        json!({"max_tokens": 3, "messages": [{"role": "user", "content": "x [[tokens:10]]"}]}),
    )
    .await
    .json()
    .await
    .expect("json");
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["choices"][0]["finish_reason"], "length");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "You said: x [[tokens:10]]. t1 t2"
    );
    assert_eq!(body["model"], "fake");
}

#[tokio::test]
async fn plugged_in_answers_and_the_first_token_delay_apply() {
    let fake = start(FakeOptions {
        tokens_per_second: 0.0,
        first_token: Duration::from_millis(300),
        answers: Answers::new(|p| {
            if p.tokens_asked {
                vec![format!("counted {}", p.tokens)]
            } else {
                vec!["canned".into(), " text".into()]
            }
        }),
        ..FakeOptions::default()
    })
    .await;
    let started = Instant::now();
    let body = post(
        &fake,
        json!({"stream": true, "messages": [{"role": "user", "content": "hello"}]}),
    )
    .await
    .text()
    .await
    .expect("body");
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "first-token delay"
    );
    assert_eq!(content(&events(&body)), "canned text");
    let body = post(
        &fake,
        json!({"messages": [{"role": "user", "content": "go [[tokens:7]]"}]}),
    )
    .await
    .json::<Value>()
    .await
    .expect("json");
    assert_eq!(body["choices"][0]["message"]["content"], "counted 7");
}

#[tokio::test]
async fn failure_directives_and_the_api_key_are_enforced() {
    let fake = start(FakeOptions {
        api_key: Some("sk-test".into()),
        ..FakeOptions::default()
    })
    .await;
    let unauthorized = post(&fake, json!({"messages": []})).await;
    assert_eq!(unauthorized.status(), 401);
    let failed = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", fake.base_url()))
        .bearer_auth("sk-test")
        .json(&json!({"messages": [{"role": "user", "content": "[[fail:429]]"}]}))
        .send()
        .await
        .expect("request");
    assert_eq!(failed.status(), 429);
    let body: Value = failed.json().await.expect("json");
    assert_eq!(body["error"]["code"], 429);
    let malformed = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", fake.base_url()))
        .bearer_auth("sk-test")
        .json(&json!({"stream": true, "messages": [{"role": "user", "content": "[[malformed]] [[tokens:4]] [[tps:0]]"}]}))
        .send()
        .await
        .expect("request")
        .text()
        .await
        .expect("body");
    assert!(malformed.contains("[oops"), "{malformed}");
}
