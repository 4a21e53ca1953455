//! The node's ed25519 identity, kept on disk as `identity.key`.
//!
//! The file holds the libp2p protobuf encoding of the keypair and is created
//! with mode 0600: whoever can read it can impersonate the node.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use libp2p::identity::Keypair;

/// File name of the identity key inside a node home.
pub const IDENTITY_FILE: &str = "identity.key";

/// Why an identity could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("identity file {path} is missing; run `shoal-node init --home <dir>` to create one")]
    Missing { path: PathBuf },
    #[error("cannot read identity file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "identity file {path} is corrupt (not a libp2p ed25519 key): {reason}; restore it from a backup or create a new identity with `shoal-node init --force`"
    )]
    Corrupt { path: PathBuf, reason: String },
    #[error("cannot write identity file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Generates a fresh ed25519 identity and writes it to `path` with mode 0600.
pub fn generate(path: &Path) -> Result<Keypair, IdentityError> {
    let keypair = Keypair::generate_ed25519();
    let bytes = keypair
        .to_protobuf_encoding()
        .map_err(|e| IdentityError::Corrupt {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    write_private(path, &bytes).map_err(|source| IdentityError::Write {
        path: path.to_owned(),
        source,
    })?;
    Ok(keypair)
}

/// Loads the identity from `path`, naming the file in every error.
pub fn load(path: &Path) -> Result<Keypair, IdentityError> {
    let bytes = fs::read(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            IdentityError::Missing {
                path: path.to_owned(),
            }
        } else {
            IdentityError::Read {
                path: path.to_owned(),
                source,
            }
        }
    })?;
    let keypair = Keypair::from_protobuf_encoding(&bytes).map_err(|e| IdentityError::Corrupt {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    if keypair.clone().try_into_ed25519().is_err() {
        return Err(IdentityError::Corrupt {
            path: path.to_owned(),
            reason: "key type is not ed25519".into(),
        });
    }
    Ok(keypair)
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn generated_identity_round_trips_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(IDENTITY_FILE);
        let key = generate(&path).unwrap();
        let loaded = load(&path).unwrap();
        assert_eq!(key.public(), loaded.public());
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn corrupt_identity_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(IDENTITY_FILE);
        fs::write(&path, b"not a key").unwrap();
        let err = load(&path).unwrap_err().to_string();
        assert!(
            err.contains("identity.key") && err.contains("corrupt"),
            "{err}"
        );
    }

    #[test]
    fn missing_identity_says_how_to_create_one() {
        let dir = tempfile::tempdir().unwrap();
        let err = load(&dir.path().join(IDENTITY_FILE))
            .unwrap_err()
            .to_string();
        assert!(err.contains("shoal-node init"), "{err}");
    }
}
