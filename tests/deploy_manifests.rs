//! deploy/k8s checked offline, the way a platform team would before applying it — no
//! cluster, no network:
//!
//! * both modes (`in-place/`, `blue-green/`) rendered the way `kubectl apply -k` does
//!   (resources only, which is all they use), and every manifest file is in one of them;
//! * every object validated against the vendored JSON schemas (deploy/schemas: Kubernetes
//!   v1.31 strict, Argo Rollouts v1.8.4 CRDs made strict — unknown fields are errors);
//! * the recipe's own rules, one per defect of issue 20 (`recipe` below): the restricted Pod
//!   Security Standard, probes, memory, a disruption budget, the admin port kept from
//!   clients, Argo arguments that exist, analysis that never passes on missing data, and
//!   every PromQL query parsed (promql-parser) and filtered by namespace, app and model, on
//!   series the service really exports;
//! * each rule shown to fire on the defect it exists for (`the_rules_reject_*` tests).

mod deploy_support;
#[cfg(feature = "onnx")]
mod serve_support;

use deploy_support::recipe::{self, Mode};
use deploy_support::{Doc, Schemas, kustomize, load_docs, repo};
use serde_json::{Value, json};

fn modes() -> Vec<Mode> {
    ["in-place", "blue-green"]
        .iter()
        .map(|m| Mode {
            name: m.to_string(),
            docs: kustomize(&repo().join("deploy/k8s").join(m)),
        })
        .collect()
}

fn yaml(text: &str) -> Value {
    serde_yaml_ng::from_str(text).unwrap()
}

#[test]
fn every_manifest_file_is_rendered_by_one_of_the_two_modes() {
    let modes = modes();
    let mut files = Vec::new();
    deploy_support::yaml_files(&repo().join("deploy/k8s"), &mut files);
    assert!(files.len() >= 9, "{files:?}");
    for f in &files {
        if f.file_name().is_some_and(|n| n == "kustomization.yaml") {
            continue;
        }
        assert!(
            modes.iter().any(|m| m.docs.iter().any(|d| d.file == *f)),
            "{} is in neither deploy/k8s/in-place nor deploy/k8s/blue-green: \
             `kubectl apply -k` would never apply it",
            f.display()
        );
    }
    for m in &modes {
        let mut seen = std::collections::BTreeSet::new();
        for d in &m.docs {
            assert!(
                seen.insert((d.kind().to_owned(), d.name().to_owned())),
                "{}: {} {} twice",
                m.name,
                d.kind(),
                d.name()
            );
        }
    }
}

#[test]
fn every_object_validates_against_the_vendored_kubernetes_and_argo_schemas() {
    let schemas = Schemas::load();
    let mut checked = 0;
    for m in modes() {
        for d in &m.docs {
            let errors = schemas.errors(&d.value);
            assert!(
                errors.is_empty(),
                "{} ({} {}):\n{}",
                d.file.display(),
                d.kind(),
                d.name(),
                errors.join("\n")
            );
            checked += 1;
        }
    }
    assert!(checked >= 13, "only {checked} objects checked");
}

#[test]
fn the_schemas_reject_unknown_fields_wrong_types_and_unknown_kinds() {
    let schemas = Schemas::load();
    let mut deployment = modes()[0]
        .docs
        .iter()
        .find(|d| d.kind() == "Deployment")
        .unwrap()
        .value
        .clone();
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["failureTreshold"] =
        json!(3);
    let e = schemas.errors(&deployment).join("\n");
    assert!(e.contains("failureTreshold"), "{e}");

    let mut rollout = modes()[1]
        .docs
        .iter()
        .find(|d| d.kind() == "Rollout")
        .unwrap()
        .value
        .clone();
    rollout["spec"]["strategy"]["blueGreen"]["scaleDownDelay"] = json!(30);
    rollout["spec"]["replicas"] = json!("three");
    let e = schemas.errors(&rollout).join("\n");
    assert!(e.contains("scaleDownDelay"), "{e}");
    assert!(e.contains("three"), "{e}");

    let template = yaml(
        "apiVersion: argoproj.io/v1alpha1\nkind: AnalysisTemplate\nmetadata: {name: x}\n\
         spec:\n  metrics:\n    - name: m\n      successCondtion: result[0] == 1\n      \
         provider: {prometheus: {query: up}}\n",
    );
    let e = schemas.errors(&template).join("\n");
    assert!(e.contains("successCondtion"), "{e}");

    let e = schemas
        .errors(&yaml(
            "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: x}\n",
        ))
        .join("\n");
    assert!(
        e.contains("no vendored schema for apps/v1 StatefulSet"),
        "{e}"
    );
}

#[test]
fn the_recipe_rules_hold_in_both_modes() {
    let metrics_source = deploy_support::exported_metric_names();
    for m in modes() {
        let problems = recipe::check(&m, &metrics_source);
        assert!(problems.is_empty(), "{}:\n{}", m.name, problems.join("\n"));
    }
}

#[test]
fn every_promql_query_parses_and_is_filtered_by_namespace_app_and_model() {
    let mut queries = 0;
    for m in modes() {
        for d in m.docs.iter().filter(|d| d.kind() == "AnalysisTemplate") {
            for (metric, query) in recipe::queries(d) {
                let expr = promql_parser::parser::parse(&query)
                    .unwrap_or_else(|e| panic!("{}: {metric}: {e}\n{query}", d.file.display()));
                let selectors = recipe::selectors(&expr);
                assert!(!selectors.is_empty(), "{metric}: no series selected");
                queries += 1;
            }
        }
    }
    assert!(queries >= 7, "only {queries} queries");
}

#[test]
fn the_two_modes_run_one_pod_template_apart_from_how_the_version_is_chosen() {
    let modes = modes();
    let pod = |m: &Mode, kind: &str| {
        m.docs
            .iter()
            .find(|d| d.kind() == kind)
            .unwrap_or_else(|| panic!("{}: no {kind}", m.name))
            .value["spec"]["template"]
            .clone()
    };
    let in_place = recipe::without_version_choice(pod(&modes[0], "Deployment"));
    let blue_green = recipe::without_version_choice(pod(&modes[1], "Rollout"));
    assert_eq!(
        in_place, blue_green,
        "the pod templates of in-place/deployment.yaml and blue-green/rollout.yaml differ \
         beyond --desired/--poll-only/--poll-ms/--version and the ConfigMap volume"
    );
}

#[cfg(feature = "onnx")]
#[test]
fn every_flag_the_manifests_pass_is_a_flag_of_the_serve_binary() {
    let out = std::process::Command::new(serve_support::serve_binary())
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    let mut flags = 0;
    for m in modes() {
        for d in &m.docs {
            for c in recipe::containers(&d.value) {
                if c["image"]
                    .as_str()
                    .is_some_and(|i| !i.contains("digits-serve"))
                {
                    continue;
                }
                for a in c["args"].as_array().unwrap() {
                    let flag = a.as_str().unwrap().split('=').next().unwrap();
                    assert!(
                        help.contains(&format!("{flag} ")) || help.contains(&format!("{flag}\n")),
                        "{}: serve has no flag {flag}:\n{help}",
                        d.file.display()
                    );
                    flags += 1;
                }
            }
        }
    }
    assert!(flags >= 20, "{flags}");
}

#[test]
fn the_in_place_verdict_script_is_valid_shell() {
    let script = repo().join("deploy/k8s/in-place/verdict.sh");
    let out = std::process::Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&script).unwrap();
    assert!(text.contains("--from digits-fleet-verdict"), "{text}");
}

// ---- each rule fires on the defect it exists for --------------------------------------

/// The blue-green mode with one document replaced.
fn blue_green_with(kind: &str, name: &str, f: impl FnOnce(&mut Value)) -> Mode {
    let mut m = modes().remove(1);
    let d = m
        .docs
        .iter_mut()
        .find(|d| d.kind() == kind && d.name() == name)
        .unwrap();
    f(&mut d.value);
    m
}

fn in_place_with(kind: &str, f: impl FnOnce(&mut Value)) -> Mode {
    let mut m = modes().remove(0);
    let d = m.docs.iter_mut().find(|d| d.kind() == kind).unwrap();
    f(&mut d.value);
    m
}

fn problems(m: &Mode) -> String {
    recipe::check(m, &deploy_support::exported_metric_names()).join("\n")
}

#[test]
fn the_rules_reject_a_pod_template_hash_argo_does_not_know() {
    let m = blue_green_with("Rollout", "digits", |r| {
        r["spec"]["strategy"]["blueGreen"]["prePromotionAnalysis"]["args"][1]["valueFrom"]["podTemplateHashValue"] =
            json!("Preview");
    });
    let p = problems(&m);
    assert!(p.contains("podTemplateHashValue \"Preview\""), "{p}");
}

#[test]
fn the_rules_reject_a_workload_ref_to_a_deployment_that_keeps_its_replicas() {
    let mut m = blue_green_with("Rollout", "digits", |r| {
        r["spec"]["workloadRef"] =
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "digits"});
    });
    let mut deployment = modes().remove(0);
    let d = deployment
        .docs
        .drain(..)
        .find(|d| d.kind() == "Deployment")
        .unwrap();
    m.docs.push(d);
    let p = problems(&m);
    assert!(p.contains("workloadRef"), "{p}");
    assert!(p.contains("replicas: 0"), "{p}");
}

#[test]
fn the_rules_reject_analysis_that_passes_on_missing_data() {
    let m = blue_green_with("AnalysisTemplate", "digits-model-health", |t| {
        t["spec"]["metrics"][1]["successCondition"] = json!("len(result) == 0 || result[0] == 0");
    });
    let p = problems(&m);
    assert!(p.contains("none-refusing"), "{p}");
    assert!(p.contains("exactly one series"), "{p}");

    let m = blue_green_with("AnalysisTemplate", "digits-model-health", |t| {
        t["spec"]["metrics"][2]["failureCondition"] = json!("result[0] < 100");
    });
    assert!(
        problems(&m).contains("failureCondition"),
        "{}",
        problems(&m)
    );
}

#[test]
fn the_rules_reject_short_rate_windows_min_over_replicas_and_missing_filters() {
    let m = blue_green_with("AnalysisTemplate", "digits-model-health", |t| {
        t["spec"]["metrics"][3]["provider"]["prometheus"]["query"] = json!(
            "sum(rate(bluegreen_request_errors_total{kind=\"model\"}[1m])) / \
             sum(rate(bluegreen_requests_total{namespace=\"{{args.namespace}}\",\
             app_kubernetes_io_name=\"digits\",model=\"digits\"}[1m]))"
        );
        t["spec"]["metrics"][0]["provider"]["prometheus"]["query"] = json!(
            "min(bluegreen_ready{namespace=\"{{args.namespace}}\",app_kubernetes_io_name=\"digits\",\
             model=\"digits\",rollouts_pod_template_hash=\"{{args.pod-template-hash}}\"})"
        );
    });
    let p = problems(&m);
    assert!(p.contains("[1m]"), "{p}");
    assert!(p.contains("no namespace matcher"), "{p}");
    assert!(p.contains("min()"), "{p}");
}

#[test]
fn the_rules_reject_a_limit_that_passes_on_one_good_measurement_of_many() {
    let m = blue_green_with("AnalysisTemplate", "digits-model-health", |t| {
        t["spec"]["metrics"][0]["count"] = json!(12);
        t["spec"]["metrics"][0]["failureLimit"] = json!(11);
    });
    let p = problems(&m);
    assert!(p.contains("failureLimit 11"), "{p}");
}

#[test]
fn the_rules_reject_a_scale_down_delay_shorter_than_the_post_promotion_analysis() {
    let m = blue_green_with("Rollout", "digits", |r| {
        r["spec"]["strategy"]["blueGreen"]["scaleDownDelaySeconds"] = json!(30);
    });
    let p = problems(&m);
    assert!(p.contains("scaleDownDelaySeconds 30"), "{p}");
}

#[test]
fn the_rules_reject_pods_outside_the_restricted_standard_and_flapping_probes() {
    let m = in_place_with("Deployment", |d| {
        let pod = &mut d["spec"]["template"]["spec"];
        pod["securityContext"]
            .as_object_mut()
            .unwrap()
            .remove("seccompProfile");
        let c = &mut pod["containers"][0];
        c["securityContext"]
            .as_object_mut()
            .unwrap()
            .remove("seccompProfile");
        c["readinessProbe"]["failureThreshold"] = json!(1);
        c["readinessProbe"]["timeoutSeconds"] = json!(1);
        c["startupProbe"] = json!({"httpGet": {"path": "/healthz", "port": "http"}});
        c["resources"] = json!({"requests": {"memory": "512Mi"}, "limits": {"memory": "1Gi"}});
    });
    let p = problems(&m);
    for expected in [
        "seccompProfile",
        "readinessProbe.failureThreshold 1",
        "readinessProbe.timeoutSeconds 1",
        "startupProbe on /healthz",
        "memory request 512Mi != limit 1Gi",
    ] {
        assert!(p.contains(expected), "{expected}: {p}");
    }
}

#[test]
fn the_rules_reject_a_fleet_without_budget_network_policy_or_admin_port() {
    let mut m = modes().remove(0);
    m.docs
        .retain(|d| d.kind() != "PodDisruptionBudget" && d.kind() != "NetworkPolicy");
    let d = m
        .docs
        .iter_mut()
        .find(|d| d.kind() == "Deployment")
        .unwrap();
    let args = d.value["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array_mut()
        .unwrap();
    args.retain(|a| {
        let a = a.as_str().unwrap();
        !a.starts_with("--admin-port") && a != "--poll-only" && !a.starts_with("--journal")
    });
    let p = problems(&m);
    for expected in [
        "no PodDisruptionBudget",
        "no NetworkPolicy",
        "--admin-port",
        "--poll-only",
        "--journal",
    ] {
        assert!(p.contains(expected), "{expected}: {p}");
    }
}

#[test]
fn the_rules_reject_queries_on_series_the_service_does_not_export_and_undeclared_args() {
    let m = in_place_with("AnalysisTemplate", |t| {
        t["spec"]["metrics"][0]["provider"]["prometheus"]["query"] = json!(
            "sum(bluegreen_refusals_now{namespace=\"{{args.namespace}}\",\
             app_kubernetes_io_name=\"digits\",model=\"{{args.model}}\"})"
        );
    });
    let p = problems(&m);
    assert!(p.contains("bluegreen_refusals_now"), "{p}");
    assert!(p.contains("{{args.model}}"), "{p}");
}

#[test]
fn load_docs_reads_every_document_of_a_file() {
    let docs = load_docs(&repo().join("deploy/k8s/blue-green/analysis-templates.yaml"));
    let names: Vec<&str> = docs.iter().map(Doc::name).collect();
    assert_eq!(names, ["digits-preview-smoke", "digits-model-health"]);
}
