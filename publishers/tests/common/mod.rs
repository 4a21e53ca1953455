//! Test data shared by the content-addressing integration tests.
#![allow(dead_code)]

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// kubo's default chunk size.
pub const K: usize = 262_144;

/// The generator the JS vector script uses (tests/vectors/README.md):
/// xorshift32 from 0x9e3779b9, 4 little-endian bytes per step.
pub fn xorshift(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 4);
    let mut x: u32 = 0x9e37_79b9;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Creates `files` (relative path, content) and empty directories under `root`.
pub fn write_tree(root: &Path, files: &[(&str, &[u8])], empty_dirs: &[&str]) -> io::Result<()> {
    for (path, content) in files {
        let path = root.join(path);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::write(path, content)?;
    }
    for dir in empty_dirs {
        fs::create_dir_all(root.join(dir))?;
    }
    Ok(())
}

/// The tree of tests/vectors/README.md: nested directories, an empty file,
/// an empty directory, a multi-chunk file, and names that sort by bytes
/// (`Z` < `a` < `ü`).
pub fn reference_tree(root: &Path) -> io::Result<()> {
    let a = xorshift(1000);
    let big = xorshift(K + 1);
    write_tree(
        root,
        &[
            ("a.txt", &a),
            ("empty.txt", b""),
            ("sub/big.bin", &big),
            ("sub/nested/deep.txt", b"deep\n"),
            ("Z.txt", b"upper\n"),
            ("\u{fc}.txt", b"umlaut\n"),
        ],
        &["emptydir"],
    )
}

/// Every file and directory under `root`, relative, with file contents, sorted.
pub fn snapshot(root: &Path) -> io::Result<Vec<(PathBuf, Option<Vec<u8>>)>> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir)? {
            let path = entry?.path();
            let relative = path
                .strip_prefix(root)
                .map(Path::to_path_buf)
                .unwrap_or_default();
            if path.is_dir() {
                out.push((relative, None));
                stack.push(path);
            } else {
                out.push((relative, Some(fs::read(&path)?)));
            }
        }
    }
    out.sort();
    Ok(out)
}
