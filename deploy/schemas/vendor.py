#!/usr/bin/env python3
"""Regenerates the JSON schemas in this folder (run by hand; CI only reads the output).

    python3 deploy/schemas/vendor.py K8S_DEFINITIONS ARGO_CRDS_DIR

K8S_DEFINITIONS: `_definitions.json` of Kubernetes v1.31.0 "local-strict", as shipped in the
  PyPI package kubernetes-validate 1.37.0
  (kubernetes_validate/kubernetes-json-schema/v1.31.0-local-strict/_definitions.json),
  which converts Kubernetes' own OpenAPI (kubernetes/kubernetes api/openapi-spec) to JSON
  Schema with `additionalProperties: false` on every object: unknown fields are errors, as
  with `kubectl apply --validate=strict` (the default since kubectl 1.25).
ARGO_CRDS_DIR: manifests/crds/ of argoproj/argo-rollouts at tag v1.8.4 (rollout-crd.yaml,
  analysis-template-crd.yaml): the openAPIV3Schema of each CRD, made strict the same way
  (`additionalProperties: false` on objects with `properties`, except where the CRD says
  `x-kubernetes-preserve-unknown-fields`), which is what the API server's strict field
  validation does for CRDs.

Both are cut to what deploy/k8s uses: only the kinds below and the definitions they reach,
without `description` texts (the schemas' meaning is unchanged; the files shrink ~5x).
"""
import json
import sys
from pathlib import Path

import yaml  # PyYAML

KINDS = {
    ("v1", "ConfigMap"): "io.k8s.api.core.v1.ConfigMap",
    ("v1", "Service"): "io.k8s.api.core.v1.Service",
    ("apps/v1", "Deployment"): "io.k8s.api.apps.v1.Deployment",
    ("policy/v1", "PodDisruptionBudget"): "io.k8s.api.policy.v1.PodDisruptionBudget",
    ("networking.k8s.io/v1", "NetworkPolicy"): "io.k8s.api.networking.v1.NetworkPolicy",
}
ARGO = {
    "Rollout": "rollout-crd.yaml",
    "AnalysisTemplate": "analysis-template-crd.yaml",
}
PREFIX = "#/$defs/"


def strip(node):
    """Drops `description` texts (refs already point into `$defs`)."""
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if k == "description" and isinstance(v, str):
                continue
            out[k] = strip(v)
        return out
    if isinstance(node, list):
        return [strip(v) for v in node]
    return node


def refs(node, found):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str) and v.startswith(PREFIX):
                found.add(v[len(PREFIX):])
            else:
                refs(v, found)
    elif isinstance(node, list):
        for v in node:
            refs(v, found)


def strict(node):
    """additionalProperties: false on every object schema with properties, unless the CRD
    keeps unknown fields there."""
    if isinstance(node, dict):
        node = {k: strict(v) for k, v in node.items()}
        if (
            "properties" in node
            and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")
        ):
            node["additionalProperties"] = False
        return node
    if isinstance(node, list):
        return [strict(v) for v in node]
    return node


def main():
    defs = json.load(open(sys.argv[1]))["$defs"]
    crds = Path(sys.argv[2])
    keep, todo = set(), list(KINDS.values())
    while todo:
        name = todo.pop()
        if name in keep:
            continue
        keep.add(name)
        found = set()
        refs(defs[name], found)
        todo.extend(found - keep)
    out = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "$comment": "Kubernetes v1.31.0 strict, cut to deploy/k8s's kinds; see vendor.py",
        "kinds": {f"{gv} {kind}": name for (gv, kind), name in KINDS.items()},
        "$defs": {name: strip(defs[name]) for name in sorted(keep)},
    }
    here = Path(__file__).parent
    (here / "kubernetes-v1.31-strict.json").write_text(
        json.dumps(out, indent=1, sort_keys=True) + "\n"
    )
    for kind, file in ARGO.items():
        crd = yaml.safe_load(open(crds / file))
        version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1")
        schema = strict(strip(version["schema"]["openAPIV3Schema"]))
        schema["$schema"] = "http://json-schema.org/draft-07/schema#"
        schema["$comment"] = f"Argo Rollouts v1.8.4 {file}, v1alpha1, strict; see vendor.py"
        (here / f"argo-rollouts-v1.8-{kind.lower()}.json").write_text(
            json.dumps(schema, indent=1, sort_keys=True) + "\n"
        )


main()
