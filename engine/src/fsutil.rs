//! Durable, all-or-nothing file system steps shared by every writer of datasets.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{EngineError, Result};

/// Writes a file and fsyncs it before returning.
pub fn write_durable(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = File::create(path).map_err(|e| EngineError::io(path, e))?;
    f.write_all(bytes).map_err(|e| EngineError::io(path, e))?;
    f.sync_all().map_err(|e| EngineError::io(path, e))?;
    Ok(())
}

/// A new secret at `path`: 32 random bytes kept as 64 hex digits, readable by the owner only
/// (0600), written beside it first and renamed into place so no reader sees half of it. The
/// servers keep their keys this way (the date-shift secret, the cluster secret).
pub fn write_new_secret(path: &Path) -> Result<[u8; 32]> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |e| EngineError::io(path, e);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let mut secret = [0u8; 32];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut secret))
        .map_err(io)?;
    let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    f.write_all(hex.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    Ok(secret)
}

/// A folder next to `target` that becomes `target` on `commit` and vanishes if dropped first,
/// so an interrupted or failed write never leaves a half-written dataset behind.
pub struct StagingDir {
    staging: PathBuf,
    target: PathBuf,
    committed: bool,
}

impl StagingDir {
    pub fn new(target: &Path) -> Result<Self> {
        let parent = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&parent).map_err(|e| EngineError::io(&parent, e))?;
        let name = target
            .file_name()
            .ok_or_else(|| {
                EngineError::InvalidInput(format!("{} is not a folder name", target.display()))
            })?
            .to_string_lossy()
            .to_string();
        let staging = parent.join(format!(".{name}.tmp-{}", std::process::id()));
        if staging.exists() {
            std::fs::remove_dir_all(&staging).map_err(|e| EngineError::io(&staging, e))?;
        }
        std::fs::create_dir_all(&staging).map_err(|e| EngineError::io(&staging, e))?;
        Ok(StagingDir {
            staging,
            target: target.to_path_buf(),
            committed: false,
        })
    }

    pub fn path(&self) -> &Path {
        &self.staging
    }

    /// Renames the staging folder onto the target; an existing target is replaced only after
    /// the new one is complete.
    pub fn commit(mut self) -> Result<()> {
        sync_dir(&self.staging);
        if self.target.exists() {
            let old = self.staging.with_extension("old");
            std::fs::rename(&self.target, &old).map_err(|e| EngineError::io(&self.target, e))?;
            std::fs::rename(&self.staging, &self.target)
                .map_err(|e| EngineError::io(&self.target, e))?;
            let _ = std::fs::remove_dir_all(&old);
        } else {
            std::fs::rename(&self.staging, &self.target)
                .map_err(|e| EngineError::io(&self.target, e))?;
        }
        if let Some(parent) = self.target.parent() {
            sync_dir(parent);
        }
        self.committed = true;
        Ok(())
    }
}

impl Drop for StagingDir {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.staging);
        }
    }
}

fn sync_dir(dir: &Path) {
    if let Ok(f) = File::open(dir) {
        let _ = f.sync_all();
    }
}
