//! `catalog.toml`: the one file that says what a dataset holds, where each table lives and which
//! tier each table and column demands. Everything that reads or writes a dataset goes through it.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};

pub const CATALOG_FILE: &str = "catalog.toml";
pub const FORMAT_VERSION: u32 = 1;

/// Data-access tiers, ordered: a principal of tier `t` may read anything whose tier is `<= t`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    Public,
    Registered,
    Controlled,
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Tier::Public => "public",
            Tier::Registered => "registered",
            Tier::Controlled => "controlled",
        })
    }
}

impl FromStr for Tier {
    type Err = EngineError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "public" => Ok(Tier::Public),
            "registered" => Ok(Tier::Registered),
            "controlled" => Ok(Tier::Controlled),
            other => Err(EngineError::Catalog(format!(
                "unknown tier '{other}' (expected public, registered or controlled)"
            ))),
        }
    }
}

/// How a table's files are split into shards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Partitioning {
    /// `table/shard=<k>/part-<n>.parquet`, `k = shard_of(person_id, shards)`.
    Person { shards: u32 },
    /// `table/contig=<c>/part-<n>.parquet`, rows sorted by position inside each contig.
    Contig { contigs: Vec<String> },
    /// `table/part-<n>.parquet`: small tables without a person key (vocabulary).
    Single,
}

/// Where the bytes of a dataset live: the dataset folder itself, or an object store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct StoreConfig {
    /// `file:///abs/dir`, `s3://bucket/prefix`; a bare relative path is relative to the dataset.
    pub url: String,
    /// S3-compatible endpoint (e.g. `http://127.0.0.1:9000`); credentials come from the
    /// environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`), never from the catalog.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_http: bool,
    /// How long a failing request is retried (with backoff) before the query gets the error;
    /// object_store's default (180 s) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_timeout_secs: Option<u64>,
    /// A remote Flight SQL source (`grpc://`, `grpc+tls://`): the environment variable holding
    /// the token Strata presents to it (never the token itself in the catalog).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_env: Option<String>,
    /// A remote Flight SQL source over TLS: PEM file of the CA that signed its certificate
    /// (relative to the dataset folder); the WebPKI roots when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// A remote Flight SQL source: how long connecting may take (default 10 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_timeout_secs: Option<u64>,
    /// A remote Flight SQL source: how long it may take to plan a statement (default 60 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_timeout_secs: Option<u64>,
}

impl StoreConfig {
    /// A remote Flight SQL server rather than an object store: its tables are queried, not read.
    pub fn is_flight_sql(&self) -> bool {
        ["grpc://", "grpc+tcp://", "grpc+tls://"]
            .iter()
            .any(|scheme| self.url.starts_with(scheme))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableEntry {
    /// `vocabulary`, `ehr`, `survey`, `wearable`, `genomics`, or `other` for kept unknown tables.
    pub domain: String,
    pub tier: Tier,
    /// Column carrying the participant; absent for tables without participants.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub person_key: Option<String>,
    pub partitioning: Partitioning,
    /// Store name (key of `[stores]`) holding the table; default `local` = the dataset folder.
    #[serde(default = "default_store")]
    pub store: String,
    /// Path of the table inside its store; defaults to the table name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Per-shard overrides: shard key (`"3"` or a contig) -> `store:path`, so one shard may live
    /// on another store than its siblings.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub shard_locations: BTreeMap<String, String>,
    /// Columns that demand a higher tier than the table.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub column_tiers: BTreeMap<String, Tier>,
    #[serde(default)]
    pub rows: u64,
}

fn default_store() -> String {
    LOCAL_STORE.to_string()
}

pub const LOCAL_STORE: &str = "local";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetInfo {
    pub name: String,
    pub format_version: u32,
    /// How the dataset was made (`generate --seed 42 --persons 1000`, `import omop …`).
    #[serde(default)]
    pub source: String,
    pub person_key: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Catalog {
    pub dataset: DatasetInfo,
    #[serde(default)]
    pub stores: BTreeMap<String, StoreConfig>,
    #[serde(default)]
    pub tables: BTreeMap<String, TableEntry>,
}

impl Catalog {
    pub fn new(name: impl Into<String>, source: impl Into<String>) -> Self {
        Catalog {
            dataset: DatasetInfo {
                name: name.into(),
                format_version: FORMAT_VERSION,
                source: source.into(),
                person_key: crate::layout::PERSON_KEY.into(),
            },
            stores: BTreeMap::new(),
            tables: BTreeMap::new(),
        }
    }

    pub fn load(dataset_dir: &Path) -> Result<Self> {
        let path = dataset_dir.join(CATALOG_FILE);
        if !dataset_dir.is_dir() {
            return Err(EngineError::NotADataset(dataset_dir.display().to_string()));
        }
        let text = std::fs::read_to_string(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                EngineError::NotADataset(dataset_dir.display().to_string())
            } else {
                EngineError::io(&path, e)
            }
        })?;
        Self::parse(&text)
    }

    pub fn parse(text: &str) -> Result<Self> {
        let catalog: Catalog = toml::from_str(text).map_err(|e| {
            EngineError::Catalog(
                e.message()
                    .lines()
                    .next()
                    .unwrap_or("invalid toml")
                    .to_string(),
            )
        })?;
        catalog.validate()?;
        Ok(catalog)
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("catalog serializes")
    }

    /// Writes `catalog.toml` atomically (temporary file, fsync, rename).
    pub fn save(&self, dataset_dir: &Path) -> Result<()> {
        let tmp = dataset_dir.join(format!(".{CATALOG_FILE}.tmp"));
        let final_path = dataset_dir.join(CATALOG_FILE);
        crate::fsutil::write_durable(&tmp, self.to_toml().as_bytes())?;
        std::fs::rename(&tmp, &final_path).map_err(|e| EngineError::io(&final_path, e))?;
        Ok(())
    }

    fn validate(&self) -> Result<()> {
        if self.dataset.format_version != FORMAT_VERSION {
            return Err(EngineError::Catalog(format!(
                "format_version {} is not supported (this build reads {FORMAT_VERSION})",
                self.dataset.format_version
            )));
        }
        for (name, table) in &self.tables {
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            {
                return Err(EngineError::Catalog(format!(
                    "table name '{name}' must be lowercase letters, digits and '_'"
                )));
            }
            if table.store != LOCAL_STORE && !self.stores.contains_key(&table.store) {
                return Err(EngineError::Catalog(format!(
                    "table '{name}' names store '{}' which is not in [stores]",
                    table.store
                )));
            }
            if let Partitioning::Person { shards } = table.partitioning {
                if shards == 0 {
                    return Err(EngineError::Catalog(format!("table '{name}' has 0 shards")));
                }
                if table.person_key.is_none() {
                    return Err(EngineError::Catalog(format!(
                        "table '{name}' is partitioned by person but has no person_key"
                    )));
                }
            }
            if self
                .stores
                .get(&table.store)
                .is_some_and(|s| s.is_flight_sql())
            {
                self.validate_remote(name, table)?;
            }
            for location in table.shard_locations.values() {
                let store = location.split_once(':').map(|(s, _)| s).unwrap_or("");
                if self.stores.get(store).is_some_and(|s| s.is_flight_sql()) {
                    return Err(EngineError::Catalog(format!(
                        "table '{name}' has a shard on store '{store}', a remote Flight SQL \
                         source: only whole tables can live there"
                    )));
                }
                if store != LOCAL_STORE && !self.stores.contains_key(store) {
                    return Err(EngineError::Catalog(format!(
                        "table '{name}' has a shard on store '{store}' which is not in [stores] \
                         (shard locations are written 'store:path')"
                    )));
                }
            }
        }
        Ok(())
    }

    /// A table on a remote Flight SQL source is one table there. With participants it must be
    /// controlled: the registered tier's views (shifted dates, generalized demographics, the
    /// participants it leaves out) are decided from the program's own tables, which cannot
    /// speak for a remote's rows.
    fn validate_remote(&self, name: &str, table: &TableEntry) -> Result<()> {
        let bad = |why: &str| Err(EngineError::Catalog(format!("table '{name}': {why}")));
        if table.partitioning != Partitioning::Single || !table.shard_locations.is_empty() {
            return bad(
                "a table on a remote Flight SQL source has partitioning { kind = \"single\" } \
                 and no shard_locations",
            );
        }
        if table.person_key.is_some() && table.tier != Tier::Controlled {
            return bad(
                "a remote table with participants (person_key) must be tier \"controlled\"",
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Catalog {
        let mut c = Catalog::new("t", "test");
        c.tables.insert(
            "person".into(),
            TableEntry {
                domain: "ehr".into(),
                tier: Tier::Registered,
                person_key: Some("person_id".into()),
                partitioning: Partitioning::Person { shards: 4 },
                store: LOCAL_STORE.into(),
                path: None,
                shard_locations: BTreeMap::new(),
                column_tiers: crate::tables::column_tiers("person"),
                rows: 10,
            },
        );
        c
    }

    #[test]
    fn catalog_round_trips_through_toml() {
        let c = sample();
        assert_eq!(Catalog::parse(&c.to_toml()).unwrap(), c);
    }

    #[test]
    fn tiers_are_ordered() {
        assert!(Tier::Public < Tier::Registered && Tier::Registered < Tier::Controlled);
    }

    #[test]
    fn unknown_store_is_a_one_line_error() {
        let mut c = sample();
        c.tables.get_mut("person").unwrap().store = "nowhere".into();
        let err = Catalog::parse(&c.to_toml()).unwrap_err().to_string();
        assert!(err.contains("nowhere") && !err.contains('\n'), "{err}");
    }

    #[test]
    fn a_remote_table_is_whole_and_controlled_when_it_has_participants() {
        let mut c = sample();
        c.stores.insert(
            "partner".into(),
            StoreConfig {
                url: "grpc://127.0.0.1:50051".into(),
                ..Default::default()
            },
        );
        assert!(c.stores["partner"].is_flight_sql());
        let person = c.tables.get_mut("person").unwrap();
        person.store = "partner".into();
        let err = Catalog::parse(&c.to_toml()).unwrap_err().to_string();
        assert!(err.contains("kind = \"single\""), "{err}");
        let person = c.tables.get_mut("person").unwrap();
        person.partitioning = Partitioning::Single;
        let err = Catalog::parse(&c.to_toml()).unwrap_err().to_string();
        assert!(err.contains("must be tier \"controlled\""), "{err}");
        c.tables.get_mut("person").unwrap().tier = Tier::Controlled;
        Catalog::parse(&c.to_toml()).unwrap();
        // Without participants, any tier.
        let person = c.tables.get_mut("person").unwrap();
        person.tier = Tier::Public;
        person.person_key = None;
        Catalog::parse(&c.to_toml()).unwrap();
        // A shard of a local table cannot live on a remote source.
        let mut c = sample();
        c.stores.insert(
            "partner".into(),
            StoreConfig {
                url: "grpc+tls://partner.example:443".into(),
                ..Default::default()
            },
        );
        c.tables
            .get_mut("person")
            .unwrap()
            .shard_locations
            .insert("1".into(), "partner:person".into());
        let err = Catalog::parse(&c.to_toml()).unwrap_err().to_string();
        assert!(err.contains("only whole tables"), "{err}");
    }

    #[test]
    fn malformed_toml_is_a_one_line_error() {
        let err = Catalog::parse("[dataset\nname=").unwrap_err().to_string();
        assert!(!err.contains('\n'), "{err}");
    }

    #[test]
    fn zero_shards_refused() {
        let mut c = sample();
        c.tables.get_mut("person").unwrap().partitioning = Partitioning::Person { shards: 0 };
        assert!(Catalog::parse(&c.to_toml()).is_err());
    }
}
