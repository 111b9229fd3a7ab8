//! The fleet recipe's rules, beyond what a schema can say — one or more per defect of
//! issue 20, each problem named so that a reader finds the manifest line to fix.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use promql_parser::parser::Expr;
use serde_json::Value;

use super::Doc;

/// One mode's rendered objects.
pub struct Mode {
    pub name: String,
    pub docs: Vec<Doc>,
}

/// The values the rules substitute for analysis arguments before parsing a query.
const ARG_SAMPLES: &[(&str, &str)] = &[
    ("namespace", "digits"),
    ("pod-template-hash", "5d8f9c7b4"),
    ("version", "3"),
    ("replicas", "3"),
    ("service", "digits-preview"),
];

/// Shortest range a rate window may have: four scrapes at a 30 s interval.
const SHORTEST_RANGE: Duration = Duration::from_secs(120);

/// Every problem of one mode; empty when it follows the recipe.
pub fn check(m: &Mode, exported: &BTreeSet<String>) -> Vec<String> {
    let mut p = Vec::new();
    let workloads: Vec<&Doc> = m
        .docs
        .iter()
        .filter(|d| matches!(d.kind(), "Deployment" | "Rollout"))
        .collect();
    for w in &workloads {
        let at = format!("{} {}", w.kind(), w.name());
        let pod = &w.value["spec"]["template"];
        restricted(&pod["spec"], &at, &mut p);
        serving(w, &mut p);
        let serving_replicas = if w.kind() == "Deployment" {
            w.value["spec"]["replicas"].as_i64().unwrap_or(1)
        } else {
            1
        };
        if serving_replicas > 0 {
            budget_and_policy(m, pod, &at, &mut p);
        }
    }
    for d in m.docs.iter().filter(|d| d.kind() == "Rollout") {
        rollout(m, d, &mut p);
    }
    for d in m.docs.iter().filter(|d| d.kind() == "AnalysisTemplate") {
        analysis(d, exported, &mut p);
    }
    p
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

fn array(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or(&[])
}

/// Every container spec of an object: workload templates and analysis jobs.
pub fn containers(v: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for pod in pods(v) {
        out.extend(array(&pod["containers"]));
        out.extend(array(&pod["initContainers"]));
    }
    out
}

fn pods(v: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    match s(&v["kind"]) {
        "Deployment" | "Rollout" => out.push(&v["spec"]["template"]["spec"]),
        "AnalysisTemplate" => {
            for m in array(&v["spec"]["metrics"]) {
                let job = &m["provider"]["job"];
                if !job.is_null() {
                    out.push(&job["spec"]["template"]["spec"]);
                }
            }
        }
        _ => {}
    }
    out
}

/// The "restricted" Pod Security Standard (defect 8), the checks that apply to these pods.
/// https://kubernetes.io/docs/concepts/security/pod-security-standards/#restricted
fn restricted(pod: &Value, at: &str, p: &mut Vec<String>) {
    let cs: Vec<&Value> = array(&pod["containers"])
        .iter()
        .chain(array(&pod["initContainers"]))
        .collect();
    let pod_sc = &pod["securityContext"];
    let seccomp_ok = |sc: &Value| {
        matches!(
            s(&sc["seccompProfile"]["type"]),
            "RuntimeDefault" | "Localhost"
        )
    };
    if !seccomp_ok(pod_sc) && !cs.iter().all(|c| seccomp_ok(&c["securityContext"])) {
        p.push(format!(
            "{at}: no seccompProfile RuntimeDefault — rejected at the restricted Pod Security level"
        ));
    }
    if pod_sc["runAsNonRoot"] != true
        && !cs
            .iter()
            .all(|c| c["securityContext"]["runAsNonRoot"] == true)
    {
        p.push(format!("{at}: runAsNonRoot is not true"));
    }
    for key in ["hostNetwork", "hostPID", "hostIPC"] {
        if pod[key] == true {
            p.push(format!("{at}: {key}"));
        }
    }
    for c in &cs {
        let sc = &c["securityContext"];
        let name = s(&c["name"]);
        if sc["allowPrivilegeEscalation"] != false {
            p.push(format!(
                "{at}/{name}: allowPrivilegeEscalation is not false"
            ));
        }
        if sc["privileged"] == true {
            p.push(format!("{at}/{name}: privileged"));
        }
        if !array(&sc["capabilities"]["drop"])
            .iter()
            .any(|d| d == "ALL")
        {
            p.push(format!("{at}/{name}: capabilities.drop lacks ALL"));
        }
        if array(&sc["capabilities"]["add"])
            .iter()
            .any(|a| a != "NET_BIND_SERVICE")
        {
            p.push(format!("{at}/{name}: adds capabilities"));
        }
    }
    for v in array(&pod["volumes"]) {
        let kind = v
            .as_object()
            .and_then(|o| o.keys().find(|k| *k != "name"))
            .map(String::as_str)
            .unwrap_or("");
        if !matches!(
            kind,
            "configMap"
                | "emptyDir"
                | "persistentVolumeClaim"
                | "secret"
                | "projected"
                | "downwardAPI"
                | "csi"
                | "ephemeral"
        ) {
            p.push(format!("{at}: volume type {kind} not allowed"));
        }
    }
}

/// The serve container's own rules: probes, memory, the admin port, how the version is
/// chosen, where the journal lives.
fn serving(w: &Doc, p: &mut Vec<String>) {
    let at = format!("{} {}", w.kind(), w.name());
    let pod = &w.value["spec"]["template"];
    let Some(c) = array(&pod["spec"]["containers"])
        .iter()
        .find(|c| s(&c["image"]).contains("digits-serve"))
    else {
        p.push(format!("{at}: no serve container"));
        return;
    };
    let args: Vec<&str> = array(&c["args"]).iter().map(s).collect();
    let flag = |name: &str| {
        args.iter().find_map(|a| {
            a.strip_prefix(name)
                .and_then(|rest| rest.strip_prefix('=').or(rest.is_empty().then_some("")))
        })
    };

    // Probes (defects 9, 10).
    let ready = &c["readinessProbe"];
    if s(&ready["httpGet"]["path"]) != "/readyz" {
        p.push(format!("{at}: readinessProbe is not /readyz"));
    }
    let threshold = ready["failureThreshold"].as_i64().unwrap_or(3);
    if threshold < 3 {
        p.push(format!(
            "{at}: readinessProbe.failureThreshold {threshold} flaps while gates load the CPU (>= 3)"
        ));
    }
    let timeout = ready["timeoutSeconds"].as_i64().unwrap_or(1);
    if timeout < 3 {
        p.push(format!(
            "{at}: readinessProbe.timeoutSeconds {timeout} flaps under CPU contention (>= 3)"
        ));
    }
    if s(&c["livenessProbe"]["httpGet"]["path"]) != "/healthz" {
        p.push(format!("{at}: livenessProbe is not /healthz"));
    }
    if s(&c["startupProbe"]["httpGet"]["path"]) == "/healthz" {
        p.push(format!(
            "{at}: startupProbe on /healthz holds nothing back: the port is bound before the model loads"
        ));
    }

    // Memory (defect 11): request = limit.
    let req = s(&c["resources"]["requests"]["memory"]);
    let lim = s(&c["resources"]["limits"]["memory"]);
    if req.is_empty() || req != lim {
        p.push(format!(
            "{at}: memory request {req} != limit {lim}: size both for three resident models"
        ));
    }

    // The admin port apart from the clients' (README "also").
    match flag("--admin-port").and_then(|v| v.parse::<i64>().ok()) {
        None => p.push(format!(
            "{at}: no --admin-port: /admin and /metrics would share the clients' port"
        )),
        Some(port) => {
            let named = array(&c["ports"])
                .iter()
                .any(|x| x["name"] == "admin" && x["containerPort"] == port);
            if !named {
                p.push(format!("{at}: no container port `admin` = {port}"));
            }
            let scraped = s(&pod["metadata"]["annotations"]["prometheus.io/port"]);
            if scraped != port.to_string() {
                p.push(format!(
                    "{at}: Prometheus scrapes port {scraped:?}, /metrics is on {port}"
                ));
            }
        }
    }

    // Volumes: ConfigMaps mounted as directories (subPath never updates).
    let volumes: BTreeMap<&str, &Value> = array(&pod["spec"]["volumes"])
        .iter()
        .map(|v| (s(&v["name"]), v))
        .collect();
    let mounts = array(&c["volumeMounts"]);
    for mnt in mounts {
        let v = volumes.get(s(&mnt["name"]));
        if v.is_some_and(|v| !v["configMap"].is_null()) && !mnt["subPath"].is_null() {
            p.push(format!(
                "{at}: a ConfigMap mounted with subPath never sees updates"
            ));
        }
    }
    let mounted_from = |path: &str| {
        mounts
            .iter()
            .filter(|m| path.starts_with(&format!("{}/", s(&m["mountPath"]))))
            .max_by_key(|m| s(&m["mountPath"]).len())
            .and_then(|m| volumes.get(s(&m["name"])).copied())
    };

    // How the version is chosen.
    match (w.kind(), flag("--desired")) {
        ("Deployment", Some(desired)) => {
            if flag("--poll-only").is_none() {
                p.push(format!(
                    "{at}: no --poll-only: the shared repository volume (NFS) gives inotify nothing"
                ));
            }
            if mounted_from(desired).is_none_or(|v| v["configMap"].is_null()) {
                p.push(format!("{at}: --desired {desired} is not on a ConfigMap volume"));
            }
            match flag("--journal") {
                None => p.push(format!(
                    "{at}: no --journal: a replica restarted after a refusal would boot the refused version"
                )),
                Some(j) => {
                    if mounted_from(j).is_none_or(|v| v["emptyDir"].is_null()) {
                        p.push(format!(
                            "{at}: --journal {j} is not on a local emptyDir (SQLite needs a local file system)"
                        ));
                    }
                }
            }
        }
        ("Deployment", None) => p.push(format!("{at}: in-place mode needs --desired")),
        (_, Some(_)) => p.push(format!(
            "{at}: pod-level blue-green pods must not follow --desired (versions change by new pods)"
        )),
        (_, None) => {
            if flag("--version").is_none() {
                p.push(format!("{at}: no --version in the pod template"));
            }
        }
    }
}

/// Labels of a pod template, and whether a `matchLabels` selector picks them.
fn selects(selector: &Value, pod: &Value) -> bool {
    let labels = &pod["metadata"]["labels"];
    let wanted = selector["matchLabels"].as_object();
    wanted.is_some_and(|w| !w.is_empty() && w.iter().all(|(k, v)| &labels[k] == v))
}

/// A PodDisruptionBudget (defect 12), and a NetworkPolicy that keeps the admin port from
/// clients, for serving pods; no Service exposing the admin port.
fn budget_and_policy(m: &Mode, pod: &Value, at: &str, p: &mut Vec<String>) {
    let pdb = m
        .docs
        .iter()
        .any(|d| d.kind() == "PodDisruptionBudget" && selects(&d.value["spec"]["selector"], pod));
    if !pdb {
        p.push(format!("{at}: no PodDisruptionBudget selects its pods"));
    }
    // Admitted only from selected peers: some rule names the admin port with a `from`, and
    // no rule opens it (no `from`, and the admin port or every port).
    let admin_guarded = m.docs.iter().any(|d| {
        let rules = array(&d.value["spec"]["ingress"]);
        let names_admin = |r: &Value| array(&r["ports"]).iter().any(|x| x["port"] == "admin");
        d.kind() == "NetworkPolicy"
            && selects(&d.value["spec"]["podSelector"], pod)
            && rules
                .iter()
                .any(|r| names_admin(r) && !array(&r["from"]).is_empty())
            && !rules.iter().any(|r| {
                array(&r["from"]).is_empty() && (names_admin(r) || array(&r["ports"]).is_empty())
            })
    });
    if !admin_guarded {
        p.push(format!(
            "{at}: no NetworkPolicy admits the admin port from selected peers only"
        ));
    }
    for svc in m.docs.iter().filter(|d| d.kind() == "Service") {
        for port in array(&svc.value["spec"]["ports"]) {
            if port["targetPort"] == "admin" || port["targetPort"] == 9090 {
                p.push(format!("Service {}: exposes the admin port", svc.name()));
            }
        }
    }
}

fn duration(v: &Value) -> Duration {
    let t = match v {
        Value::Number(n) => return Duration::from_secs(n.as_u64().unwrap_or(0)),
        Value::String(t) => t.as_str(),
        _ => return Duration::ZERO,
    };
    let (n, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let n: u64 = n.parse().unwrap_or(0);
    Duration::from_secs(match unit {
        "h" => n * 3600,
        "m" => n * 60,
        _ => n,
    })
}

fn int(v: &Value) -> Option<i64> {
    v.as_i64()
        .or_else(|| v.as_str().and_then(|t| t.parse().ok()))
}

/// How long an AnalysisRun of this template can run: the slowest metric.
fn longest(t: &Value) -> Duration {
    array(&t["spec"]["metrics"])
        .iter()
        .map(|m| {
            duration(&m["initialDelay"])
                + duration(&m["interval"]) * int(&m["count"]).unwrap_or(1).max(1) as u32
        })
        .max()
        .unwrap_or_default()
}

fn rollout(m: &Mode, r: &Doc, p: &mut Vec<String>) {
    let at = format!("Rollout {}", r.name());
    let spec = &r.value["spec"];
    let bg = &spec["strategy"]["blueGreen"];
    if bg.is_null() {
        p.push(format!("{at}: not a blue-green strategy"));
        return;
    }
    if spec["progressDeadlineAbort"] != true {
        p.push(format!(
            "{at}: progressDeadlineAbort is not true: a preview that never gets ready waits forever"
        ));
    }
    // workloadRef needs the Deployment scaled to 0 (defect 2).
    if !spec["workloadRef"].is_null() {
        let name = s(&spec["workloadRef"]["name"]);
        let d = m
            .docs
            .iter()
            .find(|d| d.kind() == "Deployment" && d.name() == name);
        if d.is_none_or(|d| d.value["spec"]["replicas"] != 0) {
            p.push(format!(
                "{at}: workloadRef to Deployment {name}, which must exist with replicas: 0 \
                 (Argo's migration guide), or every apply fights Argo"
            ));
        }
    }
    for svc in [&bg["activeService"], &bg["previewService"]] {
        if !m
            .docs
            .iter()
            .any(|d| d.kind() == "Service" && d.name() == s(svc))
        {
            p.push(format!("{at}: Service {svc} is not in this mode"));
        }
    }
    let mut post = Duration::ZERO;
    for phase in ["prePromotionAnalysis", "postPromotionAnalysis"] {
        let a = &bg[phase];
        if a.is_null() {
            p.push(format!("{at}: no {phase}"));
            continue;
        }
        let given: BTreeSet<&str> = array(&a["args"]).iter().map(|x| s(&x["name"])).collect();
        for arg in array(&a["args"]) {
            let hash = &arg["valueFrom"]["podTemplateHashValue"];
            if !hash.is_null() && !matches!(s(hash), "Stable" | "Latest") {
                p.push(format!(
                    "{at}: {phase}: podTemplateHashValue {hash} is not one Argo knows \
                     (Stable, Latest): the argument would be empty"
                ));
            }
        }
        let mut declared = BTreeSet::new();
        for t in array(&a["templates"]) {
            let name = s(&t["templateName"]);
            let Some(tpl) = m
                .docs
                .iter()
                .find(|d| d.kind() == "AnalysisTemplate" && d.name() == name)
            else {
                p.push(format!(
                    "{at}: {phase}: AnalysisTemplate {name} is not in this mode"
                ));
                continue;
            };
            for arg in array(&tpl.value["spec"]["args"]) {
                let n = s(&arg["name"]);
                declared.insert(n);
                if arg["value"].is_null() && !given.contains(n) {
                    p.push(format!("{at}: {phase}: template {name} needs argument {n}"));
                }
            }
            if phase == "postPromotionAnalysis" {
                post = post.max(longest(&tpl.value));
            }
        }
        for g in &given {
            if !declared.contains(g) {
                p.push(format!(
                    "{at}: {phase}: argument {g} is declared by no template"
                ));
            }
        }
    }
    // scaleDownDelaySeconds cancels the post-promotion run, which then counts as a success
    // (defect 7).
    if let Some(delay) = int(&bg["scaleDownDelaySeconds"])
        && Duration::from_secs(delay.max(0) as u64) <= post
    {
        p.push(format!(
            "{at}: scaleDownDelaySeconds {delay} <= the post-promotion analysis ({} s): \
             Argo cancels the run, and a cancelled run counts as successful",
            post.as_secs()
        ));
    }
}

/// The `{{args.x}}` names a text uses.
fn placeholders(text: &str) -> Vec<&str> {
    text.split("{{")
        .skip(1)
        .filter_map(|rest| rest.split_once("}}").map(|(inner, _)| inner.trim()))
        .collect()
}

/// A text with each declared argument replaced by its sample value; the placeholders left
/// are undeclared.
fn substitute(text: &str, declared: &BTreeSet<&str>) -> String {
    let mut out = text.to_owned();
    for name in declared {
        let sample = ARG_SAMPLES
            .iter()
            .find(|(n, _)| n == name)
            .map_or("x", |(_, v)| v);
        out = out.replace(&format!("{{{{args.{name}}}}}"), sample);
    }
    out
}

/// Each Prometheus metric of a template and its query, arguments substituted.
pub fn queries(d: &Doc) -> Vec<(String, String)> {
    let declared: BTreeSet<&str> = array(&d.value["spec"]["args"])
        .iter()
        .map(|a| s(&a["name"]))
        .collect();
    array(&d.value["spec"]["metrics"])
        .iter()
        .filter(|m| !m["provider"]["prometheus"].is_null())
        .map(|m| {
            (
                s(&m["name"]).to_owned(),
                substitute(s(&m["provider"]["prometheus"]["query"]), &declared),
            )
        })
        .collect()
}

/// A series selection in a query: metric name, matchers (`name=value` for equality
/// matchers; others with their operator), and the range of a range selection.
#[derive(Debug)]
pub struct Selection {
    pub name: String,
    pub equal: BTreeMap<String, String>,
    pub range: Option<Duration>,
}

/// Every series selection of a parsed query, and the aggregations it uses.
pub fn selectors(e: &Expr) -> Vec<Selection> {
    let mut out = Vec::new();
    walk(e, &mut out, &mut Vec::new());
    out
}

fn aggregations(e: &Expr) -> Vec<String> {
    let mut out = Vec::new();
    walk(e, &mut Vec::new(), &mut out);
    out
}

fn walk(e: &Expr, sel: &mut Vec<Selection>, aggs: &mut Vec<String>) {
    use promql_parser::label::MatchOp;
    use promql_parser::parser::VectorSelector;
    let vector = |v: &VectorSelector, range: Option<Duration>| Selection {
        name: v.name.clone().unwrap_or_default(),
        equal: v
            .matchers
            .matchers
            .iter()
            .filter(|m| matches!(m.op, MatchOp::Equal))
            .map(|m| (m.name.clone(), m.value.clone()))
            .collect(),
        range,
    };
    match e {
        Expr::Aggregate(a) => {
            aggs.push(a.op.to_string());
            walk(&a.expr, sel, aggs);
            if let Some(p) = &a.param {
                walk(p, sel, aggs);
            }
        }
        Expr::Unary(u) => walk(&u.expr, sel, aggs),
        Expr::Binary(b) => {
            walk(&b.lhs, sel, aggs);
            walk(&b.rhs, sel, aggs);
        }
        Expr::Paren(x) => walk(&x.expr, sel, aggs),
        Expr::Subquery(x) => walk(&x.expr, sel, aggs),
        Expr::VectorSelector(v) => sel.push(vector(v, None)),
        Expr::MatrixSelector(m) => sel.push(vector(&m.vs, Some(m.range))),
        Expr::Call(c) => {
            for a in &c.args.args {
                walk(a, sel, aggs);
            }
        }
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
    }
}

fn analysis(d: &Doc, exported: &BTreeSet<String>, p: &mut Vec<String>) {
    let t = d.name();
    let declared: BTreeSet<&str> = array(&d.value["spec"]["args"])
        .iter()
        .map(|a| s(&a["name"]))
        .collect();
    for pod in pods(&d.value) {
        restricted(pod, &format!("AnalysisTemplate {t} job"), p);
    }
    let text = serde_json::to_string(&d.value).unwrap();
    for ph in placeholders(&text) {
        let name = ph.strip_prefix("args.").unwrap_or(ph);
        if !declared.contains(name) {
            p.push(format!(
                "AnalysisTemplate {t}: {{{{{ph}}}}} is not a declared argument"
            ));
        }
    }
    for m in array(&d.value["spec"]["metrics"]) {
        let at = format!("AnalysisTemplate {t}/{}", s(&m["name"]));
        let prom = &m["provider"]["prometheus"];
        if prom.is_null() {
            continue; // a job: its exit status is the verdict
        }
        // Never passes on missing data (defect 3).
        let cond = s(&m["successCondition"]);
        if !cond.starts_with("len(result) == 1 &&") || cond.contains("len(result) == 0") {
            p.push(format!(
                "{at}: successCondition {cond:?} must demand exactly one series \
                 (`len(result) == 1 && …`): an empty result must fail"
            ));
        }
        if !m["failureCondition"].is_null() {
            p.push(format!(
                "{at}: failureCondition: next to a successCondition an empty result is \
                 Inconclusive, which pauses a Rollout instead of aborting it"
            ));
        }
        // Limits (defect 5).
        let count = int(&m["count"]);
        let failure = int(&m["failureLimit"]).unwrap_or(0);
        let consecutive = int(&m["consecutiveSuccessLimit"]).unwrap_or(0);
        match count {
            None => p.push(format!("{at}: no count: the measurement never ends")),
            Some(count) => {
                if consecutive == 0 && failure != 0 {
                    p.push(format!(
                        "{at}: failureLimit {failure} of count {count}: passes on {} good \
                         measurement(s) (use 0, or consecutiveSuccessLimit)",
                        count - failure
                    ));
                }
                if consecutive != 0 && (consecutive < 2 || failure < 0 || failure >= count) {
                    p.push(format!(
                        "{at}: consecutiveSuccessLimit {consecutive} with failureLimit \
                         {failure} of count {count}: no deadline or no streak"
                    ));
                }
            }
        }
        // The query (defects 3, 4, 6).
        let query = substitute(s(&prom["query"]), &declared);
        let expr = match promql_parser::parser::parse(&query) {
            Ok(e) => e,
            Err(e) => {
                p.push(format!("{at}: PromQL does not parse: {e}"));
                continue;
            }
        };
        for agg in aggregations(&expr) {
            if agg == "min" || agg == "max" {
                p.push(format!(
                    "{at}: {agg}() over replicas ignores pods not scraped yet: count them"
                ));
            }
        }
        for sel in selectors(&expr) {
            if !exported.contains(&sel.name) {
                p.push(format!(
                    "{at}: series {} is not exported by the service (examples/serve/metrics.rs)",
                    sel.name
                ));
            }
            for label in ["namespace", "app_kubernetes_io_name", "model"] {
                if !sel.equal.contains_key(label) {
                    p.push(format!("{at}: {} has no {label} matcher", sel.name));
                }
            }
            if let Some(r) = sel.range
                && r < SHORTEST_RANGE
            {
                p.push(format!(
                    "{at}: {}[{}m] is shorter than four 30 s scrapes: often empty",
                    sel.name,
                    r.as_secs() / 60
                ));
            }
        }
    }
}

/// A pod template without what legitimately differs between the modes: the flags that
/// choose the version (and the watcher's), the ConfigMap volume, and the comments' words.
pub fn without_version_choice(mut tpl: Value) -> Value {
    let spec = &mut tpl["spec"];
    if let Some(vs) = spec["volumes"].as_array_mut() {
        vs.retain(|v| v["configMap"].is_null());
    }
    if let Some(cs) = spec["containers"].as_array_mut() {
        for c in cs {
            if let Some(args) = c["args"].as_array_mut() {
                args.retain(|a| {
                    let a = s(a);
                    !["--desired", "--poll-only", "--poll-ms", "--version"]
                        .iter()
                        .any(|f| a == *f || a.starts_with(&format!("{f}=")))
                });
            }
            if let Some(ms) = c["volumeMounts"].as_array_mut() {
                ms.retain(|m| m["name"] != "desired-version");
            }
        }
    }
    tpl
}
