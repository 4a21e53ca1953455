//! The table of live members, built from signed announcements.
//!
//! Pure state: the network task feeds it announcements and clock ticks; it
//! never does I/O. An entry lives `ttl` after its last announcement, a
//! `Leaving` announcement removes it at once, and an announcement older (by
//! sequence number) than what we hold is ignored.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::protocol::membership::{Announcement, NodeInfo};

/// What an announcement did to the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Joined,
    Updated,
    Left,
    /// Older than what we have, about ourselves, or about an unknown leaver.
    Ignored,
}

struct Entry {
    info: NodeInfo,
    last_seen: Instant,
}

/// Live members, this node included.
pub struct Membership {
    me: NodeInfo,
    ttl: Duration,
    others: HashMap<String, Entry>,
    /// Highest sequence seen from each departed peer, so a delayed copy of an
    /// older Alive cannot resurrect it.
    departed: HashMap<String, u64>,
}

impl Membership {
    /// A table that holds only `me`.
    pub fn new(me: NodeInfo, ttl: Duration) -> Self {
        Membership {
            me,
            ttl,
            others: HashMap::new(),
            departed: HashMap::new(),
        }
    }

    /// Replaces this node's own entry.
    pub fn set_me(&mut self, me: NodeInfo) {
        self.me = me;
    }

    /// This node's own entry.
    pub fn me(&self) -> &NodeInfo {
        &self.me
    }

    /// Applies a verified announcement received at `now`.
    pub fn apply(&mut self, announcement: Announcement, now: Instant) -> Change {
        if announcement.peer_id() == self.me.peer_id {
            return Change::Ignored;
        }
        match announcement {
            Announcement::Alive(info) => {
                if self
                    .departed
                    .get(&info.peer_id)
                    .is_some_and(|&seq| info.seq <= seq)
                {
                    return Change::Ignored;
                }
                self.departed.remove(&info.peer_id);
                match self.others.get_mut(&info.peer_id) {
                    Some(entry) if info.seq < entry.info.seq => Change::Ignored,
                    Some(entry) => {
                        entry.info = info;
                        entry.last_seen = now;
                        Change::Updated
                    }
                    None => {
                        self.others.insert(
                            info.peer_id.clone(),
                            Entry {
                                info,
                                last_seen: now,
                            },
                        );
                        Change::Joined
                    }
                }
            }
            Announcement::Leaving { peer_id, seq } => {
                let known = match self.others.get(&peer_id) {
                    Some(entry) if entry.info.seq > seq => return Change::Ignored,
                    Some(_) => true,
                    None => false,
                };
                self.others.remove(&peer_id);
                self.departed.insert(peer_id, seq);
                if known { Change::Left } else { Change::Ignored }
            }
        }
    }

    /// Drops members silent for longer than the TTL; returns their peer ids.
    pub fn expire(&mut self, now: Instant) -> Vec<String> {
        let ttl = self.ttl;
        let expired: Vec<String> = self
            .others
            .iter()
            .filter(|(_, e)| now.saturating_duration_since(e.last_seen) > ttl)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &expired {
            self.others.remove(id);
        }
        expired
    }

    /// Whether `peer_id` is a live member other than this node.
    pub fn contains(&self, peer_id: &str) -> bool {
        self.others.contains_key(peer_id)
    }

    /// The addresses `peer_id` last announced, if it is a live member.
    pub fn listen_addrs(&self, peer_id: &str) -> Option<&[String]> {
        self.others
            .get(peer_id)
            .map(|e| e.info.listen_addrs.as_slice())
    }

    /// Every live member, this node included, sorted by peer id.
    pub fn snapshot(&self) -> Vec<NodeInfo> {
        let mut all: Vec<NodeInfo> = self.others.values().map(|e| e.info.clone()).collect();
        all.push(self.me.clone());
        all.sort_by(|a, b| a.peer_id.cmp(&b.peer_id));
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::membership::tests::info;
    use libp2p::identity::Keypair;

    fn table() -> (Membership, Instant) {
        let me = Keypair::generate_ed25519();
        (
            Membership::new(info(&me, 0), Duration::from_secs(15)),
            Instant::now(),
        )
    }

    #[test]
    fn member_joins_updates_and_expires_after_ttl() {
        let (mut m, t0) = table();
        let peer = Keypair::generate_ed25519();
        assert_eq!(
            m.apply(Announcement::Alive(info(&peer, 1)), t0),
            Change::Joined
        );
        assert_eq!(m.snapshot().len(), 2);
        let t1 = t0 + Duration::from_secs(10);
        assert_eq!(
            m.apply(Announcement::Alive(info(&peer, 2)), t1),
            Change::Updated
        );
        assert!(m.expire(t1 + Duration::from_secs(15)).is_empty());
        assert_eq!(m.expire(t1 + Duration::from_secs(16)).len(), 1);
        assert_eq!(m.snapshot().len(), 1);
    }

    #[test]
    fn leaving_removes_at_once_and_old_alive_cannot_resurrect() {
        let (mut m, t0) = table();
        let peer = Keypair::generate_ed25519();
        let id = peer.public().to_peer_id().to_string();
        m.apply(Announcement::Alive(info(&peer, 3)), t0);
        let leave = Announcement::Leaving {
            peer_id: id.clone(),
            seq: 4,
        };
        assert_eq!(m.apply(leave, t0), Change::Left);
        assert!(!m.contains(&id));
        assert_eq!(
            m.apply(Announcement::Alive(info(&peer, 3)), t0),
            Change::Ignored
        );
        assert_eq!(
            m.apply(Announcement::Alive(info(&peer, 5)), t0),
            Change::Joined
        );
    }

    #[test]
    fn stale_announcement_is_ignored() {
        let (mut m, t0) = table();
        let peer = Keypair::generate_ed25519();
        m.apply(Announcement::Alive(info(&peer, 5)), t0);
        assert_eq!(
            m.apply(Announcement::Alive(info(&peer, 4)), t0),
            Change::Ignored
        );
    }

    #[test]
    fn own_announcements_do_not_duplicate_self() {
        let me = Keypair::generate_ed25519();
        let mut m = Membership::new(info(&me, 0), Duration::from_secs(1));
        assert_eq!(
            m.apply(Announcement::Alive(info(&me, 9)), Instant::now()),
            Change::Ignored
        );
        assert_eq!(m.snapshot().len(), 1);
    }
}
