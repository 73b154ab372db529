//! `tether fake-llm`: the one fake OpenAI-compatible model
//! ([`tether_fake_llm`], which the tests and the demo use in-process)
//! served on its own, for benchmarks of the LLM bridge and for trying it
//! by hand.

use std::net::SocketAddr;
use std::process::ExitCode;

use tether_fake_llm::{FakeOptions, MAX_TOKENS, serve};

/// `tether fake-llm` flags.
#[derive(Debug, clap::Args)]
pub(crate) struct FakeLlmArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:7401")]
    listen: SocketAddr,
    /// Pace of streamed answers (0: as fast as possible).
    #[arg(long, default_value_t = 150.0)]
    tokens_per_second: f64,
    /// Numbered tokens per answer when the prompt does not say.
    #[arg(long, default_value_t = 50)]
    tokens: usize,
    /// Require this bearer token.
    #[arg(long)]
    api_key: Option<String>,
}

/// `tether fake-llm`: serves until Ctrl-C.
pub(crate) fn run(args: FakeLlmArgs) -> ExitCode {
    tether_server::runtime::block_on(async move {
        let options = FakeOptions {
            tokens_per_second: args.tokens_per_second.max(0.0),
            tokens: args.tokens.min(MAX_TOKENS),
            api_key: args.api_key,
            ..FakeOptions::default()
        };
        let fake = match serve(args.listen, options).await {
            Ok(fake) => fake,
            Err(err) => {
                eprintln!("tether: cannot listen on {}: {err}", args.listen);
                return ExitCode::FAILURE;
            }
        };
        println!("listening on {}", fake.base_url());
        let _ = tokio::signal::ctrl_c().await;
        ExitCode::SUCCESS
    })
}
