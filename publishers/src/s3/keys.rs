//! Object keys: expanding a target's prefix template.

/// Placeholders a prefix may use.
const PLACEHOLDERS: [&str; 3] = ["{job}", "{shard}", "{node}"];

/// The key prefix a shard's objects go under: `template` with `{job}`,
/// `{shard}` and `{node}` filled in, `{job}/{shard}/` appended when the
/// template has no `{shard}` (so two shards never write the same keys), no
/// leading `/`, and a trailing `/` unless empty.
pub fn expand_prefix(template: &str, job: &str, shard: u32, node: &str) -> Result<String, String> {
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let tail = &rest[open..];
        match PLACEHOLDERS.iter().find(|p| tail.starts_with(**p)) {
            Some(p) => rest = &tail[p.len()..],
            None => {
                return Err(format!(
                    "`{template}` uses an unknown placeholder; only {{job}}, {{shard}} and {{node}} are filled in"
                ));
            }
        }
    }
    if rest.contains('}') || template.matches('}').count() != template.matches('{').count() {
        return Err(format!("`{template}` has an unmatched `}}`"));
    }
    let mut prefix = template.trim_start_matches('/').to_string();
    if !prefix.contains("{shard}") {
        if !prefix.is_empty() && !prefix.ends_with('/') {
            prefix.push('/');
        }
        prefix.push_str("{job}/{shard}/");
    }
    let prefix = prefix
        .replace("{job}", job)
        .replace("{shard}", &shard.to_string())
        .replace("{node}", node);
    if prefix
        .trim_end_matches('/')
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return Err(format!(
            "`{template}` must not contain empty, `.` or `..` path segments"
        ));
    }
    let mut prefix = prefix;
    if !prefix.ends_with('/') {
        prefix.push('/');
    }
    Ok(prefix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_placeholders() {
        assert_eq!(
            expand_prefix("out/{job}/{node}/{shard}", "j1", 7, "12D3").unwrap(),
            "out/j1/12D3/7/"
        );
        assert_eq!(
            expand_prefix("/x/{shard}-part/", "j", 0, "n").unwrap(),
            "x/0-part/"
        );
    }

    #[test]
    fn appends_job_and_shard_when_shard_is_missing() {
        assert_eq!(expand_prefix("", "j", 3, "n").unwrap(), "j/3/");
        assert_eq!(
            expand_prefix("results", "j", 3, "n").unwrap(),
            "results/j/3/"
        );
        assert_eq!(expand_prefix("r/{node}/", "j", 3, "n").unwrap(), "r/n/j/3/");
    }

    #[test]
    fn rejects_bad_templates() {
        for bad in [
            "{bucket}/x",
            "a/{job",
            "a}/b",
            "a//b/{shard}",
            "a/../{shard}",
            "./{shard}",
        ] {
            assert!(expand_prefix(bad, "j", 1, "n").is_err(), "{bad}");
        }
    }
}
