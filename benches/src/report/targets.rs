//! The bars of `benches/targets.toml`, read at startup.
//!
//! Every figure the report checks lives in that file, so a reader of the report can find each
//! bar in the repository. The structs below mirror it; serde rejects an unknown or a missing
//! key, and [`Targets::load`] then checks the names of operations and contenders, so a bad
//! file stops the report before it measures anything.

use crate::cases::CaseOp as _;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::maps::Contender;
use crate::ops::Op;

/// The file shipped with the crate.
pub fn default_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("targets.toml")
}

/// Every bar, by section.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Targets {
    /// The persistent map.
    pub hamt: HamtTargets,
    /// Context variables.
    pub context: ContextTargets,
    /// Generators, iterators, task wrappers.
    pub tasks: TaskTargets,
    /// Interpreter queues and channels.
    pub interpreters: InterpreterTargets,
    /// Layers on a loopback service.
    pub service: ServiceTargets,
}

/// `[hamt]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HamtTargets {
    /// Live bytes per entry, at most.
    pub bytes_per_entry_max: f64,
    /// Allocations per persistent insert over the ideal CHAMP count, at most.
    pub allocation_slack: f64,
    /// Timing ratios.
    pub ratios: Vec<RatioTarget>,
    /// Reference figures.
    pub reference: HamtReference,
}

/// One timing ratio of the map: ours / `over` for `op`, at the sizes in `[n_min, n_max]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RatioTarget {
    /// The operation's slug ([`Op::slug`]).
    pub op: String,
    /// The contender's name ([`Contender::name`]).
    pub over: String,
    /// The largest passing ratio.
    pub max: f64,
    /// The smallest size the bar applies to.
    pub n_min: Option<usize>,
    /// The largest size the bar applies to.
    pub n_max: Option<usize>,
    /// Whose bar it is, shown with it (`"issue 13"`, `"project"`); none: unlabelled.
    pub by: Option<String>,
}

impl RatioTarget {
    /// ` (issue 13's bar)`, ` (project bar)` or nothing.
    pub fn origin(&self) -> String {
        match self.by.as_deref() {
            None => String::new(),
            Some("project") => " (project bar)".to_owned(),
            Some(who) => format!(" ({who}'s bar)"),
        }
    }

    /// The operation (checked by [`Targets::load`]).
    pub fn op(&self) -> Op {
        op_named(&self.op).unwrap_or(Op::LookupHit)
    }

    /// The reference contender (checked by [`Targets::load`]).
    pub fn over(&self) -> Contender {
        contender_named(&self.over).unwrap_or(Contender::Std)
    }

    /// Whether the bar applies at size `n`.
    pub fn applies(&self, n: usize) -> bool {
        self.n_min.is_none_or(|min| n >= min) && self.n_max.is_none_or(|max| n <= max)
    }

    /// ` (N ≤ 100)`, ` (N ≥ 1k)` or nothing.
    pub fn scope(&self) -> String {
        let label = crate::sizes::label;
        match (self.n_min, self.n_max) {
            (None, None) => String::new(),
            (Some(min), None) => format!(" (N ≥ {})", label(min)),
            (None, Some(max)) => format!(" (N ≤ {})", label(max)),
            (Some(min), Some(max)) => format!(" ({} ≤ N ≤ {})", label(min), label(max)),
        }
    }
}

/// `[hamt.reference]`: figures per reference size.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HamtReference {
    /// The sizes of every list below.
    pub sizes: Vec<usize>,
    /// Our absolute aims, ns per operation, by operation slug.
    pub ns: BTreeMap<String, Vec<f64>>,
    /// CPython `hamt.c`: live bytes per entry.
    pub cpython_bytes_per_entry: Vec<f64>,
    /// CPython `hamt.c`: bytes retained by one snapshot + set.
    pub cpython_retained_per_set: Vec<f64>,
}

impl HamtReference {
    /// The value at size `n` of a per-reference-size list.
    pub fn at(&self, list: &[f64], n: usize) -> Option<f64> {
        let index = self.sizes.iter().position(|&size| size == n)?;
        list.get(index).copied()
    }

    /// Our absolute aims for `op`, if any.
    pub fn ns(&self, op: Op) -> Option<&[f64]> {
        self.ns.get(op.slug()).map(Vec::as_slice)
    }
}

/// `[context]`: see the file for each bar.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct ContextTargets {
    pub get_hit_ns: f64,
    pub get_hit_over_thread_local: f64,
    pub get_hit_over_thread_local_strict: f64,
    pub get_after_switch_ns: f64,
    pub snapshot_ns: f64,
    pub snapshot_flatness: f64,
    pub run_ns: f64,
    pub run_over_tokio_sync_scope: f64,
    pub set_ns: f64,
    pub set_after_snapshot_ns: f64,
    pub set_after_snapshot_over_otel: f64,
    pub set_reset_over_set: f64,
    pub lc_each_way_ns: f64,
    pub lc_each_way_strict_ns: f64,
}

/// `[tasks]`: see the file for each bar.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct TaskTargets {
    pub resume_empty_lc_ns: f64,
    pub resume_non_empty_lc_ns: f64,
    pub resume_over_fastest_generator_crate: f64,
    pub chain_ratio: f64,
    pub chain_stage_ns: f64,
    pub poll_overhead_ns: f64,
    pub poll_overhead_strict_ns: f64,
    pub hooks_poll_overhead_ns: f64,
    pub hooks_spawn_overhead_ns: f64,
}

/// `[interpreters]`: see the file for each bar.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct InterpreterTargets {
    pub max_ns_per_message: f64,
    pub max_over_faster_peer: f64,
    pub unbounded_throughput_over_crossbeam_min: f64,
    pub bounded_throughput_over_crossbeam_min: f64,
    pub max_resume_overhead_ns: f64,
}

/// `[service]`: see the file for each bar.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct ServiceTargets {
    pub max_throughput_loss: f64,
    pub max_p99_added_us: f64,
}

/// Why a targets file could not be used.
#[derive(Debug)]
pub enum TargetsError {
    /// The file could not be read.
    Read(PathBuf, std::io::Error),
    /// It is not valid TOML, or a key is unknown, missing or of the wrong type.
    Parse(PathBuf, Box<toml::de::Error>),
    /// It parses but names something the report does not know.
    Invalid(PathBuf, String),
}

impl fmt::Display for TargetsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Read(path, error) => write!(f, "cannot read {}: {error}", path.display()),
            Self::Parse(path, error) => write!(f, "{} is malformed: {error}", path.display()),
            Self::Invalid(path, what) => write!(f, "{}: {what}", path.display()),
        }
    }
}

impl std::error::Error for TargetsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Read(_, error) => Some(error),
            Self::Parse(_, error) => Some(&**error),
            Self::Invalid(..) => None,
        }
    }
}

fn op_named(slug: &str) -> Option<Op> {
    Op::ALL.into_iter().find(|op| op.slug() == slug)
}

fn contender_named(name: &str) -> Option<Contender> {
    Contender::ALL
        .into_iter()
        .find(|contender| contender.name() == name)
}

impl Targets {
    /// Reads and checks the file at `path`.
    pub fn load(path: &Path) -> Result<Self, TargetsError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| TargetsError::Read(path.to_owned(), e))?;
        Self::parse(&text).map_err(|error| match error {
            TargetsError::Parse(_, e) => TargetsError::Parse(path.to_owned(), e),
            TargetsError::Invalid(_, what) => TargetsError::Invalid(path.to_owned(), what),
            other => other,
        })
    }

    /// Parses and checks the text of a targets file.
    pub fn parse(text: &str) -> Result<Self, TargetsError> {
        let targets: Self =
            toml::from_str(text).map_err(|e| TargetsError::Parse(PathBuf::new(), Box::new(e)))?;
        let invalid = |what: String| Err(TargetsError::Invalid(PathBuf::new(), what));
        for ratio in &targets.hamt.ratios {
            if op_named(&ratio.op).is_none() {
                return invalid(format!("hamt.ratios: unknown op `{}`", ratio.op));
            }
            if contender_named(&ratio.over).is_none() {
                return invalid(format!("hamt.ratios: unknown contender `{}`", ratio.over));
            }
        }
        let reference = &targets.hamt.reference;
        let lists = reference
            .ns
            .iter()
            .map(|(slug, list)| (slug.as_str(), list))
            .chain([
                (
                    "cpython_bytes_per_entry",
                    &reference.cpython_bytes_per_entry,
                ),
                (
                    "cpython_retained_per_set",
                    &reference.cpython_retained_per_set,
                ),
            ]);
        for (name, list) in lists {
            if list.len() != reference.sizes.len() {
                return invalid(format!(
                    "hamt.reference: `{name}` has {} figures for {} sizes",
                    list.len(),
                    reference.sizes.len()
                ));
            }
        }
        if let Some(slug) = reference.ns.keys().find(|slug| op_named(slug).is_none()) {
            return invalid(format!("hamt.reference.ns: unknown op `{slug}`"));
        }
        Ok(targets)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_file_parses_and_names_known_things() {
        let targets = Targets::load(&default_path()).unwrap();
        assert!(!targets.hamt.ratios.is_empty());
        // Every contender the ratios name is one the hamt section measures.
        for ratio in &targets.hamt.ratios {
            assert_eq!(ratio.op().slug(), ratio.op);
            assert_eq!(ratio.over().name(), ratio.over);
            assert!(ratio.op().applies_to(ratio.over()), "{ratio:?}");
        }
        assert!(targets.hamt.reference.ns(Op::LookupHit).is_some());
        assert!(targets.hamt.reference.ns(Op::InPlaceRemove).is_none());
    }

    #[test]
    fn bad_files_give_clear_errors() {
        let shipped = std::fs::read_to_string(default_path()).unwrap();
        let missing = shipped.replace("run_ns = 5.0\n", "");
        let error = Targets::parse(&missing).unwrap_err();
        assert!(error.to_string().contains("run_ns"), "{error}");
        let unknown = shipped.replace("run_ns = 5.0", "run_ns = 5.0\nrun_nss = 1.0");
        let error = Targets::parse(&unknown).unwrap_err();
        assert!(error.to_string().contains("run_nss"), "{error}");
        let op = shipped.replace(
            "{ op = \"lookup_hit\", over = \"imbl\"",
            "{ op = \"lookup\", over = \"imbl\"",
        );
        let error = Targets::parse(&op).unwrap_err();
        assert!(error.to_string().contains("unknown op `lookup`"), "{error}");
        let short = shipped.replace(
            "ns.iter = [3.0, 3.0, 3.0, 5.0, 20.0, 35.0]",
            "ns.iter = [3.0]",
        );
        let error = Targets::parse(&short).unwrap_err();
        assert!(
            error.to_string().contains("`iter` has 1 figures"),
            "{error}"
        );
        let error = Targets::parse("[hamt\n").unwrap_err();
        assert!(matches!(error, TargetsError::Parse(..)), "{error}");
        let error = Targets::load(Path::new("/nonexistent/targets.toml")).unwrap_err();
        assert!(error.to_string().contains("cannot read"), "{error}");
    }

    #[test]
    fn ratio_scopes() {
        let ratio = |n_min, n_max| RatioTarget {
            op: "lookup_hit".into(),
            over: "im".into(),
            max: 1.0,
            n_min,
            n_max,
            by: None,
        };
        let by = |who: &str| RatioTarget {
            by: Some(who.into()),
            ..ratio(None, None)
        };
        assert_eq!(by("issue 13").origin(), " (issue 13's bar)");
        assert_eq!(by("project").origin(), " (project bar)");
        assert_eq!(ratio(None, None).origin(), "");
        assert_eq!(ratio(None, Some(100)).scope(), " (N ≤ 100)");
        assert!(ratio(None, Some(100)).applies(100) && !ratio(None, Some(100)).applies(1000));
        assert!(ratio(Some(1000), None).applies(1000) && !ratio(Some(1000), None).applies(999));
        assert_eq!(ratio(None, None).scope(), "");
    }
}
