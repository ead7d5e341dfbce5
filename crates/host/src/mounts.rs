//! Host directories a guest may see (`mounts` in a manifest, `run --dir`).
//!
//! Nothing is mounted unless asked for. A mount is read-only unless it says
//! `writable`: a service that only reads its credentials (a Kubernetes
//! service-account token, a CA) cannot be turned into one that rewrites them.
//! The directory is opened again for every instance, so a guest sees files
//! replaced on the host (rotated tokens) and a restarted service sees the
//! directory as it is now.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

/// One host directory and where the guest sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// An existing directory on the host.
    pub host: PathBuf,
    /// An absolute path in the guest, e.g. `/var/run/secrets/kubernetes.io/serviceaccount`.
    pub guest: String,
    pub writable: bool,
}

impl Mount {
    /// Checks one mount: `host` (relative to `base`) must be a directory and
    /// `guest` an absolute, normal path. Errors say what is wrong with which
    /// part; the caller adds the file and field.
    pub fn new(base: &Path, host: &Path, guest: &str, writable: bool) -> Result<Mount> {
        let host = if host.is_absolute() {
            host.to_path_buf()
        } else {
            base.join(host)
        };
        match std::fs::metadata(&host) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => bail!("host: {} is not a directory", host.display()),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                bail!("host: {} does not exist; create it or fix the path", host.display())
            }
            Err(err) => bail!("host: {}: {err}", host.display()),
        }
        check_guest_path(guest)?;
        Ok(Mount {
            host,
            guest: normalize_guest(guest),
            writable,
        })
    }

    /// Parses `run --dir HOST[::GUEST]` as `wasmtime run --dir` does: without
    /// `::GUEST`, the guest sees the directory at the path given for HOST.
    /// Mounts from the command line are writable, as in `wasmtime run`.
    pub fn from_flag(spec: &str) -> Result<Mount> {
        let (host, guest) = match spec.split_once("::") {
            Some((host, guest)) => (host, guest.to_string()),
            None => (spec, spec.to_string()),
        };
        if host.is_empty() {
            bail!("--dir {spec:?}: expected HOST[::GUEST]");
        }
        // `--dir .` and `--dir data` name the guest path relative to its
        // root, as wasmtime does for a relative guest path.
        let guest = if guest.starts_with('/') {
            guest
        } else {
            format!("/{}", guest.trim_start_matches("./"))
        };
        Mount::new(Path::new("."), Path::new(host), &guest, true).with_context(|| format!("--dir {spec:?}"))
    }

    fn perms(&self) -> FsPerms {
        if self.writable {
            FsPerms::ReadWrite
        } else {
            FsPerms::ReadOnly
        }
    }
}

/// Gives the guest of `wasi` every mount in `mounts`.
pub fn preopen(wasi: &mut WasiCtxBuilder, mounts: &[Mount]) -> Result<()> {
    for mount in mounts {
        wasi.preopened_dir(&mount.host, &mount.guest, mount.perms())
            .map_err(anyhow::Error::from)
            .with_context(|| format!("cannot open {} to mount it at {}", mount.host.display(), mount.guest))?;
    }
    Ok(())
}

/// Checks a list of mounts has no guest path twice.
pub fn check_distinct(mounts: &[Mount]) -> Result<()> {
    for (i, m) in mounts.iter().enumerate() {
        if let Some(j) = mounts[..i].iter().position(|other| other.guest == m.guest) {
            bail!(
                "mounts[{i}].guest: {} is also mounts[{j}].guest; mount one directory per guest path",
                m.guest
            );
        }
    }
    Ok(())
}

fn check_guest_path(guest: &str) -> Result<()> {
    if !guest.starts_with('/') {
        bail!("guest: {guest:?} must be an absolute path (start with '/')");
    }
    if guest.contains('\0') {
        bail!("guest: {guest:?} contains a NUL byte");
    }
    if guest.split('/').any(|part| part == "..") {
        bail!("guest: {guest:?} must not contain '..'");
    }
    Ok(())
}

/// `/a//b/` and `/a/b` are the same guest path.
fn normalize_guest(guest: &str) -> String {
    let parts: Vec<&str> = guest.split('/').filter(|p| !p.is_empty() && *p != ".").collect();
    format!("/{}", parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mount_needs_an_existing_directory_and_an_absolute_guest_path() {
        let base = std::env::temp_dir();
        let dir = tempfile_dir(&base, "mounts-ok");
        let m = Mount::new(
            &base,
            Path::new(dir.file_name().unwrap_or_default()),
            "/etc//app/",
            false,
        )
        .expect("a directory relative to base mounts");
        assert_eq!(m.host, dir);
        assert_eq!(m.guest, "/etc/app");

        let missing = Mount::new(&base, Path::new("no-such-dir-loophost"), "/x", false).unwrap_err();
        assert!(missing.to_string().contains("does not exist"), "{missing}");
        let relative = Mount::new(&base, &dir, "etc", false).unwrap_err();
        assert!(relative.to_string().contains("absolute"), "{relative}");
        let escape = Mount::new(&base, &dir, "/a/../b", false).unwrap_err();
        assert!(escape.to_string().contains(".."), "{escape}");
        let file = dir.join("f");
        std::fs::write(&file, b"x").expect("write a file");
        let not_dir = Mount::new(&base, &file, "/f", false).unwrap_err();
        assert!(not_dir.to_string().contains("not a directory"), "{not_dir}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn dir_flags_follow_wasmtime_run() {
        let dir = tempfile_dir(&std::env::temp_dir(), "mounts-flag");
        let shown = dir.display().to_string();
        let same = Mount::from_flag(&shown).expect("HOST alone");
        assert_eq!(same.guest, shown);
        assert!(same.writable);
        let mapped = Mount::from_flag(&format!("{shown}::/data")).expect("HOST::GUEST");
        assert_eq!(mapped.guest, "/data");
        let relative = Mount::from_flag(&format!("{shown}::data")).expect("relative guest path");
        assert_eq!(relative.guest, "/data");
        assert!(Mount::from_flag("::/x").is_err());
        let dup = [mapped.clone(), relative];
        assert!(
            check_distinct(&dup)
                .unwrap_err()
                .to_string()
                .contains("mounts[1].guest")
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn tempfile_dir(base: &Path, name: &str) -> PathBuf {
        let dir = base.join(format!("loophost-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create a temp dir");
        dir
    }
}
