//! The embedded fjall store against the conformance checks every
//! `LogStore` must pass (`tether_store::conformance`).

use std::sync::Arc;

use tether_store::conformance::Opened;
use tether_store::{CommitSink, FjallStore, StoreConfig};

fn open(sink: Arc<dyn CommitSink>) -> Opened<FjallStore> {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = FjallStore::open(StoreConfig::new(dir.path()), sink).expect("open store");
    Opened::new(store, dir)
}

tether_store::log_store_conformance!(open);
