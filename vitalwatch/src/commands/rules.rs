//! `vitalwatch rules-config`: a patient's care program and rule changes, stored
//! in `patient_rules` and picked up by the running rules workers within
//! `rules.config_poll_secs` (no restart).

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Subcommand;
use vitalwatch_admin::{Actor, AdminError};
use vitalwatch_rules::{OxygenPlan, PatientRules, Program, Spo2Target};

use super::admin;
use super::registry::StoreArgs;

/// `vitalwatch rules-config ...`
#[derive(Debug, Subcommand)]
pub enum RulesConfigCommand {
    /// Set a patient's program and, optionally, the physician's changes to its default rules.
    Set {
        /// Patient id.
        patient: String,
        /// Care program: heart_failure, hypertension, copd, diabetes or general.
        /// Overrides the "program" of --file.
        #[arg(long)]
        program: Option<String>,
        /// JSON file with the patient's rules (thresholds, changes, cadence, news2,
        /// disabled, spo2_scale, news2_assumptions, monitoring_since; see PatientRules).
        #[arg(long)]
        file: Option<PathBuf>,
        /// The patient's prescribed SpO2 target range, 88-92 (hypercapnic
        /// respiratory failure, NEWS2 scale 2) or 94-98; required with
        /// --supplemental-oxygen for a copd program (sets "oxygen_plan").
        #[arg(long, value_parser = ["88-92", "94-98"], requires = "supplemental_oxygen")]
        spo2_target: Option<String>,
        /// Whether the patient is on home oxygen (true/false); see --spo2-target.
        #[arg(long, requires = "spo2_target")]
        supplemental_oxygen: Option<bool>,
        /// Why the rules change (kept with the new version of the rules).
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Show a patient's stored rules and the effective rule ids.
    Show {
        /// Patient id.
        patient: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

const PROGRAMS: &str = "heart_failure, hypertension, copd, diabetes, general";

/// Builds and validates a patient's rules from the command line.
fn build(program: Option<&str>, file: Option<&Path>, plan: Option<OxygenPlan>) -> anyhow::Result<PatientRules> {
    let program = match program {
        Some(p) => {
            Some(Program::parse(p).with_context(|| format!("unknown program {p:?}; expected one of {PROGRAMS}"))?)
        }
        None => None,
    };
    let rules = match file {
        Some(f) => {
            let text = std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
            let mut v: serde_json::Value =
                serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", f.display()))?;
            let obj = v.as_object_mut().with_context(|| format!("{} must hold a JSON object", f.display()))?;
            if let Some(p) = program {
                obj.insert("program".into(), serde_json::to_value(p)?);
            } else if !obj.contains_key("program") {
                anyhow::bail!("no program: pass --program ({PROGRAMS}) or set \"program\" in {}", f.display());
            }
            serde_json::from_value::<PatientRules>(v).with_context(|| format!("invalid rules in {}", f.display()))?
        }
        None => match program {
            Some(p) => PatientRules::for_program(p),
            None => anyhow::bail!("pass --program ({PROGRAMS}) and/or --file rules.json"),
        },
    };
    let mut rules = rules;
    if plan.is_some() {
        rules.oxygen_plan = plan;
    }
    rules.effective().context("the rules are not valid")?;
    rules.check_enrolment().context("the rules are not valid (pass --spo2-target and --supplemental-oxygen)")?;
    Ok(rules)
}

/// The oxygen plan of the command line, if given.
fn oxygen_plan(target: Option<&str>, oxygen: Option<bool>) -> Option<OxygenPlan> {
    let target = match target? {
        "88-92" => Spo2Target::Hypercapnic,
        _ => Spo2Target::Standard,
    };
    Some(OxygenPlan { target, supplemental_oxygen: oxygen.unwrap_or(false) })
}

/// `vitalwatch rules-config ...`.
pub async fn rules_config(config: Option<&Path>, cmd: RulesConfigCommand) -> anyhow::Result<()> {
    let actor = Actor::cli();
    match cmd {
        RulesConfigCommand::Set { patient, program, file, spo2_target, supplemental_oxygen, reason, store } => {
            let plan = oxygen_plan(spo2_target.as_deref(), supplemental_oxygen);
            let rules = build(program.as_deref(), file.as_deref(), plan)?;
            let svc = admin::service(&store, config).await?;
            let view = match svc.set_rules(&actor, &patient, &rules, reason.as_deref()).await {
                Err(AdminError::NotFound(_)) => anyhow::bail!(
                    "unknown patient {patient}: register it first with `vitalwatch patient add {patient}`"
                ),
                other => other.context("storing the rules")?,
            };
            println!(
                "{patient}: program {} ({} rules: {})",
                rules.program.as_str(),
                view.effective.len(),
                view.effective.join(", ")
            );
        }
        RulesConfigCommand::Show { patient, store } => {
            let svc = admin::service(&store, config).await?;
            match svc.rules(&actor, &patient).await {
                Err(AdminError::NotFound(_)) => {
                    println!("{patient}: no rules stored; the default program of the rules engine applies")
                }
                Err(e) => return Err(e.into()),
                Ok(view) => {
                    let rules: PatientRules =
                        serde_json::from_value(view.rules).context("the stored rules do not parse")?;
                    if let Some(t) = view.updated_at {
                        println!("# updated {}", t.to_rfc3339());
                    }
                    println!("{}", serde_json::to_string_pretty(&rules)?);
                    match rules.effective() {
                        Ok(set) => println!("# effective rules: {}", set.ids().collect::<Vec<_>>().join(", ")),
                        Err(e) => println!("# INVALID: {e}"),
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_alone_gives_the_defaults() {
        let r = build(Some("heart_failure"), None, None).unwrap();
        assert_eq!(r, PatientRules::for_program(Program::HeartFailure));
    }

    #[test]
    fn clear_errors() {
        let e = format!("{:#}", build(Some("cardio"), None, None).unwrap_err());
        assert!(e.contains("unknown program") && e.contains("heart_failure"), "{e}");
        assert!(format!("{:#}", build(None, None, None).unwrap_err()).contains("--program"));
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("r.json");
        std::fs::write(&f, r#"{"disabled":["missing.body_weight"]}"#).unwrap();
        let e = format!("{:#}", build(Some("heart_failure"), Some(&f), None).unwrap_err());
        assert!(e.contains("not valid"), "{e}");
        std::fs::write(&f, r#"{"spo2_scle":"scale2"}"#).unwrap();
        let e = format!("{:#}", build(Some("copd"), Some(&f), None).unwrap_err());
        assert!(e.contains("spo2_scle"), "{e}");
        std::fs::write(&f, r#"{"spo2_scale":"scale2"}"#).unwrap();
        assert!(format!("{:#}", build(None, Some(&f), None).unwrap_err()).contains("no program"));
        // COPD needs the SpO2 target and oxygen use (issue #14 §6).
        let e = format!("{:#}", build(Some("copd"), None, None).unwrap_err());
        assert!(e.contains("--spo2-target") && e.contains("oxygen_plan"), "{e}");
        std::fs::write(&f, r#"{"spo2_scale":"scale2","oxygen_plan":{"target":"88-92","supplemental_oxygen":true}}"#)
            .unwrap();
        assert_eq!(build(Some("copd"), Some(&f), None).unwrap().program, Program::Copd);
        let r = build(Some("copd"), None, oxygen_plan(Some("88-92"), Some(false))).unwrap();
        assert_eq!(r.oxygen_plan, Some(OxygenPlan { target: Spo2Target::Hypercapnic, supplemental_oxygen: false }));
        assert_eq!(r.scale(), vitalwatch_rules::Spo2Scale::Scale2);
    }
}
