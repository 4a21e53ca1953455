//! The local publisher: copies a shard's output to
//! `<root>/<path>/<job>/<shard>/` on the node's own filesystem.
//!
//! The copy goes to a temporary sibling, is verified against the shard's CID,
//! and only then renamed into place, so a present directory is a complete,
//! verified one. Publishing again is a no-op when the directory already
//! verifies.

use std::path::{Component, Path, PathBuf};

use crate::content;
use crate::publisher::{BoxFuture, Output, PublishError, Publisher};
use crate::target::{Location, Target};

const DRIVER: &str = "local";

/// Publishes under a root directory.
pub struct LocalPublisher {
    root: PathBuf,
}

impl LocalPublisher {
    /// A publisher writing under `root` (created if needed).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalPublisher { root: root.into() }
    }

    fn destination(&self, target: &Target, output: &Output<'_>) -> Result<PathBuf, PublishError> {
        let Target::Local(local) = target else {
            return Err(PublishError::NotConfigured(DRIVER));
        };
        let relative = safe_relative(&local.path).map_err(PublishError::NotAllowed)?;
        let job = safe_relative(output.job).map_err(PublishError::NotAllowed)?;
        Ok(self
            .root
            .join(relative)
            .join(job)
            .join(output.shard.to_string()))
    }
}

/// `path` as a relative path that stays under its root.
fn safe_relative(path: &str) -> Result<PathBuf, String> {
    let p = Path::new(path);
    let mut out = PathBuf::new();
    for component in p.components() {
        match component {
            Component::Normal(c) => out.push(c),
            Component::CurDir => {}
            _ => {
                return Err(format!(
                    "path {path:?} must be relative and must not contain '..'"
                ));
            }
        }
    }
    Ok(out)
}

impl Publisher for LocalPublisher {
    fn kind(&self) -> &'static str {
        DRIVER
    }

    fn check(&self, target: &Target) -> Result<(), String> {
        match target {
            Target::Local(local) => safe_relative(&local.path).map(|_| ()),
            _ => Err("not a local target".into()),
        }
    }

    fn publish<'a>(
        &'a self,
        target: &'a Target,
        output: Output<'a>,
    ) -> BoxFuture<'a, Result<Location, PublishError>> {
        Box::pin(async move {
            let dest = self.destination(target, &output)?;
            let src = output.dir.to_owned();
            let cid = *output.cid;
            let location = Location {
                driver: DRIVER.into(),
                url: format!("file://{}", dest.display()),
                providers: Vec::new(),
            };
            tokio::task::spawn_blocking(move || publish_blocking(&src, &dest, &cid))
                .await
                .map_err(|e| failed(format!("publish task failed: {e}"), false))??;
            Ok(location)
        })
    }
}

fn failed(message: String, retryable: bool) -> PublishError {
    PublishError::failed(DRIVER, message, retryable)
}

fn publish_blocking(src: &Path, dest: &Path, cid: &cid::Cid) -> Result<(), PublishError> {
    if dest.exists() && content::verify_path(dest, cid).is_ok() {
        return Ok(());
    }
    let parent = dest
        .parent()
        .ok_or_else(|| failed(format!("{} has no parent", dest.display()), false))?;
    std::fs::create_dir_all(parent)
        .map_err(|e| failed(format!("cannot create {}: {e}", parent.display()), true))?;
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = parent.join(format!(".{name}.partial-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    copy_tree(src, &tmp).map_err(|e| failed(format!("copy to {}: {e}", tmp.display()), true))?;
    if let Err(e) = content::verify_path(&tmp, cid) {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(PublishError::Mismatch {
            expected: cid.to_string(),
            message: e.to_string(),
        });
    }
    if dest.exists() {
        std::fs::remove_dir_all(dest)
            .map_err(|e| failed(format!("cannot replace {}: {e}", dest.display()), true))?;
    }
    std::fs::rename(&tmp, dest)
        .map_err(|e| failed(format!("cannot move into {}: {e}", dest.display()), true))?;
    Ok(())
}

/// Copies a directory tree (regular files and directories only).
fn copy_tree(src: &Path, dest: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dest)?;
    for entry in std::fs::read_dir(src)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let to = dest.join(entry.file_name());
        if kind.is_dir() {
            copy_tree(&entry.path(), &to)?;
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &to)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::{Profile, import_path};
    use crate::target::LocalTarget;

    fn output_dir() -> (tempfile::TempDir, cid::Cid) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("count.txt"), b"42\n").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/x"), b"x").unwrap();
        let cid = import_path(dir.path(), Profile::V1RawLeaves).unwrap();
        (dir, cid)
    }

    #[tokio::test]
    async fn publishes_verified_copy_idempotently() {
        let (src, cid) = output_dir();
        let root = tempfile::tempdir().unwrap();
        let publisher = LocalPublisher::new(root.path());
        let target = Target::Local(LocalTarget {
            path: "results".into(),
        });
        let output = Output {
            job: "j1",
            shard: 3,
            node: "n",
            dir: src.path(),
            cid: &cid,
        };
        let first = publisher.publish(&target, output).await.unwrap();
        let second = publisher.publish(&target, output).await.unwrap();
        assert_eq!(first, second);
        let dest = root.path().join("results/j1/3");
        assert_eq!(std::fs::read(dest.join("count.txt")).unwrap(), b"42\n");
        content::verify_path(&dest, &cid).unwrap();
    }

    #[tokio::test]
    async fn output_that_does_not_match_its_cid_is_not_published() {
        let (src, _) = output_dir();
        let (_, other_cid) = {
            let d = tempfile::tempdir().unwrap();
            std::fs::write(d.path().join("a"), b"other").unwrap();
            let c = import_path(d.path(), Profile::V1RawLeaves).unwrap();
            (d, c)
        };
        let root = tempfile::tempdir().unwrap();
        let publisher = LocalPublisher::new(root.path());
        let target = Target::Local(LocalTarget { path: "".into() });
        let output = Output {
            job: "j1",
            shard: 0,
            node: "n",
            dir: src.path(),
            cid: &other_cid,
        };
        let err = publisher.publish(&target, output).await.unwrap_err();
        assert!(matches!(err, PublishError::Mismatch { .. }), "{err}");
        assert!(!root.path().join("j1/0").exists());
    }

    #[test]
    fn escaping_paths_are_refused() {
        let publisher = LocalPublisher::new("/tmp/x");
        for bad in ["../up", "/abs", "a/../../b"] {
            let target = Target::Local(LocalTarget { path: bad.into() });
            assert!(publisher.check(&target).is_err(), "{bad}");
        }
    }
}
