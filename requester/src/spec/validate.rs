//! The rules a parsed spec must satisfy before the requester accepts it.
//!
//! Checked in the order the fields appear in a spec, and the first broken
//! rule is reported, naming its field.

use std::collections::HashMap;

use shoal_node::protocol::job::{Executor, Target};

use super::{InputSource, JobSpec, MAX_NAME_LEN, SpecError, Verify};

type Check = Result<(), SpecError>;

impl JobSpec {
    /// Checks every rule the deserializer cannot express.
    pub fn validate(&self) -> Check {
        check_name(&self.name)?;
        check_executor(&self.executor)?;
        check_inputs(&self.inputs)?;
        self.check_sharding()?;
        self.check_resources()?;
        self.check_placement()?;
        check_publish(&self.publish)
    }

    fn check_sharding(&self) -> Check {
        let glob = &self.sharding.glob;
        if glob.is_empty() {
            return fail(
                "sharding.glob",
                "must not be empty; use `**` for every input",
            );
        }
        if let Err(e) = crate::sharding::glob_matcher(glob) {
            return fail(
                "sharding.glob",
                format!("`{glob}` is not a valid glob: {e}"),
            );
        }
        if self.sharding.batch_size == 0 {
            return fail("sharding.batch_size", "must be at least 1");
        }
        Ok(())
    }

    fn check_resources(&self) -> Check {
        let cpu = self.resources.cpu;
        if !cpu.is_finite() || cpu <= 0.0 {
            return fail("resources.cpu", "must be a positive number of cores");
        }
        if self.resources.timeout.0 == 0 {
            return fail("resources.timeout", "must be at least 1s");
        }
        Ok(())
    }

    fn check_placement(&self) -> Check {
        let p = &self.placement;
        if p.bidders == 0 {
            return fail("placement.bidders", "must be at least 1");
        }
        if p.replicas == 0 {
            return fail("placement.replicas", "must be at least 1");
        }
        if p.replicas > p.bidders {
            return fail(
                "placement.replicas",
                format!(
                    "{} is more than placement.bidders ({}); ask at least as many nodes as run each shard",
                    p.replicas, p.bidders
                ),
            );
        }
        if p.labels.keys().any(|k| k.is_empty()) {
            return fail("placement.labels", "label names must not be empty");
        }
        match self.verify {
            Verify::Deterministic if p.replicas < 2 => fail(
                "verify",
                format!(
                    "deterministic needs placement.replicas >= 2 to have outputs to compare (it is {})",
                    p.replicas
                ),
            ),
            Verify::None if p.replicas > 1 => fail(
                "placement.replicas",
                format!(
                    "{} replicas need `verify: deterministic`; with `verify: none` a shard runs once",
                    p.replicas
                ),
            ),
            _ => Ok(()),
        }
    }
}

fn fail(field: impl Into<String>, message: impl Into<String>) -> Check {
    Err(SpecError::new(field, message))
}

fn check_name(name: &str) -> Check {
    if name.is_empty() {
        return fail("name", "must not be empty");
    }
    if name.chars().count() > MAX_NAME_LEN {
        return fail("name", format!("must be at most {MAX_NAME_LEN} characters"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return fail(
            "name",
            format!("may only contain letters, digits, `.`, `_` and `-` (found {c:?})"),
        );
    }
    Ok(())
}

fn check_executor(executor: &Executor) -> Check {
    match executor {
        Executor::Shell { command, env } => {
            let Some(program) = command.first() else {
                return fail(
                    "executor.command",
                    "must name a program to run, e.g. [\"wc\", \"-w\"]",
                );
            };
            if program.is_empty() {
                return fail("executor.command[0]", "must not be empty");
            }
            if let Some(key) = env.keys().find(|k| k.is_empty() || k.contains(['=', '\0'])) {
                return fail(
                    "executor.env",
                    format!("{key:?} is not a valid variable name"),
                );
            }
            Ok(())
        }
    }
}

fn check_inputs(inputs: &InputSource) -> Check {
    match inputs {
        InputSource::Local { path } => {
            let field = "inputs.local.path";
            if path.is_empty() {
                return fail(field, "must not be empty");
            }
            if !is_absolute(path) {
                return fail(
                    field,
                    format!("`{path}` must be absolute: nodes read it at the same path"),
                );
            }
            check_no_parent(field, path)
        }
        InputSource::Urls(urls) => {
            if urls.is_empty() {
                return fail("inputs.urls", "must list at least one URL");
            }
            for (i, raw) in urls.iter().enumerate() {
                check_url(&format!("inputs.urls[{i}]"), raw)?;
            }
            Ok(())
        }
        InputSource::Inline(items) => {
            if items.is_empty() {
                return fail("inputs.inline", "must list at least one input");
            }
            let mut seen: HashMap<&str, usize> = HashMap::new();
            for (i, item) in items.iter().enumerate() {
                let field = format!("inputs.inline[{i}].name");
                check_file_name(&field, &item.name)?;
                if let Some(first) = seen.insert(&item.name, i) {
                    return fail(
                        field,
                        format!(
                            "`{}` is also the name of inputs.inline[{first}]; names must be unique",
                            item.name
                        ),
                    );
                }
            }
            Ok(())
        }
        InputSource::S3(s3) => check_s3_input(s3),
        InputSource::Ipfs(ipfs) => check_ipfs_input(ipfs),
    }
}

fn check_ipfs_input(ipfs: &super::IpfsInput) -> Check {
    if let Err(e) = ipfs.cid.parse::<shoal_publishers::content::Cid>() {
        return fail(
            "inputs.ipfs.cid",
            format!("`{}` is not a CID: {e}", ipfs.cid),
        );
    }
    for (i, p) in ipfs.providers.iter().enumerate() {
        let field = format!("inputs.ipfs.providers[{i}]");
        match p.parse::<shoal_node::libp2p::Multiaddr>() {
            Ok(addr) if shoal_node::ipfs::peer_of(&addr).is_some() => {}
            Ok(_) => return fail(field, format!("`{p}` must end in /p2p/<peer id>")),
            Err(e) => return fail(field, format!("`{p}` is not a multiaddr: {e}")),
        }
    }
    Ok(())
}

fn check_s3_input(s3: &super::S3Input) -> Check {
    check_bucket("inputs.s3.bucket", &s3.bucket)?;
    if let Some(url) = &s3.endpoint_url {
        check_url("inputs.s3.endpoint_url", url)?;
    }
    if let Some(region) = &s3.region
        && (region.is_empty()
            || !region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'))
    {
        return fail(
            "inputs.s3.region",
            format!("`{region}` is not a region name like eu-west-1"),
        );
    }
    Ok(())
}

fn check_url(field: &str, raw: &str) -> Check {
    match url::Url::parse(raw) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => Ok(()),
        Ok(u) => fail(
            field,
            format!(
                "`{raw}` is a {} URL; only http and https are supported",
                u.scheme()
            ),
        ),
        Err(e) => fail(field, format!("`{raw}` is not a valid URL: {e}")),
    }
}

fn check_publish(targets: &[Target]) -> Check {
    if targets.is_empty() {
        return fail(
            "publish",
            "must list at least one target, e.g. [{local: {path: results}}]",
        );
    }
    for (i, target) in targets.iter().enumerate() {
        match target {
            Target::Local(local) => {
                let field = format!("publish[{i}].local.path");
                if is_absolute(&local.path) {
                    return fail(
                        field,
                        format!(
                            "`{}` must be relative: it is placed under the node's local publish root",
                            local.path
                        ),
                    );
                }
                check_no_parent(&field, &local.path)?;
            }
            Target::S3(s3) => check_s3_target(i, s3)?,
            Target::Ipfs(_) => {}
        }
    }
    Ok(())
}

/// Bucket names per the S3 rules (3-63 chars of a-z, 0-9, `.`, `-`); the
/// prefix may only use the placeholders the node fills in.
fn check_s3_target(i: usize, s3: &shoal_publishers::target::S3Target) -> Check {
    check_bucket(&format!("publish[{i}].s3.bucket"), &s3.bucket)?;
    let field = format!("publish[{i}].s3.prefix");
    if let Err(e) = shoal_publishers::s3::expand_prefix(&s3.prefix, "j", 0, "n") {
        return fail(field, e);
    }
    Ok(())
}

fn check_bucket(field: &str, bucket: &str) -> Check {
    let ok_chars = bucket
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
    let ends_ok = bucket
        .bytes()
        .next()
        .zip(bucket.bytes().last())
        .is_some_and(|(a, z)| a.is_ascii_alphanumeric() && z.is_ascii_alphanumeric());
    if !(3..=63).contains(&bucket.len()) || !ok_chars || !ends_ok {
        return fail(
            field,
            format!(
                "`{bucket}` is not a valid S3 bucket name (3 to 63 characters: lowercase letters, digits, `.` and `-`)"
            ),
        );
    }
    Ok(())
}

/// A name an input gets under `$SHOAL_INPUTS`: relative, no `..`, no empty
/// or `.` segments, so two spellings cannot name one file.
fn check_file_name(field: &str, name: &str) -> Check {
    if name.is_empty() {
        return fail(field, "must not be empty");
    }
    if is_absolute(name) {
        return fail(field, format!("`{name}` must be a relative path"));
    }
    check_no_parent(field, name)?;
    if name.contains('\0') || segments(name).any(|s| s.is_empty() || s == ".") {
        return fail(
            field,
            format!("`{name}` must be a plain relative file path like `dir/a.txt`"),
        );
    }
    Ok(())
}

fn check_no_parent(field: &str, path: &str) -> Check {
    if segments(path).any(|s| s == "..") {
        return fail(field, format!("`{path}` must not contain a `..` component"));
    }
    Ok(())
}

/// Path segments; `\` separates too, so a path means the same on any node.
fn segments(path: &str) -> impl Iterator<Item = &str> {
    path.split(['/', '\\'])
}

fn is_absolute(path: &str) -> bool {
    path.starts_with(['/', '\\'])
}
