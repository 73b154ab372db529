//! Echoes each `prompt` on conversation:echo word by word. Try: `tether publish conversation:echo 'hi there' --name prompt`
use futures::StreamExt;
use tether_client::{Action, Client, ClientOptions, Event};
#[tokio::main]
async fn main() -> Result<(), tether_client::Error> {
    let url = std::env::var("TETHER_URL").unwrap_or_else(|_| "http://127.0.0.1:7400".into());
    let client = Client::connect(&url, ClientOptions::default()).await?;
    let channel = client.channel("conversation:echo")?;
    let mut events = channel.subscribe().await?;
    while let Some(event) = events.next().await {
        let Event::Message(prompt) = event else {
            continue;
        };
        if prompt.name.as_deref() != Some("prompt") || prompt.action != Action::Create {
            continue;
        }
        let extras = serde_json::json!({"role": "assistant", "prompt": prompt.serial});
        let mut response = channel.stream_response("response", extras).await?;
        for word in prompt.data.as_str().unwrap_or_default().split_whitespace() {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            if response.is_cancelled() {
                break;
            }
            response.append(&format!("{word} "))?;
        }
        response.finish().await?;
    }
    Ok(())
}
