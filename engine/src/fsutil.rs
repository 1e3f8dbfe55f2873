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
