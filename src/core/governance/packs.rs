//! The reviewed-packs policy and the gate every dispatch passes before st2 is asked to run
//! anything.
//!
//! st2 records no license for a pack, so the license is the one the review recorded; the
//! installed version comes from the cluster (`GET /api/v1/packs/{ref}`), read at most once
//! per cache period.

use std::cmp::Ordering;
use std::fmt;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use serde::Deserialize;
use st2_basics::{BoundedMap, Bounds};

use crate::core::DispatchError;
use crate::core::portarium::ErrorKind;
use st2_client::{St2Client, St2Error};

/// Licenses allowed in production when the policy names none: permissive SPDX identifiers,
/// as Portarium's runtime licensing audit asks (GPL/AGPL and unknown are blocked).
pub const PERMISSIVE_LICENSES: [&str; 9] = [
    "Apache-2.0",
    "MIT",
    "BSD-2-Clause",
    "BSD-3-Clause",
    "ISC",
    "0BSD",
    "Zlib",
    "PSF-2.0",
    "Unlicense",
];

/// A pack version, ordered by SemVer 2.0 precedence: pre-release parts compare numerically
/// where they are numbers (`rc.2 < rc.10`) and `+build` metadata is ignored.
#[derive(Debug, Clone)]
pub struct Version(semver::Version);

impl Version {
    /// Parses `1`, `1.2`, `1.2.3`, `3.10dev`, `1.0.0-rc.1`, `1.0.0+build.5`; `None` when it
    /// is not SemVer once st2's habits are normalized (see [`normalize_version`]).
    pub fn parse(text: &str) -> Option<Self> {
        semver::Version::parse(&normalize_version(text)?)
            .ok()
            .map(Self)
    }
}

/// st2 and its packs write versions SemVer does not accept: a leading `v`, one or two
/// numbers (`3.10`), a pre-release glued to the numbers (`3.10dev`, `1.2.0.dev1`). This
/// pads the numbers to three and puts a `-` before such a tail; `None` without a number.
fn normalize_version(text: &str) -> Option<String> {
    let text = text.trim();
    let text = text.strip_prefix('v').unwrap_or(text);
    let end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (head, tail) = text.split_at(end);
    let head = head.trim_end_matches('.');
    let numbers: Vec<&str> = head.split('.').collect();
    if head.is_empty() || numbers.len() > 3 {
        return None;
    }
    let mut out = numbers.join(".");
    for _ in numbers.len()..3 {
        out.push_str(".0");
    }
    match tail.chars().next() {
        None => {}
        Some('-' | '+') => out.push_str(tail),
        Some(_) => {
            out.push('-');
            out.push_str(tail.trim_start_matches('.'));
        }
    }
    Some(out)
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.cmp_precedence(&other.0)
    }
}

// `1.2` and `1.2.0+b7` are the same version, so equality follows the ordering.
impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}

impl Eq for Version {}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// An allowed version range: comparators joined by commas, all of which must hold
/// (`>=1.2, <2`, `=3.10dev`, `1.4.0`, `*`). A bare version means exactly that version, and a
/// pre-release is inside a range its precedence falls in (`2.0.0-rc.1` is `<2`), unlike
/// Cargo's requirements: the policy records what a reviewer saw, not what a build may pick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionRange {
    text: String,
    bounds: Vec<(Ordering, bool, Version)>,
}

impl VersionRange {
    /// Parses a range; the error says which part is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut bounds = Vec::new();
        for part in text.split(',').map(str::trim) {
            if part == "*" {
                continue;
            }
            // (ordering the version must have against the bound, whether equal also passes)
            let (op, rest) = [
                (">=", (Ordering::Greater, true)),
                ("<=", (Ordering::Less, true)),
                (">", (Ordering::Greater, false)),
                ("<", (Ordering::Less, false)),
                ("==", (Ordering::Equal, true)),
                ("=", (Ordering::Equal, true)),
            ]
            .into_iter()
            .find_map(|(p, op)| part.strip_prefix(p).map(|rest| (op, rest)))
            .unwrap_or(((Ordering::Equal, true), part));
            let version = Version::parse(rest).ok_or_else(|| {
                format!("{part:?} is not a comparator like >=1.2 or <2 followed by a version")
            })?;
            bounds.push((op.0, op.1, version));
        }
        Ok(Self {
            text: text.trim().to_string(),
            bounds,
        })
    }

    /// Whether `version` satisfies every comparator.
    pub fn contains(&self, version: &Version) -> bool {
        self.bounds.iter().all(|(want, or_equal, bound)| {
            let got = version.cmp(bound);
            got == *want || (*or_equal && got == Ordering::Equal)
        })
    }
}

impl fmt::Display for VersionRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for VersionRange {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// One reviewed pack.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PackReview {
    /// The pack ref, e.g. `linux`.
    #[serde(rename = "ref")]
    pub pack: String,
    /// Installed versions the review covers, e.g. `>=1.2, <2`.
    pub versions: VersionRange,
    /// The SPDX license expression the reviewer found (`Apache-2.0`, `MIT OR Apache-2.0`).
    pub license: String,
    /// Who reviewed it.
    pub reviewer: String,
    /// When (`YYYY-MM-DD`).
    pub reviewed_at: String,
    /// `sha256:<hex>` of the reviewed pack archive, for the deployment pipeline to compare.
    #[serde(default)]
    pub digest: Option<String>,
}

/// The reviewed-packs policy file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PacksPolicy {
    /// SPDX licenses allowed (each one id, optionally `WITH` an exception); unset means
    /// [`PERMISSIVE_LICENSES`].
    #[serde(default)]
    pub allowed_licenses: Option<Vec<String>>,
    /// Every pack whose actions may run.
    #[serde(default)]
    pub packs: Vec<PackReview>,
}

/// Why a policy file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The file could not be read.
    #[error("cannot read packs policy {path}: {reason}; check the path (governance.packs_policy)")]
    Read {
        /// The file.
        path: String,
        /// The I/O error, as text.
        reason: String,
    },
    /// The file breaks the policy's format or rules; every problem is listed.
    #[error("packs policy {path} is invalid:\n{}", .problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid {
        /// The file.
        path: String,
        /// One line per problem, each starting with the field path.
        problems: Vec<String>,
    },
}

impl PacksPolicy {
    /// Reads and checks a policy file.
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let text =
            st2_basics::files::read_text(path, st2_basics::files::MAX_TEXT_FILE).map_err(|e| {
                PolicyError::Read {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                }
            })?;
        Self::from_yaml(&text).map_err(|problems| PolicyError::Invalid {
            path: path.display().to_string(),
            problems,
        })
    }

    /// Parses and checks policy YAML; every problem is returned with its field path.
    pub fn from_yaml(text: &str) -> Result<Self, Vec<String>> {
        use serde_norway::Value;
        let value: Value =
            serde_norway::from_str(text).map_err(|e| vec![format!("not valid YAML: {e}")])?;
        let map = match value {
            Value::Mapping(m) => m,
            Value::Null => serde_norway::Mapping::new(),
            _ => {
                return Err(vec![
                    "write a mapping with packs: and allowedLicenses:".into(),
                ]);
            }
        };
        // Each part is read on its own so that one bad entry does not hide the ones after it.
        let mut out = Vec::new();
        let mut allowed_licenses = None;
        let mut packs = Vec::new();
        for (key, value) in map {
            match key.as_str() {
                Some("allowedLicenses") => match part(value, "allowedLicenses") {
                    Ok(l) => allowed_licenses = l,
                    Err(e) => out.push(e),
                },
                Some("packs") => match value {
                    Value::Sequence(items) => {
                        for (i, item) in items.into_iter().enumerate() {
                            match part(item, &format!("packs[{i}]")) {
                                Ok(p) => packs.push((i, p)),
                                Err(e) => out.push(e),
                            }
                        }
                    }
                    Value::Null => {}
                    _ => out.push("packs: write a list of reviewed packs".into()),
                },
                _ => out.push(format!(
                    "{}: unknown field, expected allowedLicenses or packs",
                    serde_norway::to_string(&key).unwrap_or_default().trim_end()
                )),
            }
        }
        out.extend(problems(&packs, allowed_licenses.as_deref()));
        if out.is_empty() {
            Ok(Self {
                allowed_licenses,
                packs: packs.into_iter().map(|(_, p)| p).collect(),
            })
        } else {
            Err(out)
        }
    }

    /// The review of `pack`, if there is one.
    pub fn review(&self, pack: &str) -> Option<&PackReview> {
        self.packs.iter().find(|p| p.pack == pack)
    }

    /// The review of `pack` when one exists and its license is allowed; the verdict otherwise.
    /// Needs nothing from st2.
    pub fn usable_review(&self, pack: &str) -> Result<&PackReview, Verdict> {
        let review = self.review(pack).ok_or(Verdict::Unreviewed)?;
        if self.license_allowed(&review.license) {
            Ok(review)
        } else {
            Err(Verdict::LicenseNotAllowed(review.license.clone()))
        }
    }

    /// Whether `license` may run in production under this policy: its SPDX expression holds
    /// with only the allowed licenses (`MIT OR GPL-3.0-only` does, `MIT AND GPL-3.0-only`
    /// does not). An expression that does not parse is never allowed.
    pub fn license_allowed(&self, license: &str) -> bool {
        let allowed: Vec<spdx::Licensee> = match &self.allowed_licenses {
            Some(list) => list
                .iter()
                .filter_map(|l| spdx::Licensee::parse(l).ok())
                .collect(),
            None => PERMISSIVE_LICENSES
                .iter()
                .filter_map(|l| spdx::Licensee::parse(l).ok())
                .collect(),
        };
        spdx::Expression::parse(license)
            .is_ok_and(|e| e.evaluate(|req| allowed.iter().any(|l| l.satisfies(req))))
    }

    /// The verdict for `pack` given its installed version (`None`: not installed).
    pub fn verdict(&self, pack: &str, installed: Option<&str>) -> Verdict {
        let review = match self.usable_review(pack) {
            Ok(r) => r,
            Err(refused) => return refused,
        };
        let Some(installed) = installed else {
            return Verdict::NotInstalled;
        };
        match Version::parse(installed) {
            Some(v) if review.versions.contains(&v) => Verdict::Approved,
            _ => Verdict::VersionDrift {
                installed: installed.to_string(),
                range: review.versions.to_string(),
            },
        }
    }
}

/// The rule checks on the entries that parsed, each with its index in the file.
fn problems(packs: &[(usize, PackReview)], allowed_licenses: Option<&[String]>) -> Vec<String> {
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, p) in packs {
        let at = |f: &str| format!("packs[{i}].{f}");
        if p.pack.is_empty()
            || !p
                .pack
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            out.push(format!(
                "{}: {:?} is not an st2 pack ref (a-z, 0-9, _)",
                at("ref"),
                p.pack
            ));
        } else if !seen.insert(&p.pack) {
            out.push(format!("{}: {} is reviewed twice", at("ref"), p.pack));
        }
        if let Err(e) = spdx::Expression::parse(&p.license) {
            out.push(format!(
                "{}: {:?} is not an SPDX license expression such as Apache-2.0 or MIT OR Apache-2.0 ({})",
                at("license"),
                p.license,
                e.reason
            ));
        }
        if p.reviewer.trim().is_empty() {
            out.push(format!("{}: name who reviewed the pack", at("reviewer")));
        }
        if time::Date::parse(
            &p.reviewed_at,
            time::macros::format_description!("[year]-[month]-[day]"),
        )
        .is_err()
        {
            out.push(format!(
                "{}: {:?} is not a date YYYY-MM-DD",
                at("reviewedAt"),
                p.reviewed_at
            ));
        }
        if let Some(d) = &p.digest {
            let hex = d.strip_prefix("sha256:").unwrap_or("");
            if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                out.push(format!("{}: write sha256:<64 hex digits>", at("digest")));
            }
        }
    }
    if let Some(allowed) = allowed_licenses {
        for (i, l) in allowed.iter().enumerate() {
            if let Err(e) = spdx::Licensee::parse(l) {
                out.push(format!(
                    "allowedLicenses[{i}]: {l:?} is not one SPDX license id such as MIT ({})",
                    e.reason
                ));
            }
        }
    }
    out
}

/// One part of the policy read into `T`, or its error prefixed with where the part sits.
fn part<T: serde::de::DeserializeOwned>(value: serde_norway::Value, at: &str) -> Result<T, String> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let inner = e.path().to_string();
        let path = match inner.as_str() {
            "." => at.to_string(),
            p if p.starts_with('[') => format!("{at}{p}"),
            p => format!("{at}.{p}"),
        };
        format!("{path}: {}", e.inner())
    })
}

/// What the policy says about one pack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Reviewed, license allowed, installed version in range.
    Approved,
    /// No review recorded.
    Unreviewed,
    /// The installed version is outside the reviewed range.
    VersionDrift {
        /// What st2 reports.
        installed: String,
        /// What the review covers.
        range: String,
    },
    /// The reviewed license is not allowed in production.
    LicenseNotAllowed(String),
    /// Reviewed, but st2 does not have it installed.
    NotInstalled,
}

impl Verdict {
    /// Short label used by `packs audit` and the audit log.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Approved => "approved",
            Self::Unreviewed => "unreviewed",
            Self::VersionDrift { .. } => "version drift",
            Self::LicenseNotAllowed(_) => "license not allowed",
            Self::NotInstalled => "not installed",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Approved => f.write_str("approved"),
            Self::Unreviewed => f.write_str(
                "unreviewed: no review recorded in the packs policy; review it (docs/governance.md) before use",
            ),
            Self::VersionDrift { installed, range } => write!(
                f,
                "version drift: st2 has {installed} installed but the review covers {range}; review the new version or reinstall a reviewed one"
            ),
            Self::LicenseNotAllowed(license) => write!(
                f,
                "license not allowed: {license} is not in the production license allow-list (GPL, AGPL and unknown licenses need legal approval)"
            ),
            Self::NotInstalled => f.write_str("not installed on the st2 cluster"),
        }
    }
}

/// A dispatch the gate refused.
#[derive(Debug, thiserror::Error)]
pub enum GateRefusal {
    /// The policy says no.
    #[error("pack {pack} refused: {verdict}")]
    Policy {
        /// The pack.
        pack: String,
        /// Why.
        verdict: Verdict,
    },
    /// st2 could not tell which version is installed; the gate fails closed.
    #[error(
        "pack {pack} refused: its installed version could not be read from st2 ({source}); retry when st2 answers"
    )]
    Lookup {
        /// The pack.
        pack: String,
        /// st2's failure.
        source: St2Error,
    },
}

impl GateRefusal {
    /// The Portarium answer. A policy refusal is `FlowNotFound`: the flowRef names nothing the
    /// governed catalogue offers, and Portarium does not retry it; a failed lookup is
    /// `RemoteError`, which a retry may cure. The contract has no policy-denied kind.
    pub fn to_error(&self) -> DispatchError {
        let kind = match self {
            Self::Policy { .. } => ErrorKind::FlowNotFound,
            Self::Lookup { .. } => ErrorKind::RemoteError,
        };
        DispatchError::refused(kind, self.to_string())
    }
}

/// The reviewed-packs gate: decides from the policy first and asks st2 only for the
/// installed version of a pack the policy would otherwise approve.
#[derive(Debug)]
pub struct PackGate {
    policy: PacksPolicy,
    /// Installed versions by pack (`None`: not installed). Only packs the policy reviews are
    /// looked up, so the bounds are far above what a policy names.
    versions: Mutex<BoundedMap<String, Option<String>>>,
}

/// Most packs whose installed version is kept.
const VERSIONS_MAX_ENTRIES: usize = 4_096;
/// Most bytes the kept versions take.
const VERSIONS_MAX_BYTES: usize = 1 << 20;

impl PackGate {
    /// A gate for `policy`, reading a pack's installed version at most once per `ttl`.
    pub fn new(policy: PacksPolicy, ttl: Duration) -> Self {
        Self {
            policy,
            versions: Mutex::new(BoundedMap::new(Bounds {
                max_entries: VERSIONS_MAX_ENTRIES,
                max_bytes: VERSIONS_MAX_BYTES,
                ttl: Some(ttl),
            })),
        }
    }

    /// The policy this gate enforces.
    pub fn policy(&self) -> &PacksPolicy {
        &self.policy
    }

    /// `Ok` when actions of `pack` may run on the cluster `st2` talks to.
    pub async fn check(&self, st2: &St2Client, pack: &str) -> Result<(), GateRefusal> {
        let refuse = |verdict| GateRefusal::Policy {
            pack: pack.to_string(),
            verdict,
        };
        // Decide what needs no st2 call first, so an unreviewed pack costs st2 nothing.
        self.policy.usable_review(pack).map_err(refuse)?;
        let installed =
            self.installed_version(st2, pack)
                .await
                .map_err(|source| GateRefusal::Lookup {
                    pack: pack.to_string(),
                    source,
                })?;
        match self.policy.verdict(pack, installed.as_deref()) {
            Verdict::Approved => Ok(()),
            v => Err(refuse(v)),
        }
    }

    /// The installed version of `pack` as last read from st2, whatever its age; `None` when
    /// it was never read or is not installed. Costs no st2 call (telemetry's `pack.version`).
    pub fn known_version(&self, pack: &str) -> Option<String> {
        self.versions
            .lock()
            .expect("cache lock")
            .peek(pack)
            .cloned()
            .flatten()
    }

    async fn installed_version(
        &self,
        st2: &St2Client,
        pack: &str,
    ) -> Result<Option<String>, St2Error> {
        if let Some(v) = self.versions.lock().expect("cache lock").get(pack) {
            return Ok(v.clone());
        }
        let version = match st2.packs().get(pack).await {
            Ok(p) => Some(p.version.unwrap_or_default()),
            Err(St2Error::NotFound { .. }) => None,
            Err(e) => return Err(e),
        };
        // The pack ref's two copies (map and order) and the version.
        let weight = 2 * pack.len() + version.as_ref().map_or(0, String::len);
        self.versions
            .lock()
            .expect("cache lock")
            .insert(pack.to_string(), version.clone(), weight);
        Ok(version)
    }
}

/// One line of `packs audit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditLine {
    /// The pack ref.
    pub pack: String,
    /// Installed version (`None` for a reviewed pack st2 does not have).
    pub installed: Option<String>,
    /// The policy's verdict.
    pub verdict: Verdict,
}

/// The verdict on every pack installed on the cluster, plus reviewed packs it lacks.
pub async fn audit_cluster(
    st2: &St2Client,
    policy: &PacksPolicy,
) -> Result<Vec<AuditLine>, St2Error> {
    // 50 pages of 100: far beyond any cluster's pack count, yet a bound.
    let installed = st2.packs().list().limit(100).all(50).await?.items;
    let mut lines: Vec<AuditLine> = installed
        .iter()
        .map(|p| AuditLine {
            pack: p.r#ref.clone(),
            installed: p.version.clone(),
            verdict: policy.verdict(&p.r#ref, Some(p.version.as_deref().unwrap_or(""))),
        })
        .collect();
    for review in &policy.packs {
        if !installed.iter().any(|p| p.r#ref == review.pack) {
            lines.push(AuditLine {
                pack: review.pack.clone(),
                installed: None,
                verdict: policy.verdict(&review.pack, None),
            });
        }
    }
    lines.sort_by(|a, b| a.pack.cmp(&b.pack));
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> Version {
        Version::parse(text).unwrap()
    }

    #[test]
    fn versions_compare_numerically_with_prereleases_first() {
        assert!(v("1.10") > v("1.9"));
        assert!(v("1.2") == v("1.2.0"));
        assert!(v("3.10dev") < v("3.10"));
        assert!(v("3.10dev") > v("3.9.9"));
        assert!(v("v2.0.0-rc1") < v("2.0.0"));
        assert!(Version::parse("dev").is_none());
    }

    #[test]
    fn versions_follow_semver_precedence() {
        // Numeric pre-release parts compare as numbers, not text.
        assert!(v("1.0.0-rc.10") > v("1.0.0-rc.2"));
        assert!(v("1.0.0-alpha") < v("1.0.0-alpha.1"));
        // `+build` is build metadata: the same version, not a pre-release of it.
        assert!(v("1.0.0+build.5") == v("1.0.0"));
        assert!(v("1.0.0+build.5") > v("1.0.0-rc.1"));
        assert!(v("3.10dev+g1234") == v("3.10dev"));
        // st2's PEP 440-style tails and short forms normalize before SemVer reads them.
        assert!(v("1.2.0.dev1") < v("1.2.0"));
        assert!(v("3.10") == v("3.10.0"));
        assert!(Version::parse("1.2.3.4").is_none());
        assert!(Version::parse("1.0.0-rc.01").is_none(), "leading zero");
        assert!(
            VersionRange::parse(">=1.0.0, <2")
                .unwrap()
                .contains(&v("1.0.0+build.5"))
        );
        assert!(
            VersionRange::parse("=1.0.0-rc.10")
                .unwrap()
                .contains(&v("1.0.0-rc.10+b2"))
        );
        assert!(
            !VersionRange::parse(">=1.0.0-rc.10")
                .unwrap()
                .contains(&v("1.0.0-rc.9"))
        );
    }

    #[test]
    fn licenses_are_spdx_expressions() {
        let policy = |allowed: &str, license: &str| {
            PacksPolicy::from_yaml(&format!(
                "{allowed}packs:\n  - {{ref: p, versions: '*', license: '{license}', reviewer: ann, reviewedAt: 2026-11-01}}\n"
            ))
        };
        let ok = |license: &str| policy("", license).unwrap().verdict("p", Some("1.0"));
        assert_eq!(ok("MIT OR Apache-2.0"), Verdict::Approved);
        assert_eq!(
            ok("GPL-3.0-only OR MIT"),
            Verdict::Approved,
            "one allowed choice"
        );
        assert_eq!(ok("(MIT AND Zlib) OR GPL-3.0-only"), Verdict::Approved);
        assert!(matches!(
            ok("MIT AND GPL-3.0-only"),
            Verdict::LicenseNotAllowed(_)
        ));
        let llvm = policy(
            "allowedLicenses: ['Apache-2.0 WITH LLVM-exception']\n",
            "Apache-2.0 WITH LLVM-exception",
        )
        .unwrap();
        assert_eq!(llvm.verdict("p", Some("1")), Verdict::Approved);
        assert!(
            !llvm.license_allowed("Apache-2.0"),
            "the exception is part of it"
        );
        let err = policy("allowedLicenses: [MIT OR Zlib, Nope-1]\n", "MIT OR").unwrap_err();
        assert_names(
            &err,
            &[
                "packs[0].license:",
                "allowedLicenses[0]:",
                "allowedLicenses[1]:",
            ],
        );
    }

    #[test]
    fn ranges_hold_every_comparator() {
        let r = VersionRange::parse(">=1.2, <2").unwrap();
        assert!(r.contains(&v("1.2")) && r.contains(&v("1.9.9")));
        assert!(!r.contains(&v("2.0")) && !r.contains(&v("1.1.9")));
        assert!(VersionRange::parse("1.4.0").unwrap().contains(&v("1.4")));
        assert!(!VersionRange::parse("=1.4.0").unwrap().contains(&v("1.4.1")));
        assert!(VersionRange::parse("*").unwrap().contains(&v("0.0.1")));
        let err = VersionRange::parse(">=1.2, <two").unwrap_err();
        assert!(err.contains("<two"), "{err}");
    }

    /// Every one of `wants` is in some problem of `err`.
    fn assert_names(err: &[String], wants: &[&str]) {
        let text = err.join("\n");
        for want in wants {
            assert!(text.contains(want), "{want} missing in {text}");
        }
    }

    #[test]
    fn policy_problems_name_the_field() {
        let err = PacksPolicy::from_yaml(
            "packs:\n  - {ref: Bad-Pack, versions: '>=1', license: 'GPL 3!', reviewer: ' ', reviewedAt: 2026-13-01, digest: md5:x}\n",
        )
        .unwrap_err();
        assert_names(
            &err,
            &[
                "packs[0].ref:",
                "packs[0].license:",
                "packs[0].reviewer:",
                "packs[0].reviewedAt:",
                "packs[0].digest:",
            ],
        );
        let err = PacksPolicy::from_yaml("packs:\n  - {ref: a, versions: '>=x'}\n").unwrap_err();
        assert!(err[0].starts_with("packs[0].versions:"), "{err:?}");
    }

    #[test]
    fn policy_parse_errors_are_all_reported() {
        let err = PacksPolicy::from_yaml(
            "allowedLicenses: [MIT, {x: 1}]\npacks:\n  - {ref: a, versions: '>=x'}\n  - {ref: b}\n  - {ref: c, versions: '*', license: MIT, reviewer: r, reviewedAt: 2026-01-01, extra: 1}\nowner: me\n",
        )
        .unwrap_err();
        assert_names(
            &err,
            &[
                "allowedLicenses[1]:",
                "packs[0].versions:",
                "packs[1]: missing field",
                "packs[2].extra: unknown field",
                "owner: unknown field",
            ],
        );
        let err = PacksPolicy::from_yaml("packs: [\n").unwrap_err();
        assert_eq!(err.len(), 1, "{err:?}");
    }

    #[test]
    fn verdicts_follow_review_license_and_version() {
        let policy = PacksPolicy::from_yaml(
            "packs:\n\
             - {ref: linux, versions: '>=1.2, <2', license: Apache-2.0, reviewer: ann, reviewedAt: 2026-11-01}\n\
             - {ref: gplpack, versions: '*', license: GPL-3.0-only, reviewer: ann, reviewedAt: 2026-11-01}\n",
        )
        .unwrap();
        assert_eq!(policy.verdict("linux", Some("1.4.0")), Verdict::Approved);
        assert_eq!(policy.verdict("nope", Some("1.0")), Verdict::Unreviewed);
        assert_eq!(policy.verdict("linux", None), Verdict::NotInstalled);
        assert!(matches!(
            policy.verdict("linux", Some("2.0.0")),
            Verdict::VersionDrift { .. }
        ));
        assert_eq!(
            policy.verdict("gplpack", Some("1")),
            Verdict::LicenseNotAllowed("GPL-3.0-only".into())
        );
    }
}
