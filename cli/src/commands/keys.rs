//! `strata keys` and `strata token`: a dev passport issuer for tests and demos.
//!
//! `strata keys --out DIR` writes
//! - `DIR/issuer.pem`  — the ES256 (P-256) private key, PKCS#8 PEM, mode 0600;
//! - `DIR/jwks.json`   — the public key as a JWK Set (`kid` = RFC 7638 thumbprint, `alg` ES256,
//!   `iss` = the issuer URL), ready for `strata serve --jwks DIR/jwks.json`;
//! - `DIR/issuer.json` — `{"issuer": URL, "kid": …, "alg": "ES256", …}`.
//!
//! `strata token --keys DIR` prints a GA4GH passport signed with that key, with the visas of the
//! tier asked for — or a deliberately broken one for tests (`--expired`, `--missing-visa`,
//! `--alg none|hs256`, `--visa-sub`, `--visa-issuer`, `--forge`).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::ValueEnum;
use serde_json::json;
use strata_engine::Tier;
use strata_passport::Egress;
use strata_passport::dev::{
    DEFAULT_ISSUER, DevIssuer, PassportAlg, TokenSpec, VisaKind, mint_passport,
};

pub const PRIVATE_KEY_FILE: &str = "issuer.pem";
pub const JWKS_FILE: &str = "jwks.json";
pub const ISSUER_FILE: &str = "issuer.json";
pub const DEFAULT_KEYS_DIR: &str = "./.strata/keys";

/// `strata keys`: make a dev issuer key pair.
#[derive(clap::Args, Debug, Clone)]
pub struct KeysArgs {
    /// Folder for issuer.pem (private key, 0600), jwks.json (public JWKS) and issuer.json.
    #[arg(long)]
    pub out: PathBuf,
    /// Issuer URL the key signs passports and visas for.
    #[arg(long, default_value = DEFAULT_ISSUER)]
    pub issuer: String,
    /// Replace a key pair already in the folder.
    #[arg(long)]
    pub force: bool,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum TierArg {
    Public,
    Registered,
    Controlled,
}

impl From<TierArg> for Tier {
    fn from(t: TierArg) -> Tier {
        match t {
            TierArg::Public => Tier::Public,
            TierArg::Registered => Tier::Registered,
            TierArg::Controlled => Tier::Controlled,
        }
    }
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum EgressArg {
    Rows,
    Aggregates,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum VisaArg {
    /// AcceptedTermsAndPolicies urn:strata:terms:ducc
    Ducc,
    /// AcceptedTermsAndPolicies urn:strata:terms:rcr-training
    RcrTraining,
    /// ResearcherStatus urn:strata:researcher:verified
    Researcher,
    /// ControlledAccessGrants urn:strata:tier:controlled
    Controlled,
}

impl From<VisaArg> for VisaKind {
    fn from(v: VisaArg) -> VisaKind {
        match v {
            VisaArg::Ducc => VisaKind::Ducc,
            VisaArg::RcrTraining => VisaKind::RcrTraining,
            VisaArg::Researcher => VisaKind::Researcher,
            VisaArg::Controlled => VisaKind::Controlled,
        }
    }
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlgArg {
    /// Properly signed (the default).
    Es256,
    /// Broken: `alg: none`, no signature.
    None,
    /// Broken: HS256 with the issuer's public key PEM as the HMAC secret.
    Hs256,
}

/// `strata token`: print a signed dev passport.
#[derive(clap::Args, Debug, Clone)]
pub struct TokenArgs {
    /// Tier whose visas the passport carries.
    #[arg(long, value_enum)]
    pub tier: TierArg,
    /// Subject (`sub`) of the passport and its visas.
    #[arg(long)]
    pub sub: String,
    /// `strata_egress` claim (absent unless given; absent means rows).
    #[arg(long, value_enum)]
    pub egress: Option<EgressArg>,
    /// Lifetime of the passport and its visas: 90s, 30m, 1h, 7d, or seconds.
    #[arg(long, default_value = "1h", value_parser = parse_ttl)]
    pub ttl: i64,
    /// Folder written by `strata keys`.
    #[arg(long, default_value = DEFAULT_KEYS_DIR)]
    pub keys: PathBuf,
    /// Broken: passport and visas expired an hour ago.
    #[arg(long)]
    pub expired: bool,
    /// Broken: leave this visa out (repeatable).
    #[arg(long = "missing-visa", value_enum)]
    pub missing_visa: Vec<VisaArg>,
    /// Signing algorithm; `none` and `hs256` make broken tokens.
    #[arg(long, value_enum, default_value_t = AlgArg::Es256)]
    pub alg: AlgArg,
    /// Broken: visas name this subject instead of --sub.
    #[arg(long, value_name = "OTHER")]
    pub visa_sub: Option<String>,
    /// Broken: visas name this issuer and are signed by a fresh key nobody trusts.
    #[arg(long, value_name = "OTHER")]
    pub visa_issuer: Option<String>,
    /// Broken: the passport's signature bytes are tampered with.
    #[arg(long)]
    pub forge: bool,
}

/// Parses `90s`, `30m`, `1h`, `7d` or plain seconds; 1 s to 366 days.
pub fn parse_ttl(s: &str) -> Result<i64, String> {
    let bad = || format!("expected a duration like 90s, 30m, 1h or 7d, got {s:?}");
    let s = s.trim();
    let (digits, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let n: i64 = digits.parse().map_err(|_| bad())?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    let secs = n.checked_mul(mult).ok_or_else(bad)?;
    if !(1..=366 * 86_400).contains(&secs) {
        return Err(format!("ttl must be between 1s and 366d, got {s:?}"));
    }
    Ok(secs)
}

pub fn run_keys(args: &KeysArgs) -> anyhow::Result<()> {
    if args.issuer.trim().is_empty() {
        bail!("--issuer must not be empty");
    }
    let issuer = DevIssuer::generate(&args.issuer);
    write_keys(&args.out, &issuer, args.force)?;
    eprintln!(
        "wrote dev issuer {} (ES256, kid {}) to {}: {PRIVATE_KEY_FILE} (private), {JWKS_FILE}, {ISSUER_FILE}; \
         serve with --jwks {}",
        issuer.issuer(),
        issuer.kid(),
        args.out.display(),
        args.out.join(JWKS_FILE).display()
    );
    Ok(())
}

pub fn run_token(args: &TokenArgs) -> anyhow::Result<()> {
    if args.sub.trim().is_empty() {
        bail!("--sub must not be empty");
    }
    if args.visa_sub.as_deref().is_some_and(|s| s.is_empty()) {
        bail!("--visa-sub must not be empty");
    }
    if args.visa_issuer.as_deref().is_some_and(|s| s.is_empty()) {
        bail!("--visa-issuer must not be empty");
    }
    let issuer = load_issuer(&args.keys)?;
    let mut spec = TokenSpec::new(args.tier.into(), &args.sub, strata_passport::now_unix());
    spec.egress = args.egress.map(|e| match e {
        EgressArg::Rows => Egress::Rows,
        EgressArg::Aggregates => Egress::Aggregates,
    });
    spec.ttl_secs = args.ttl;
    spec.expired = args.expired;
    spec.missing = args.missing_visa.iter().map(|&v| v.into()).collect();
    spec.alg = match args.alg {
        AlgArg::Es256 => PassportAlg::Es256,
        AlgArg::None => PassportAlg::None,
        AlgArg::Hs256 => PassportAlg::Hs256PublicKey,
    };
    spec.visa_sub = args.visa_sub.clone();
    spec.visa_issuer = args.visa_issuer.clone();
    spec.forge = args.forge;
    let token = mint_passport(&issuer, &spec);
    let mut out = std::io::stdout().lock();
    writeln!(out, "{token}").context("cannot write the token to stdout")?;
    Ok(())
}

/// Loads the dev issuer written by `strata keys` from `dir`.
pub fn load_issuer(dir: &Path) -> anyhow::Result<DevIssuer> {
    let pem_path = dir.join(PRIVATE_KEY_FILE);
    let meta_path = dir.join(ISSUER_FILE);
    if !pem_path.is_file() {
        bail!(
            "no dev keys in {} ({PRIVATE_KEY_FILE} not found): run `strata keys --out {}` first",
            dir.display(),
            dir.display()
        );
    }
    let pem = fs::read_to_string(&pem_path)
        .with_context(|| format!("cannot read {}", pem_path.display()))?;
    let meta_text = fs::read_to_string(&meta_path)
        .with_context(|| format!("cannot read {}", meta_path.display()))?;
    let meta: serde_json::Value = serde_json::from_str(&meta_text)
        .map_err(|e| anyhow::anyhow!("{} is not valid JSON: {e}", meta_path.display()))?;
    let Some(url) = meta
        .get("issuer")
        .and_then(|v| v.as_str())
        .filter(|s| !s.is_empty())
    else {
        bail!("{} names no \"issuer\"", meta_path.display());
    };
    let issuer = DevIssuer::from_pkcs8_pem(url, &pem)
        .map_err(|e| anyhow::anyhow!("{}: {e}", pem_path.display()))?;
    if let Some(kid) = meta.get("kid").and_then(|v| v.as_str())
        && kid != issuer.kid()
    {
        bail!(
            "{} names kid {kid} but {} holds key {}: the folder mixes two key pairs",
            meta_path.display(),
            pem_path.display(),
            issuer.kid()
        );
    }
    Ok(issuer)
}

/// Loads the dev issuer of `dir`, making one (with the default issuer URL) if there is none.
/// For `strata demo`.
pub fn ensure_keys(dir: &Path) -> anyhow::Result<DevIssuer> {
    if dir.join(PRIVATE_KEY_FILE).is_file() {
        return load_issuer(dir);
    }
    let issuer = DevIssuer::generate(DEFAULT_ISSUER);
    write_keys(dir, &issuer, false)?;
    Ok(issuer)
}

/// Writes `issuer.pem` (0600), `jwks.json` and `issuer.json` into `dir`: each to a temporary
/// file first, then renamed into place, so a failure leaves no half-written key pair.
pub fn write_keys(dir: &Path, issuer: &DevIssuer, force: bool) -> anyhow::Result<()> {
    if dir.exists() && !dir.is_dir() {
        bail!("{} exists and is not a folder", dir.display());
    }
    if !force
        && [PRIVATE_KEY_FILE, JWKS_FILE, ISSUER_FILE]
            .iter()
            .any(|f| dir.join(f).exists())
    {
        bail!(
            "{} already holds dev keys; pass --force to replace them",
            dir.display()
        );
    }
    create_private_dir(dir)?;
    let jwks = serde_json::to_string_pretty(&issuer.jwks())? + "\n";
    let meta = serde_json::to_string_pretty(&json!({
        "issuer": issuer.issuer(),
        "kid": issuer.kid(),
        "alg": "ES256",
        "private_key": PRIVATE_KEY_FILE,
        "jwks": JWKS_FILE,
    }))? + "\n";
    let files = [
        (PRIVATE_KEY_FILE, issuer.private_key_pem(), true),
        (JWKS_FILE, jwks, false),
        (ISSUER_FILE, meta, false),
    ];
    let mut staged: Vec<(PathBuf, PathBuf)> = Vec::new();
    let result = (|| -> anyhow::Result<()> {
        for (name, content, private) in &files {
            let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
            staged.push((tmp.clone(), dir.join(name)));
            write_new(&tmp, content.as_bytes(), *private)
                .with_context(|| format!("cannot write {}", dir.join(name).display()))?;
        }
        for (tmp, dest) in &staged {
            fs::rename(tmp, dest).with_context(|| format!("cannot write {}", dest.display()))?;
        }
        Ok(())
    })();
    if result.is_err() {
        for (tmp, _) in &staged {
            let _ = fs::remove_file(tmp);
        }
    }
    result
}

fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))
}

fn write_new(path: &Path, bytes: &[u8], private: bool) -> std::io::Result<()> {
    let _ = fs::remove_file(path);
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(if private { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut f = opts.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_forms() {
        assert_eq!(parse_ttl("1h"), Ok(3600));
        assert_eq!(parse_ttl("90s"), Ok(90));
        assert_eq!(parse_ttl("30m"), Ok(1800));
        assert_eq!(parse_ttl("7d"), Ok(7 * 86_400));
        assert_eq!(parse_ttl("120"), Ok(120));
        for bad in [
            "",
            "h",
            "1x",
            "-1h",
            "0s",
            "400d",
            "1.5h",
            "99999999999999999999d",
        ] {
            assert!(parse_ttl(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn keys_round_trip_and_refuse_overwrite() {
        let dir = std::env::temp_dir().join(format!("strata-keys-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let issuer = DevIssuer::generate(DEFAULT_ISSUER);
        write_keys(&dir, &issuer, false).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.join(PRIVATE_KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let back = load_issuer(&dir).unwrap();
        assert_eq!(back.kid(), issuer.kid());
        assert_eq!(back.issuer(), DEFAULT_ISSUER);
        assert!(write_keys(&dir, &issuer, false).is_err());
        write_keys(&dir, &DevIssuer::generate(DEFAULT_ISSUER), true).unwrap();
        let verifier =
            strata_passport::PassportVerifier::from_jwks_file(&dir.join(JWKS_FILE), false).unwrap();
        assert_eq!(verifier.issuers(), vec![DEFAULT_ISSUER.to_string()]);
        let leftovers: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
            .collect();
        assert!(leftovers.is_empty());
        fs::remove_dir_all(&dir).unwrap();
    }
}
