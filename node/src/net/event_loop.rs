//! The task that owns the Swarm: membership announcements, discovery,
//! dialing, and request-response plumbing. No locks: everything else talks
//! to it through [`Command`]s.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use libp2p::identity::Keypair;
use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, Swarm, gossipsub, identify, kad, mdns};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Instant, sleep_until};
use tracing::{debug, info, warn};

use super::behaviour::{Behaviour, BehaviourEvent};
use super::{Command, InboundRequest, NetConfig, NetError, Snapshot};
use crate::membership::{Change, Membership};
use crate::protocol::job::{Request, Response};
use crate::protocol::membership::{self, Announcement, NodeInfo};
use shoal_publishers::content::Cid;

/// We dial members we learn about until this many peers are connected.
const TARGET_PEERS: usize = 8;
/// How long after a peer subscribes we re-announce, batching bursts.
const WELCOME_DELAY: Duration = Duration::from_millis(200);
/// How long a Leaving announcement gets to go out before the task stops.
const LEAVE_FLUSH: Duration = Duration::from_millis(400);

type PendingResponse = std::pin::Pin<
    Box<dyn futures::Future<Output = (ResponseChannel<Response>, Option<Response>)> + Send>,
>;

pub(super) struct EventLoop {
    swarm: Swarm<Behaviour>,
    keypair: Keypair,
    config: NetConfig,
    commands: mpsc::Receiver<Command>,
    snapshot: watch::Sender<Snapshot>,
    inbound: Option<mpsc::Sender<InboundRequest>>,
    topic: gossipsub::IdentTopic,
    membership: Membership,
    listen_addrs: Vec<Multiaddr>,
    dropped: BTreeMap<String, u64>,
    pending_requests: HashMap<OutboundRequestId, oneshot::Sender<Result<Response, NetError>>>,
    pending_responses: FuturesUnordered<PendingResponse>,
    next_announce: Instant,
    seq: u64,
    provider_queries: HashMap<kad::QueryId, ProviderQuery>,
    pending_connects: HashMap<PeerId, Vec<oneshot::Sender<Result<(), NetError>>>>,
    pending_fetches: HashMap<beetswap::QueryId, PendingFetch>,
}

struct ProviderQuery {
    cid: Cid,
    found: HashSet<PeerId>,
    reply: oneshot::Sender<Result<Vec<PeerId>, NetError>>,
}

struct PendingFetch {
    cid: Cid,
    reply: oneshot::Sender<Result<Vec<u8>, NetError>>,
}

impl EventLoop {
    pub(super) fn new(
        mut swarm: Swarm<Behaviour>,
        keypair: Keypair,
        mut config: NetConfig,
        commands: mpsc::Receiver<Command>,
        snapshot: watch::Sender<Snapshot>,
        inbound: Option<mpsc::Sender<InboundRequest>>,
    ) -> Result<Self, NetError> {
        let topic = gossipsub::IdentTopic::new(membership::TOPIC);
        swarm
            .behaviour_mut()
            .gossipsub
            .subscribe(&topic)
            .map_err(|e| NetError::Start(format!("subscribe {}: {e}", membership::TOPIC)))?;
        for addr in &config.listen {
            swarm
                .listen_on(addr.clone())
                .map_err(|e| NetError::Start(format!("cannot listen on {addr}: {e}")))?;
        }
        for addr in &config.bootstrap {
            if let Some(peer) = peer_of(addr) {
                swarm.behaviour_mut().kad.add_address(&peer, addr.clone());
            }
            if let Err(e) = swarm.dial(addr.clone()) {
                warn!(%addr, "cannot dial bootstrap peer: {e}");
            }
        }
        // Seed the sequence with the clock so a restarted node's announcements
        // are newer than the ones peers remember from its previous run.
        let seq = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        config.info.peer_id = swarm.local_peer_id().to_string();
        config.info.seq = seq;
        let membership = Membership::new(config.info.clone(), config.ttl);
        Ok(EventLoop {
            swarm,
            keypair,
            config,
            commands,
            snapshot,
            inbound,
            topic,
            membership,
            listen_addrs: Vec::new(),
            dropped: BTreeMap::new(),
            pending_requests: HashMap::new(),
            pending_responses: FuturesUnordered::new(),
            next_announce: Instant::now(),
            seq,
            provider_queries: HashMap::new(),
            pending_connects: HashMap::new(),
            pending_fetches: HashMap::new(),
        })
    }

    pub(super) async fn run(mut self) {
        self.publish_snapshot();
        let mut expiry = tokio::time::interval(expiry_tick(self.config.ttl));
        let mut bootstrap = tokio::time::interval(Duration::from_secs(30));
        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                command = self.commands.recv() => match command {
                    Some(Command::Shutdown { reply }) => {
                        self.leave().await;
                        let _ = reply.send(());
                        return;
                    }
                    Some(command) => self.on_command(command),
                    None => {
                        self.leave().await;
                        return;
                    }
                },
                Some((channel, response)) = self.pending_responses.next(), if !self.pending_responses.is_empty() => {
                    let response = response.unwrap_or_else(|| Response::Error {
                        message: "the node dropped the request".into(),
                    });
                    if self.swarm.behaviour_mut().job.send_response(channel, response).is_err() {
                        debug!("response not sent: the requester hung up");
                    }
                }
                _ = sleep_until(self.next_announce) => self.announce(),
                _ = expiry.tick() => {
                    self.cancel_abandoned_fetches();
                    let gone = self.membership.expire(std::time::Instant::now());
                    if !gone.is_empty() {
                        info!(peers = ?gone, "members expired after ttl");
                        self.publish_snapshot();
                    }
                }
                _ = bootstrap.tick() => {
                    if !self.config.bootstrap.is_empty() {
                        let _ = self.swarm.behaviour_mut().kad.bootstrap();
                    }
                }
            }
        }
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Request {
                peer,
                request,
                reply,
            } => {
                let id = self.swarm.behaviour_mut().job.send_request(&peer, request);
                self.pending_requests.insert(id, reply);
            }
            Command::UpdateInfo(change) => {
                let mut info = self.membership.me().clone();
                change(&mut info);
                self.membership.set_me(info);
                // Batched: a busy node changes its free slots many times a
                // second; peers need the news soon, not every flicker.
                self.soon();
            }
            Command::PublishRaw { bytes, reply } => {
                let result = self
                    .swarm
                    .behaviour_mut()
                    .gossipsub
                    .publish(self.topic.clone(), bytes)
                    .map(|_| ())
                    .map_err(|e| NetError::Request {
                        peer: *self.swarm.local_peer_id(),
                        reason: format!("publish: {e}"),
                    });
                let _ = reply.send(result);
            }
            Command::Provide { cid, reply } => {
                let key = kad::RecordKey::new(&cid.to_bytes());
                let result = self
                    .swarm
                    .behaviour_mut()
                    .kad
                    .start_providing(key)
                    .map(|_| ())
                    .map_err(|e| NetError::Providers {
                        cid,
                        reason: e.to_string(),
                    });
                let _ = reply.send(result);
            }
            Command::FindProviders { cid, reply } => {
                let key = kad::RecordKey::new(&cid.to_bytes());
                let id = self.swarm.behaviour_mut().kad.get_providers(key);
                self.provider_queries.insert(
                    id,
                    ProviderQuery {
                        cid,
                        found: HashSet::new(),
                        reply,
                    },
                );
            }
            Command::Connect { peer, addrs, reply } => {
                if self.swarm.is_connected(&peer) {
                    let _ = reply.send(Ok(()));
                    return;
                }
                for addr in &addrs {
                    self.swarm
                        .behaviour_mut()
                        .kad
                        .add_address(&peer, addr.clone());
                }
                let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(peer)
                    .addresses(addrs)
                    .build();
                match self.swarm.dial(opts) {
                    Ok(()) => self.pending_connects.entry(peer).or_default().push(reply),
                    Err(e) => {
                        let _ = reply.send(Err(NetError::Dial {
                            peer,
                            reason: e.to_string(),
                        }));
                    }
                }
            }
            Command::FetchBlock { cid, reply } => {
                let id = self.swarm.behaviour_mut().bitswap.get(&cid);
                self.pending_fetches.insert(id, PendingFetch { cid, reply });
            }
            Command::Shutdown { .. } => unreachable!("handled in run"),
        }
    }

    /// Cancels Bitswap queries whose caller gave up (timed out, dropped).
    fn cancel_abandoned_fetches(&mut self) {
        let abandoned: Vec<beetswap::QueryId> = self
            .pending_fetches
            .iter()
            .filter(|(_, f)| f.reply.is_closed())
            .map(|(id, _)| *id)
            .collect();
        for id in abandoned {
            if let Some(fetch) = self.pending_fetches.remove(&id) {
                debug!(cid = %fetch.cid, "bitswap fetch abandoned by its caller; cancelled");
            }
            self.swarm.behaviour_mut().bitswap.cancel(id);
        }
    }

    fn on_bitswap_event(&mut self, event: beetswap::Event) {
        match event {
            beetswap::Event::GetQueryResponse { query_id, data } => {
                if let Some(fetch) = self.pending_fetches.remove(&query_id) {
                    let _ = fetch.reply.send(Ok(data));
                }
            }
            beetswap::Event::GetQueryError { query_id, error } => {
                if let Some(fetch) = self.pending_fetches.remove(&query_id) {
                    let _ = fetch.reply.send(Err(NetError::Bitswap(format!(
                        "bitswap get {}: {error}",
                        fetch.cid
                    ))));
                }
            }
        }
    }

    fn on_kad_query(&mut self, id: kad::QueryId, result: kad::QueryResult, last: bool) {
        match result {
            kad::QueryResult::GetProviders(Ok(kad::GetProvidersOk::FoundProviders {
                providers,
                ..
            })) => {
                if let Some(query) = self.provider_queries.get_mut(&id) {
                    query.found.extend(providers);
                }
            }
            kad::QueryResult::GetProviders(Ok(
                kad::GetProvidersOk::FinishedWithNoAdditionalRecord { .. },
            )) => {}
            kad::QueryResult::GetProviders(Err(e)) => {
                if let Some(query) = self.provider_queries.remove(&id) {
                    // A timeout after some answers still gives usable providers.
                    let result = if query.found.is_empty() {
                        Err(NetError::Providers {
                            cid: query.cid,
                            reason: e.to_string(),
                        })
                    } else {
                        Ok(query.found.into_iter().collect())
                    };
                    let _ = query.reply.send(result);
                }
                return;
            }
            kad::QueryResult::StartProviding(Err(e)) => {
                debug!("provider announcement incomplete: {e}");
            }
            _ => {}
        }
        if last && let Some(query) = self.provider_queries.remove(&id) {
            let _ = query.reply.send(Ok(query.found.into_iter().collect()));
        }
    }

    /// Signs and publishes our current entry, then schedules the next one.
    fn announce(&mut self) {
        self.seq += 1;
        let mut me = self.membership.me().clone();
        me.seq = self.seq;
        me.listen_addrs = self.listen_addrs.iter().map(|a| a.to_string()).collect();
        self.membership.set_me(me.clone());
        self.publish(&Announcement::Alive(me));
        self.next_announce = Instant::now() + self.config.announce_interval;
        self.publish_snapshot();
    }

    fn publish(&mut self, announcement: &Announcement) {
        let bytes = membership::encode(&self.keypair, announcement);
        match self
            .swarm
            .behaviour_mut()
            .gossipsub
            .publish(self.topic.clone(), bytes)
        {
            Ok(_) => {}
            // Alone in the network (yet): nothing to do.
            Err(gossipsub::PublishError::NoPeersSubscribedToTopic) => {}
            Err(e) => debug!("announcement not published: {e}"),
        }
    }

    async fn leave(&mut self) {
        self.seq += 1;
        let leaving = Announcement::Leaving {
            peer_id: self.swarm.local_peer_id().to_string(),
            seq: self.seq,
        };
        self.publish(&leaving);
        info!("announced leave");
        let deadline = Instant::now() + LEAVE_FLUSH;
        loop {
            tokio::select! {
                _ = sleep_until(deadline) => break,
                _ = self.swarm.select_next_some() => {}
            }
        }
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                info!(%address, "listening");
                self.listen_addrs.push(address);
                self.soon();
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                self.listen_addrs.retain(|a| a != &address);
                self.soon();
            }
            SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                debug!(%peer_id, "connected");
                for reply in self.pending_connects.remove(&peer_id).unwrap_or_default() {
                    let _ = reply.send(Ok(()));
                }
                self.publish_snapshot();
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                debug!(%peer_id, "disconnected");
                self.publish_snapshot();
            }
            SwarmEvent::OutgoingConnectionError {
                peer_id: Some(peer),
                error,
                ..
            } => {
                for reply in self.pending_connects.remove(&peer).unwrap_or_default() {
                    let _ = reply.send(Err(NetError::Dial {
                        peer,
                        reason: error.to_string(),
                    }));
                }
            }
            SwarmEvent::Behaviour(event) => self.on_behaviour_event(event),
            _ => {}
        }
    }

    fn on_behaviour_event(&mut self, event: BehaviourEvent) {
        match event {
            BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            }) => {
                let acceptance = self.on_gossip(message);
                self.swarm
                    .behaviour_mut()
                    .gossipsub
                    .report_message_validation_result(&message_id, &propagation_source, acceptance);
            }
            BehaviourEvent::Gossipsub(gossipsub::Event::Subscribed { peer_id, topic })
                if topic == self.topic.hash() =>
            {
                debug!(%peer_id, "peer subscribed to membership");
                self.soon();
            }
            BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
                for addr in info.listen_addrs {
                    self.swarm.behaviour_mut().kad.add_address(&peer_id, addr);
                }
            }
            BehaviourEvent::Mdns(mdns::Event::Discovered(peers)) => {
                for (peer_id, addr) in peers {
                    self.swarm
                        .behaviour_mut()
                        .kad
                        .add_address(&peer_id, addr.clone());
                    if !self.swarm.is_connected(&peer_id) {
                        let _ = self.swarm.dial(addr);
                    }
                }
            }
            BehaviourEvent::Kad(kad::Event::RoutingUpdated { peer, .. }) => {
                debug!(%peer, "kademlia routing updated");
            }
            BehaviourEvent::Kad(kad::Event::OutboundQueryProgressed {
                id, result, step, ..
            }) => self.on_kad_query(id, result, step.last),
            BehaviourEvent::Bitswap(event) => self.on_bitswap_event(event),
            BehaviourEvent::Job(event) => self.on_job_event(event),
            _ => {}
        }
    }

    /// Checks a membership message; returns what gossipsub should do with it.
    fn on_gossip(&mut self, message: gossipsub::Message) -> gossipsub::MessageAcceptance {
        let announcement = match membership::decode(&message.data) {
            Ok(a) => a,
            Err(reason) => {
                warn!(source = ?message.source, "dropped membership message: {reason}");
                *self.dropped.entry(reason.counter().to_owned()).or_default() += 1;
                self.publish_snapshot();
                return gossipsub::MessageAcceptance::Reject;
            }
        };
        let peer_id = announcement.peer_id().to_owned();
        let moved = match &announcement {
            Announcement::Alive(info) => {
                self.membership.listen_addrs(&peer_id) != Some(info.listen_addrs.as_slice())
            }
            Announcement::Leaving { .. } => false,
        };
        if let (true, Announcement::Alive(info), Ok(peer)) =
            (moved, &announcement, peer_id.parse::<PeerId>())
        {
            // Direct requests (awards, reports) dial members by peer id: keep
            // their announced addresses, which change when they restart.
            for addr in info
                .listen_addrs
                .iter()
                .filter_map(|a| a.parse::<Multiaddr>().ok())
            {
                // Kademlia's table is where request-response finds addresses
                // when it dials a peer by id.
                self.swarm.behaviour_mut().kad.add_address(&peer, addr);
            }
        }
        let change = self
            .membership
            .apply(announcement.clone(), std::time::Instant::now());
        match change {
            Change::Joined => {
                info!(peer = %peer_id, "member joined");
                if let Announcement::Alive(info) = &announcement {
                    self.maybe_dial(info);
                }
                // A newcomer needs to hear about us before our next tick.
                self.soon();
            }
            Change::Left => info!(peer = %peer_id, "member left"),
            Change::Updated | Change::Ignored => {}
        }
        if change != Change::Ignored {
            self.publish_snapshot();
        }
        gossipsub::MessageAcceptance::Accept
    }

    /// Dials a member we are not connected to, while we have few peers, so
    /// the gossip mesh does not hang on the bootstrap node alone.
    fn maybe_dial(&mut self, info: &NodeInfo) {
        let Ok(peer) = info.peer_id.parse::<PeerId>() else {
            return;
        };
        if self.swarm.is_connected(&peer) || self.swarm.connected_peers().count() >= TARGET_PEERS {
            return;
        }
        let addrs: Vec<Multiaddr> = info
            .listen_addrs
            .iter()
            .filter_map(|a| a.parse().ok())
            .collect();
        if addrs.is_empty() {
            return;
        }
        let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(peer)
            .addresses(addrs)
            .build();
        if let Err(e) = self.swarm.dial(opts) {
            debug!(%peer, "dial failed: {e}");
        }
    }

    fn on_job_event(&mut self, event: request_response::Event<Request, Response>) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => self.on_inbound_request(peer, request, channel),
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    if let Some(reply) = self.pending_requests.remove(&request_id) {
                        let _ = reply.send(Ok(response));
                    }
                }
            },
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                if let Some(reply) = self.pending_requests.remove(&request_id) {
                    let _ = reply.send(Err(NetError::Request {
                        peer,
                        reason: error.to_string(),
                    }));
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                debug!(%peer, "inbound request failed: {error}");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    fn on_inbound_request(
        &mut self,
        peer: PeerId,
        request: Request,
        channel: ResponseChannel<Response>,
    ) {
        if let Request::Ping { nonce } = request {
            let _ = self
                .swarm
                .behaviour_mut()
                .job
                .send_response(channel, Response::Pong { nonce });
            return;
        }
        let Some(inbound) = self.inbound.clone() else {
            let _ = self.swarm.behaviour_mut().job.send_response(
                channel,
                Response::Error {
                    message: "this peer does not serve job requests".into(),
                },
            );
            return;
        };
        let (respond, answer) = oneshot::channel();
        match inbound.try_send(InboundRequest {
            peer,
            request,
            respond,
        }) {
            Ok(()) => self
                .pending_responses
                .push(Box::pin(async move { (channel, answer.await.ok()) })),
            Err(_) => {
                let _ = self.swarm.behaviour_mut().job.send_response(
                    channel,
                    Response::Error {
                        message: "node is overloaded; retry later".into(),
                    },
                );
            }
        }
    }

    /// Announce soon (batching bursts of joins and address changes).
    fn soon(&mut self) {
        let at = Instant::now() + WELCOME_DELAY;
        if at < self.next_announce {
            self.next_announce = at;
        }
    }

    fn publish_snapshot(&mut self) {
        let connected: HashSet<&PeerId> = self.swarm.connected_peers().collect();
        let snapshot = Snapshot {
            peer_id: self.swarm.local_peer_id().to_string(),
            listen_addrs: self.listen_addrs.iter().map(|a| a.to_string()).collect(),
            members: self.membership.snapshot(),
            connected_peers: connected.len(),
            dropped_messages: self.dropped.clone(),
        };
        self.snapshot.send_replace(snapshot);
    }
}

fn expiry_tick(ttl: Duration) -> Duration {
    (ttl / 10).clamp(Duration::from_millis(50), Duration::from_secs(1))
}

fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    addr.iter().find_map(|p| match p {
        libp2p::multiaddr::Protocol::P2p(peer) => Some(peer),
        _ => None,
    })
}
