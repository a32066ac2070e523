//! The emulator's content: packs, runner types and actions (with st2 parameter schemas) plus an
//! emulation `behaviour` per action. Loaded from YAML; the default is embedded.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::util::{merge_param_schemas, object_id};

const BUILTIN: &str = include_str!("catalogue.yaml");

/// Why a catalogue could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum CatalogueError {
    /// The file could not be read.
    #[error("cannot read catalogue file {path}: {source}; check the path and its permissions")]
    Read {
        /// The file that was being read.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The YAML is malformed or does not follow the catalogue format.
    #[error("catalogue YAML is invalid: {0}; see crates/st2-emulator/README.md for the format")]
    Parse(#[from] serde_norway::Error),
    /// The content is well-formed YAML but inconsistent.
    #[error("catalogue is inconsistent: {0}; fix the catalogue file")]
    Invalid(String),
}

/// A pack as `GET /api/v1/packs` shows it.
#[derive(Debug, Clone, Deserialize)]
pub struct Pack {
    /// Pack reference (`core`).
    #[serde(rename = "ref")]
    pub reference: String,
    /// Pack name; defaults to the ref.
    #[serde(default)]
    pub name: Option<String>,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// Keywords.
    #[serde(default)]
    pub keywords: Vec<String>,
    /// Pack version.
    #[serde(default)]
    pub version: String,
    /// `stackstorm_version` constraint, shown only when set.
    #[serde(default)]
    pub stackstorm_version: Option<String>,
    /// Supported Python versions.
    #[serde(default)]
    pub python_versions: Vec<String>,
    /// Author.
    #[serde(default)]
    pub author: String,
    /// Author e-mail.
    #[serde(default)]
    pub email: String,
    /// Contributors.
    #[serde(default)]
    pub contributors: Vec<String>,
    /// Files in the pack.
    #[serde(default)]
    pub files: Vec<String>,
    /// On-disk path; defaults to `/opt/stackstorm/packs/<ref>`.
    #[serde(default)]
    pub path: Option<String>,
    /// Pack dependencies.
    #[serde(default)]
    pub dependencies: Vec<String>,
    /// `system` metadata.
    #[serde(default)]
    pub system: Map<String, Value>,
    #[serde(skip, default = "object_id")]
    id: String,
}

impl Pack {
    /// The pack as st2 serialises it.
    pub fn api(&self) -> Value {
        let mut v = json!({
            "uid": format!("pack:{}", self.reference),
            "ref": self.reference,
            "name": self.name.clone().unwrap_or_else(|| self.reference.clone()),
            "description": self.description,
            "keywords": self.keywords,
            "version": self.version,
            "python_versions": self.python_versions,
            "author": self.author,
            "email": self.email,
            "contributors": self.contributors,
            "files": self.files,
            "path": self.path.clone().unwrap_or_else(|| format!("/opt/stackstorm/packs/{}", self.reference)),
            "dependencies": self.dependencies,
            "system": self.system,
            "id": self.id,
        });
        if let Some(sv) = &self.stackstorm_version {
            v["stackstorm_version"] = json!(sv);
        }
        v
    }

    /// The pack's id.
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// A runner type as `GET /api/v1/runnertypes` shows it.
#[derive(Debug, Clone, Deserialize)]
pub struct Runner {
    /// Runner name (`local-shell-cmd`).
    pub name: String,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// Whether the runner is enabled.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Python package of the runner.
    #[serde(default)]
    pub runner_package: String,
    /// Python module of the runner.
    #[serde(default)]
    pub runner_module: String,
    /// Runner parameter schemas.
    #[serde(default)]
    pub runner_parameters: Map<String, Value>,
    /// Result key that holds the runner's output, if any.
    #[serde(default)]
    pub output_key: Option<String>,
    /// Output schema.
    #[serde(default)]
    pub output_schema: Map<String, Value>,
    #[serde(skip, default = "object_id")]
    id: String,
}

impl Runner {
    /// The runner as st2 serialises it.
    pub fn api(&self) -> Value {
        let mut v = json!({
            "name": self.name,
            "description": self.description,
            "uid": format!("runner_type:{}", self.name),
            "enabled": self.enabled,
            "runner_package": self.runner_package,
            "runner_module": self.runner_module,
            "runner_parameters": self.runner_parameters,
            "output_schema": self.output_schema,
            "id": self.id,
        });
        if let Some(k) = &self.output_key {
            v["output_key"] = json!(k);
        }
        v
    }

    /// The runner's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// True for the runners st2 treats as workflows (pause/resume allowed).
    pub fn is_workflow(&self) -> bool {
        matches!(self.name.as_str(), "orquesta" | "action-chain")
    }
}

/// One task of an emulated workflow.
#[derive(Debug, Clone, Deserialize)]
pub struct WorkflowTask {
    /// Task name (`task1`), also the template variable holding the task's result.
    pub name: String,
    /// Action ref the task runs.
    pub action: String,
    /// Parameters, rendered as templates against the workflow parameters and earlier task results.
    #[serde(default)]
    pub parameters: Map<String, Value>,
}

/// How the emulator runs an action (not part of st2's metadata).
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Behaviour {
    /// Finish with a fixed status and a (templated) result.
    Result {
        /// `succeeded`, `failed` or `timeout`.
        #[serde(default = "succeeded")]
        status: String,
        /// The result object, rendered as a template.
        #[serde(default)]
        result: Value,
        /// How long the action runs.
        #[serde(default)]
        duration_ms: u64,
    },
    /// A shell command: either given `stdout`/`stderr`/`return_code`, or an emulated command line
    /// (`command`, else the `cmd` parameter).
    Shell {
        /// Command line template; when absent and no stdout/stderr is given, the `cmd` parameter.
        #[serde(default)]
        command: Option<String>,
        /// Fixed stdout template.
        #[serde(default)]
        stdout: Option<String>,
        /// Fixed stderr template.
        #[serde(default)]
        stderr: Option<String>,
        /// Fixed exit code.
        #[serde(default)]
        return_code: Option<i64>,
        /// How long the command runs.
        #[serde(default)]
        duration_ms: u64,
    },
    /// Print `count` lines, one every `interval_ms`, then succeed.
    Lines {
        /// Number of lines (template or integer).
        count: Value,
        /// Milliseconds between lines (template or integer).
        interval_ms: Value,
        /// Line text template; `{{n}}` is the line number.
        #[serde(default = "default_line_text")]
        text: String,
        /// `stdout` or `stderr`.
        #[serde(default = "default_stream")]
        stream: String,
    },
    /// An orquesta-like workflow running its tasks one after another.
    Workflow {
        /// Tasks, run in order.
        tasks: Vec<WorkflowTask>,
        /// Workflow output template.
        #[serde(default)]
        output: Value,
    },
}

fn yes() -> bool {
    true
}
fn succeeded() -> String {
    "succeeded".into()
}
fn default_line_text() -> String {
    "line {{n}}".into()
}
fn default_stream() -> String {
    "stdout".into()
}

/// An action as `GET /api/v1/actions/{ref}` shows it, plus its emulation behaviour.
#[derive(Debug, Clone, Deserialize)]
pub struct Action {
    /// Pack ref.
    pub pack: String,
    /// Action name within the pack.
    pub name: String,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// Whether the action may run.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Runner type name.
    pub runner_type: String,
    /// Entry point.
    #[serde(default)]
    pub entry_point: String,
    /// Metadata file; defaults to `actions/<name>.yaml`.
    #[serde(default)]
    pub metadata_file: Option<String>,
    /// Parameter schemas (st2 draft-4 property schemas with `required`, `secret`, `immutable`).
    #[serde(default)]
    pub parameters: Map<String, Value>,
    /// Output schema.
    #[serde(default)]
    pub output_schema: Map<String, Value>,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<Value>,
    /// Notify settings.
    #[serde(default)]
    pub notify: Map<String, Value>,
    /// Emulation behaviour; defaults to succeeding with an empty result.
    #[serde(default)]
    pub behaviour: Option<Behaviour>,
    #[serde(skip, default = "object_id")]
    id: String,
}

impl Action {
    /// `pack.name`.
    pub fn reference(&self) -> String {
        format!("{}.{}", self.pack, self.name)
    }

    /// The action's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The action as st2 serialises it.
    pub fn api(&self) -> Value {
        json!({
            "tags": self.tags,
            "uid": format!("action:{}:{}", self.pack, self.name),
            "metadata_file": self.metadata_file.clone().unwrap_or_else(|| format!("actions/{}.yaml", self.name)),
            "name": self.name,
            "ref": self.reference(),
            "description": self.description,
            "enabled": self.enabled,
            "entry_point": self.entry_point,
            "pack": self.pack,
            "runner_type": self.runner_type,
            "parameters": self.parameters,
            "output_schema": self.output_schema,
            "notify": self.notify,
            "id": self.id,
        })
    }

    /// The emulation behaviour (default: succeed with an empty result).
    pub fn behaviour(&self) -> Behaviour {
        self.behaviour.clone().unwrap_or(Behaviour::Result {
            status: succeeded(),
            result: Value::Object(Map::new()),
            duration_ms: 0,
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogueFile {
    #[serde(default)]
    packs: Vec<Pack>,
    #[serde(default)]
    runners: Vec<Runner>,
    #[serde(default)]
    actions: Vec<Action>,
    #[serde(default)]
    rules: Vec<crate::rules::Rule>,
}

/// Packs, runners, actions and rules the emulator serves.
#[derive(Debug, Clone)]
pub struct Catalogue {
    packs: Vec<Pack>,
    runners: Vec<Runner>,
    actions: Vec<Action>,
    rules: Vec<crate::rules::Rule>,
    action_index: HashMap<String, usize>,
}

impl Catalogue {
    /// The default catalogue, embedded in the binary.
    pub fn builtin() -> Catalogue {
        Catalogue::from_yaml(BUILTIN)
            .expect("the embedded catalogue is valid (checked by unit tests)")
    }

    /// Parse a catalogue from YAML text.
    pub fn from_yaml(text: &str) -> Result<Catalogue, CatalogueError> {
        let file: CatalogueFile = serde_norway::from_str(text)?;
        let mut packs = file.packs;
        let mut runners = file.runners;
        let mut actions = file.actions;
        packs.sort_by(|a, b| a.reference.cmp(&b.reference));
        runners.sort_by(|a, b| a.name.cmp(&b.name));
        actions.sort_by_key(|a| (a.pack.clone(), a.name.clone()));
        let mut action_index = HashMap::new();
        for (i, a) in actions.iter().enumerate() {
            if action_index.insert(a.reference(), i).is_some() {
                return Err(CatalogueError::Invalid(format!(
                    "action {} is defined twice",
                    a.reference()
                )));
            }
        }
        let mut rules = file.rules;
        rules.sort_by_key(|r| r.reference());
        let cat = Catalogue {
            packs,
            runners,
            actions,
            rules,
            action_index,
        };
        cat.check()?;
        Ok(cat)
    }

    /// Read and parse a catalogue file.
    pub fn load(path: &Path) -> Result<Catalogue, CatalogueError> {
        let text = std::fs::read_to_string(path).map_err(|source| CatalogueError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Catalogue::from_yaml(&text)
    }

    fn check(&self) -> Result<(), CatalogueError> {
        let bad = |m: String| Err(CatalogueError::Invalid(m));
        for a in &self.actions {
            let r = a.reference();
            if self.pack(&a.pack).is_none() {
                return bad(format!(
                    "action {r} names pack {:?}, which is not in `packs`",
                    a.pack
                ));
            }
            let Some(runner) = self.runner(&a.runner_type) else {
                return bad(format!(
                    "action {r} names runner {:?}, which is not in `runners`",
                    a.runner_type
                ));
            };
            match &a.behaviour() {
                Behaviour::Result { status, .. }
                    if !["succeeded", "failed", "timeout"].contains(&status.as_str()) =>
                {
                    return bad(format!(
                        "action {r}: behaviour status {status:?} must be succeeded, failed or timeout"
                    ));
                }
                Behaviour::Lines { stream, .. } if stream != "stdout" && stream != "stderr" => {
                    return bad(format!(
                        "action {r}: lines stream {stream:?} must be stdout or stderr"
                    ));
                }
                Behaviour::Workflow { tasks, .. } => {
                    if !runner.is_workflow() {
                        return bad(format!(
                            "action {r}: a workflow behaviour needs runner orquesta or action-chain"
                        ));
                    }
                    if let Some(t) = tasks.iter().find(|t| self.action(&t.action).is_none()) {
                        return bad(format!(
                            "action {r}: task {} runs unknown action {}",
                            t.name, t.action
                        ));
                    }
                }
                _ => {}
            }
        }
        for rule in &self.rules {
            if self.action(&rule.action.reference).is_none() {
                return bad(format!(
                    "rule {} runs unknown action {}",
                    rule.reference(),
                    rule.action.reference
                ));
            }
        }
        Ok(())
    }

    /// All rules, sorted by ref.
    pub fn rules(&self) -> &[crate::rules::Rule] {
        &self.rules
    }

    /// All packs, sorted by ref.
    pub fn packs(&self) -> &[Pack] {
        &self.packs
    }

    /// All runners, sorted by name.
    pub fn runners(&self) -> &[Runner] {
        &self.runners
    }

    /// All actions, sorted by pack then name.
    pub fn actions(&self) -> &[Action] {
        &self.actions
    }

    /// The pack with this ref.
    pub fn pack(&self, reference: &str) -> Option<&Pack> {
        self.packs.iter().find(|p| p.reference == reference)
    }

    /// The runner with this name.
    pub fn runner(&self, name: &str) -> Option<&Runner> {
        self.runners.iter().find(|r| r.name == name)
    }

    /// The action with this ref.
    pub fn action(&self, reference: &str) -> Option<&Action> {
        self.action_index.get(reference).map(|&i| &self.actions[i])
    }

    /// The runner of an action (always present: checked at load).
    pub fn runner_of(&self, action: &Action) -> &Runner {
        self.runner(&action.runner_type)
            .expect("runner checked at load")
    }

    /// Runner parameters merged with the action's (the action wins key by key).
    pub fn merged_parameters(&self, action: &Action) -> Map<String, Value> {
        merge_param_schemas(
            &self.runner_of(action).runner_parameters,
            &action.parameters,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_catalogue_has_the_documented_actions() {
        let cat = Catalogue::builtin();
        for r in [
            "core.noop",
            "core.echo",
            "core.local",
            "examples.orquesta-sequential",
            "examples.fail",
            "examples.output",
            "examples.secret",
            "examples.disabled",
        ] {
            assert!(cat.action(r).is_some(), "{r} missing");
        }
        assert!(!cat.action("examples.disabled").expect("present").enabled);
        let merged = cat.merged_parameters(cat.action("core.local").expect("present"));
        assert_eq!(merged["sudo"]["immutable"], true);
        assert_eq!(merged["sudo"]["type"], "boolean");
        assert_eq!(merged["timeout"]["default"], 60);
    }

    #[test]
    fn inconsistent_catalogues_are_rejected() {
        let yaml =
            "packs: [{ref: p}]\nrunners: []\nactions: [{pack: p, name: a, runner_type: nope}]";
        let err = Catalogue::from_yaml(yaml).expect_err("unknown runner");
        assert!(err.to_string().contains("nope"), "{err}");
        let err = Catalogue::from_yaml("packs: 3").expect_err("bad yaml");
        assert!(matches!(err, CatalogueError::Parse(_)));
    }
}
