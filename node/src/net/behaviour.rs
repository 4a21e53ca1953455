//! The composed NetworkBehaviour and the Swarm it runs in.

use std::sync::Arc;
use std::time::Duration;

use libp2p::identity::Keypair;
use libp2p::request_response::{self, ProtocolSupport, cbor};
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{
    StreamProtocol, Swarm, SwarmBuilder, gossipsub, identify, kad, mdns, noise, ping, tcp, yamux,
};

use shoal_publishers::ipfs::BlockStore;

use super::NetConfig;
use crate::ipfs::BitswapStore;
use crate::protocol::job::{self, Request, Response};
use crate::protocol::membership::MAX_ANNOUNCEMENT_BYTES;

/// Kademlia protocol id of the shoal DHT.
const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/shoal/kad/1.0.0");
/// Identify protocol version string.
const IDENTIFY_VERSION: &str = "/shoal/1.0.0";

/// Every protocol a shoal peer speaks.
#[derive(libp2p::swarm::NetworkBehaviour)]
pub struct Behaviour {
    pub identify: identify::Behaviour,
    pub ping: ping::Behaviour,
    pub kad: kad::Behaviour<kad::store::MemoryStore>,
    pub mdns: Toggle<mdns::tokio::Behaviour>,
    pub gossipsub: gossipsub::Behaviour,
    pub job: cbor::Behaviour<Request, Response>,
    /// Bitswap 1.2.0 (`/ipfs/bitswap/1.2.0`), client and server, over the block store.
    pub bitswap: beetswap::Behaviour<64, BitswapStore>,
}

pub(super) fn build_swarm(
    keypair: &Keypair,
    config: &NetConfig,
    blocks: Option<Arc<BlockStore>>,
) -> Result<Swarm<Behaviour>, String> {
    let mdns_enabled = config.mdns;
    let swarm = SwarmBuilder::with_existing_identity(keypair.clone())
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| format!("tcp transport: {e}"))?
        .with_quic()
        .with_behaviour(
            |key| -> Result<Behaviour, Box<dyn std::error::Error + Send + Sync>> {
                let peer_id = key.public().to_peer_id();
                let gossipsub_config = gossipsub::ConfigBuilder::default()
                    .heartbeat_interval(Duration::from_millis(500))
                    .validation_mode(gossipsub::ValidationMode::Strict)
                    .validate_messages()
                    // Room for an oversized announcement to arrive and be counted;
                    // the membership decoder enforces the real limit.
                    .max_transmit_size(4 * MAX_ANNOUNCEMENT_BYTES)
                    .build()?;
                let gossipsub = gossipsub::Behaviour::new(
                    gossipsub::MessageAuthenticity::Signed(key.clone()),
                    gossipsub_config,
                )?;
                let mut kad = kad::Behaviour::with_config(
                    peer_id,
                    kad::store::MemoryStore::new(peer_id),
                    kad::Config::new(KAD_PROTOCOL),
                );
                kad.set_mode(Some(kad::Mode::Server));
                let mdns = if mdns_enabled {
                    Some(mdns::tokio::Behaviour::new(
                        mdns::Config::default(),
                        peer_id,
                    )?)
                } else {
                    None
                };
                let codec = cbor::codec::Codec::default()
                    .set_request_size_maximum(job::MAX_REQUEST_BYTES)
                    .set_response_size_maximum(job::MAX_RESPONSE_BYTES);
                let job = request_response::Behaviour::with_codec(
                    codec,
                    [(StreamProtocol::new(job::PROTOCOL), ProtocolSupport::Full)],
                    request_response::Config::default()
                        .with_request_timeout(Duration::from_secs(30)),
                );
                Ok(Behaviour {
                    identify: identify::Behaviour::new(identify::Config::new(
                        IDENTIFY_VERSION.into(),
                        key.public(),
                    )),
                    ping: ping::Behaviour::new(ping::Config::new()),
                    kad,
                    mdns: Toggle::from(mdns),
                    gossipsub,
                    job,
                    bitswap: beetswap::Behaviour::new(Arc::new(BitswapStore::new(blocks))),
                })
            },
        )
        .map_err(|e| format!("behaviour: {e}"))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(120)))
        .build();
    Ok(swarm)
}
