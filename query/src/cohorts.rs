//! Named cohorts: Cohort Builder definitions saved per principal, kept in
//! `<state_dir>/cohorts.json` (written to a temporary file, then renamed), and offered in that
//! principal's sessions as tables `cohort_<name>`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use anyhow::Context;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedCohort {
    pub definition: String,
    pub created_at: String,
}

/// Owner (principal key) → name → cohort.
type Book = BTreeMap<String, BTreeMap<String, SavedCohort>>;

pub struct NamedCohorts {
    path: PathBuf,
    book: RwLock<Book>,
}

pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 48
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

impl NamedCohorts {
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let book = match std::fs::read_to_string(path) {
            Ok(text) => serde_json::from_str(&text)
                .with_context(|| format!("{} is not a cohort book", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Book::new(),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        Ok(NamedCohorts {
            path: path.to_path_buf(),
            book: RwLock::new(book),
        })
    }

    pub fn of(&self, owner: &str) -> BTreeMap<String, SavedCohort> {
        self.book
            .read()
            .map(|b| b.get(owner).cloned().unwrap_or_default())
            .unwrap_or_default()
    }

    pub fn save(&self, owner: &str, name: &str, cohort: SavedCohort) -> anyhow::Result<()> {
        let mut book = self
            .book
            .write()
            .map_err(|_| anyhow::anyhow!("cohort book poisoned"))?;
        book.entry(owner.to_string())
            .or_default()
            .insert(name.to_string(), cohort);
        let text = serde_json::to_string_pretty(&*book)?;
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = self.path.with_extension("json.tmp");
        std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &self.path)
            .with_context(|| format!("cannot write {}", self.path.display()))?;
        Ok(())
    }
}
