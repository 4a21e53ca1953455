//! Listing a UnixFS directory into input files, over the requester's own
//! Bitswap (directory nodes only; file data stays where it is).

use std::sync::Arc;

use shoal_node::ipfs::{FetchOptions, list_dir};
use shoal_node::libp2p::Multiaddr;
use shoal_node::net::NetHandle;
use shoal_node::protocol::job::InputItem;
use shoal_publishers::content::Cid;
use shoal_publishers::ipfs::BlockStore;

use super::ShardingError;
use super::list::InputFile;
use crate::spec::IpfsInput;

/// Every file under the directory, named by its path in it and identified
/// by its CID.
pub async fn list_ipfs(
    net: &NetHandle,
    store: &Arc<BlockStore>,
    input: &IpfsInput,
) -> Result<Vec<InputFile>, ShardingError> {
    let bad = |e: String| ShardingError::Ipfs(e);
    let root: Cid = input
        .cid
        .parse()
        .map_err(|e| bad(format!("{}: {e}", input.cid)))?;
    let hints = input
        .providers
        .iter()
        .map(|p| p.parse::<Multiaddr>().map_err(|e| bad(format!("{p}: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let options = FetchOptions {
        block_timeout: std::time::Duration::from_secs(30),
        ..FetchOptions::default()
    };
    let entries = list_dir(net, store, root, &hints, &options)
        .await
        .map_err(|e| bad(e.to_string()))?;
    if entries.is_empty() {
        return Err(bad(format!("directory {root} has no files")));
    }
    Ok(entries
        .into_iter()
        .map(|e| InputFile {
            identity: e.cid.to_string(),
            item: InputItem::Ipfs {
                name: e.path,
                cid: e.cid.to_string(),
                size: e.size,
                providers: input.providers.clone(),
            },
        })
        .collect())
}
