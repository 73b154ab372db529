//! `tether history <channel>`: the current version of each message.

use clap::Args;
use tether_client::{Direction, HistoryQuery, Rest};

use super::{Failure, Format, Target, print_message};

/// Largest page the server serves.
const MAX_PAGE: usize = 1000;

/// Flags of `tether history`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// The channel.
    pub channel: String,
    /// How many messages to print (pages are fetched as needed).
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
    /// Oldest first (default: newest first).
    #[arg(long)]
    pub forwards: bool,
    #[command(flatten)]
    pub target: Target,
}

/// Prints up to `limit` messages, following pages.
pub async fn run(args: HistoryArgs) -> Result<(), Failure> {
    if args.limit == 0 {
        return Err("--limit must be at least 1".to_owned().into());
    }
    let rest = Rest::new(&args.target.url, &args.target.options())?;
    let format = Format::detect();
    let direction = if args.forwards {
        Direction::Forwards
    } else {
        Direction::Backwards
    };
    let mut query = HistoryQuery::default().direction(direction);
    let mut left = args.limit;
    while left > 0 {
        query = query.limit(left.min(MAX_PAGE));
        let page = rest.history(&args.channel, &query).await?;
        for message in page.messages.iter().take(left) {
            print_message(format, message)?;
        }
        left = left.saturating_sub(page.messages.len());
        match page.next {
            Some(next) if !page.messages.is_empty() => query = query.cursor(next),
            _ => break,
        }
    }
    Ok(())
}
