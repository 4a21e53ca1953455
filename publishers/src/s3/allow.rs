//! The operator's allow lists: which buckets and key prefixes a node may
//! write outputs to, or read inputs from.

use globset::{Glob, GlobMatcher};

/// One entry: `bucket` or `bucket/key-prefix`. The bucket may be a glob
/// (`team-*`); the key prefix is literal, so end it with `/` to mean a
/// folder (`results` also covers `results-old/`).
#[derive(Debug, Clone)]
struct Rule {
    bucket: GlobMatcher,
    prefix: String,
}

/// A list of [`Rule`]s; empty allows nothing.
#[derive(Debug, Clone, Default)]
pub struct AllowList {
    rules: Vec<Rule>,
    /// The entries as the operator wrote them, for error messages.
    text: Vec<String>,
}

impl AllowList {
    /// Parses entries such as `shoal-results`, `team-*/shoal/`.
    pub fn parse(entries: &[String]) -> Result<Self, String> {
        let mut rules = Vec::with_capacity(entries.len());
        for entry in entries {
            let entry_trimmed = entry.trim().trim_start_matches("s3://");
            let (bucket, prefix) = entry_trimmed.split_once('/').unwrap_or((entry_trimmed, ""));
            if bucket.is_empty() {
                return Err(format!(
                    "allow entry {entry:?} names no bucket; write `bucket` or `bucket/prefix/`"
                ));
            }
            let glob = Glob::new(bucket)
                .map_err(|e| format!("allow entry {entry:?}: bad bucket pattern: {e}"))?;
            rules.push(Rule {
                bucket: glob.compile_matcher(),
                prefix: prefix.to_string(),
            });
        }
        Ok(AllowList {
            rules,
            text: entries.to_vec(),
        })
    }

    /// Whether `key_prefix` in `bucket` is covered by some entry.
    pub fn covers(&self, bucket: &str, key_prefix: &str) -> bool {
        self.rules
            .iter()
            .any(|r| r.bucket.is_match(bucket) && key_prefix.starts_with(&r.prefix))
    }

    /// `Ok` when covered, else a reason naming the config setting.
    pub fn check(&self, setting: &str, bucket: &str, key_prefix: &str) -> Result<(), String> {
        if self.covers(bucket, key_prefix) {
            return Ok(());
        }
        let allowed = if self.text.is_empty() {
            "nothing".to_string()
        } else {
            self.text.join(", ")
        };
        Err(format!(
            "s3://{bucket}/{key_prefix} is not in this node's {setting} (which allows {allowed})"
        ))
    }
}

/// The fixed head of a prefix template: what every key it expands to starts
/// with, whatever the job, shard and node.
pub fn template_head(template: &str) -> String {
    let trimmed = template.trim_start_matches('/');
    match trimmed.find('{') {
        Some(i) => trimmed[..i].to_string(),
        None if trimmed.is_empty() || trimmed.ends_with('/') => trimmed.to_string(),
        None => format!("{trimmed}/"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str]) -> AllowList {
        AllowList::parse(&entries.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn bucket_globs_and_literal_prefixes() {
        let allow = list(&["results", "team-*/shoal/"]);
        assert!(allow.covers("results", ""));
        assert!(allow.covers("results", "any/thing/"));
        assert!(allow.covers("team-a", "shoal/j/1/"));
        assert!(!allow.covers("team-a", "other/"));
        assert!(!allow.covers("results2", "x/"));
        assert!(!allow.covers("secrets", ""));
    }

    #[test]
    fn empty_list_allows_nothing_and_says_so() {
        let err = AllowList::default()
            .check("publishers.s3.allow", "b", "p/")
            .unwrap_err();
        assert!(
            err.contains("publishers.s3.allow") && err.contains("allows nothing"),
            "{err}"
        );
    }

    #[test]
    fn bad_entries_are_rejected() {
        assert!(AllowList::parse(&["/x".into()]).is_err());
        assert!(AllowList::parse(&["[".into()]).is_err());
    }

    #[test]
    fn template_heads() {
        assert_eq!(template_head("results"), "results/");
        assert_eq!(template_head("/results/{job}/x"), "results/");
        assert_eq!(template_head("{node}/"), "");
        assert_eq!(template_head(""), "");
    }
}
