//! Files and folders only the service user may read: every file holding a
//! secret or patient data (acknowledgment secret, API token, alert emails and
//! SMS, the SQLite database and its `-wal`/`-shm`) is mode 0600 inside a folder
//! of mode 0700.
//!
//! Files and folders are *created* with their mode (never written first and
//! restricted after: another user could open them in between). Existing ones
//! with wider permissions (an older version, a copied folder) are tightened
//! by [`tighten_tree`] at start-up, and the caller logs what changed.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

/// Mode of a private folder.
pub const DIR_MODE: u32 = 0o700;
/// Mode of a private file.
pub const FILE_MODE: u32 = 0o600;

/// Creates `dir` (and missing parents) with mode 0700; an existing folder is
/// left as it is (see [`tighten_tree`]).
pub fn create_dir(dir: &Path) -> io::Result<()> {
    std::fs::DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir)
}

/// Opens `path` for writing, created with mode 0600 (truncated when `append`
/// is false). An existing file with wider permissions is restricted before
/// anything is written to it.
pub fn open_file(path: &Path, append: bool) -> io::Result<File> {
    let mut o = OpenOptions::new();
    o.create(true).mode(FILE_MODE);
    if append {
        o.append(true);
    } else {
        o.write(true).truncate(true);
    }
    let f = o.open(path)?;
    restrict(&f)?;
    Ok(f)
}

/// Writes `bytes` to `path` (created 0600, see [`open_file`]) and syncs it.
pub fn write_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write as _;
    let mut f = open_file(path, false)?;
    f.write_all(bytes)?;
    f.sync_all()
}

fn restrict(f: &File) -> io::Result<()> {
    let mode = f.metadata()?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        f.set_permissions(std::fs::Permissions::from_mode(mode & 0o700))?;
    }
    Ok(())
}

/// What [`tighten_tree`] changed: each path with its mode before.
pub type Tightened = Vec<(PathBuf, u32)>;

/// Restricts `root` and everything under it: folders to 0700, files to at
/// most 0600 (group and other bits removed; the owner's bits kept). Symbolic
/// links are not followed. A missing `root` is no error.
pub fn tighten_tree(root: &Path) -> io::Result<Tightened> {
    let mut changed = Vec::new();
    match std::fs::symlink_metadata(root) {
        Ok(_) => tighten(root, &mut changed)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    Ok(changed)
}

fn tighten(path: &Path, changed: &mut Tightened) -> io::Result<()> {
    let meta = std::fs::symlink_metadata(path)?;
    let mode = meta.permissions().mode() & 0o777;
    if meta.is_dir() {
        if mode != DIR_MODE {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(DIR_MODE))?;
            changed.push((path.to_owned(), mode));
        }
        for entry in std::fs::read_dir(path)? {
            tighten(&entry?.path(), changed)?;
        }
    } else if meta.is_file() && mode & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o700))?;
        changed.push((path.to_owned(), mode));
    }
    Ok(())
}

/// Creates `dir` private (0700) if missing, else tightens it and its content
/// ([`tighten_tree`]) and logs (warn) how many entries were too open. The
/// folder's path is logged, never the names inside it.
pub fn prepare_dir(dir: &Path) -> io::Result<()> {
    if !dir.exists() {
        return create_dir(dir);
    }
    let changed = tighten_tree(dir)?;
    if let Some((_, before)) = changed.first() {
        tracing::warn!(
            message = "Data folder was readable by other users; tightened to 0700 (folders) and 0600 (files).",
            folder = %dir.display(),
            entries = changed.len(),
            first_mode_before = format!("{before:o}")
        );
    }
    Ok(())
}

/// The mode (permission bits) of `path`.
pub fn mode(path: &Path) -> io::Result<u32> {
    Ok(std::fs::metadata(path)?.permissions().mode() & 0o777)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_private_and_existing_tightened() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("a/b");
        create_dir(&d).unwrap();
        assert_eq!(mode(&d).unwrap(), 0o700);
        let f = d.join("x");
        write_file(&f, b"s").unwrap();
        assert_eq!(mode(&f).unwrap(), 0o600);
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_file(&f, b"t").unwrap();
        assert_eq!(mode(&f).unwrap(), 0o600, "rewriting restricts first");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o664)).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        let changed = tighten_tree(&t.path().join("a")).unwrap();
        assert_eq!(changed.len(), 2, "{changed:?}");
        assert_eq!(mode(&d).unwrap(), 0o700);
        assert_eq!(mode(&f).unwrap(), 0o600);
        assert!(tighten_tree(&t.path().join("a")).unwrap().is_empty());
        assert!(tighten_tree(&t.path().join("missing")).unwrap().is_empty());
    }
}
