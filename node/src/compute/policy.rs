//! Bidding policy: whether this node takes a shard. Pure: the caller passes
//! what the node offers and how busy it is.

use std::collections::HashSet;

use shoal_publishers::Publishers;

use crate::protocol::job::{BidRequest, Decline};
use crate::protocol::membership::Capacity;

/// What the node offers, fixed at start.
pub struct Offer {
    pub capacity: Capacity,
    pub executors: Vec<String>,
    /// Requester peer ids allowed; empty means any.
    pub allow_requesters: HashSet<String>,
    pub max_queue: u32,
    /// `publishers.s3.read`; `None` when the S3 driver is off.
    pub s3_read: Option<shoal_publishers::s3::AllowList>,
}

/// How busy the node is right now.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    pub queued: u32,
    pub free_slots: u32,
}

fn never(reason: String) -> Decline {
    Decline {
        transient: false,
        reason,
    }
}

/// Decides on a bid: `Ok` to bid, or the decline with its reason.
pub fn evaluate(
    offer: &Offer,
    publishers: &Publishers,
    requester: &str,
    request: &BidRequest,
    load: Load,
) -> Result<(), Decline> {
    if !offer.allow_requesters.is_empty() && !offer.allow_requesters.contains(requester) {
        return Err(never(format!(
            "requester {requester} is not in this node's compute.allow_requesters"
        )));
    }
    if !offer.executors.iter().any(|e| e == &request.executor) {
        return Err(never(format!(
            "executor {:?} is not enabled on this node (see [executors.{}] in config.toml)",
            request.executor, request.executor
        )));
    }
    publishers.check_all(&request.publish).map_err(never)?;
    for read in &request.s3_reads {
        match &offer.s3_read {
            None => {
                return Err(never(format!(
                    "reads s3://{}/{} but S3 is not enabled on this node ([publishers.s3])",
                    read.bucket, read.prefix
                )));
            }
            Some(list) => list
                .check("publishers.s3.read", &read.bucket, &read.prefix)
                .map_err(never)?,
        }
    }
    let r = &request.resources;
    let c = &offer.capacity;
    if r.cpu > c.cpu {
        return Err(never(format!("needs {} cpu, node offers {}", r.cpu, c.cpu)));
    }
    if c.memory > 0 && r.memory > c.memory {
        return Err(never(format!(
            "needs {} bytes of memory, node offers {}",
            r.memory, c.memory
        )));
    }
    if c.disk > 0 && r.disk > c.disk {
        return Err(never(format!(
            "needs {} bytes of disk, node offers {}",
            r.disk, c.disk
        )));
    }
    if load.queued >= offer.max_queue {
        return Err(Decline {
            transient: true,
            reason: format!("queue full ({} shards waiting)", load.queued),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::job::{JobId, Resources, ShardRef};

    fn offer() -> Offer {
        Offer {
            capacity: Capacity {
                cpu: 2.0,
                memory: 1 << 30,
                disk: 0,
                slots: 2,
            },
            executors: vec!["shell".into()],
            allow_requesters: HashSet::new(),
            s3_read: None,
            max_queue: 4,
        }
    }

    fn request(cpu: f64) -> BidRequest {
        BidRequest {
            shard: ShardRef {
                job: JobId("j".into()),
                index: 0,
                attempt: 0,
            },
            executor: "shell".into(),
            resources: Resources {
                cpu,
                memory: 0,
                disk: 0,
                timeout_secs: 60,
            },
            publish: vec![],
            s3_reads: vec![],
        }
    }

    #[test]
    fn declines_s3_inputs_it_may_not_read_naming_the_setting() {
        let mut r = request(1.0);
        r.s3_reads = vec![crate::protocol::job::S3Read {
            bucket: "private".into(),
            prefix: "hr/".into(),
        }];
        let d = evaluate(&offer(), &Publishers::default(), "r", &r, IDLE).unwrap_err();
        assert!(
            !d.transient && d.reason.contains("[publishers.s3]"),
            "{d:?}"
        );
        let mut o = offer();
        o.s3_read = Some(shoal_publishers::s3::AllowList::parse(&["public/data/".into()]).unwrap());
        let d = evaluate(&o, &Publishers::default(), "r", &r, IDLE).unwrap_err();
        assert!(d.reason.contains("publishers.s3.read"), "{d:?}");
        r.s3_reads[0] = crate::protocol::job::S3Read {
            bucket: "public".into(),
            prefix: "data/x/".into(),
        };
        assert!(evaluate(&o, &Publishers::default(), "r", &r, IDLE).is_ok());
    }

    const IDLE: Load = Load {
        queued: 0,
        free_slots: 2,
    };

    #[test]
    fn bids_when_able() {
        assert!(evaluate(&offer(), &Publishers::default(), "r", &request(1.0), IDLE).is_ok());
    }

    #[test]
    fn declines_too_much_cpu_for_good() {
        let d = evaluate(&offer(), &Publishers::default(), "r", &request(8.0), IDLE).unwrap_err();
        assert!(!d.transient && d.reason.contains("cpu"), "{d:?}");
    }

    #[test]
    fn declines_disabled_executor_naming_the_config() {
        let mut o = offer();
        o.executors.clear();
        let d = evaluate(&o, &Publishers::default(), "r", &request(1.0), IDLE).unwrap_err();
        assert!(d.reason.contains("[executors.shell]"), "{d:?}");
    }

    #[test]
    fn declines_requesters_not_allowed() {
        let mut o = offer();
        o.allow_requesters.insert("friend".into());
        let d = evaluate(&o, &Publishers::default(), "stranger", &request(1.0), IDLE).unwrap_err();
        assert!(d.reason.contains("allow_requesters"), "{d:?}");
    }

    #[test]
    fn full_queue_is_a_transient_decline() {
        let load = Load {
            queued: 4,
            free_slots: 0,
        };
        let d = evaluate(&offer(), &Publishers::default(), "r", &request(1.0), load).unwrap_err();
        assert!(d.transient, "{d:?}");
    }
}
