#!/usr/bin/env bash
# In-place mode, the pipeline step after a desired-version change has been synced:
# the fleet-level verdict. Creates an AnalysisRun from the `digits-fleet-verdict` template
# (analysis-template.yaml) and waits for it; anything but Successful — Failed, Error,
# Inconclusive, or no verdict within 6 minutes — exits 1, and the pipeline reverts the
# change in Git (every replica then rolls back instantly: the previous version is still
# loaded in standby).
#
#   deploy/k8s/in-place/verdict.sh NAMESPACE VERSION REPLICAS || { git revert --no-edit HEAD && git push; }
#
# Needs kubectl and the Argo Rollouts kubectl plugin (>= v1.8):
#   https://argo-rollouts.readthedocs.io/en/stable/generated/kubectl-argo-rollouts/kubectl-argo-rollouts_create_analysisrun/
set -euo pipefail
ns=${1:?namespace} version=${2:?version} replicas=${3:?replicas}
run=$(kubectl argo rollouts create analysisrun -n "$ns" --from digits-fleet-verdict \
  --generate-name digits-fleet-verdict- \
  -a namespace="$ns" -a version="$version" -a replicas="$replicas" |
  sed -n 's|^analysisrun.argoproj.io/\(.*\) created$|\1|p')
[ -n "$run" ] || { echo "verdict: could not create the AnalysisRun" >&2; exit 1; }
deadline=$((SECONDS + 360))
while [ "$SECONDS" -lt "$deadline" ]; do
  phase=$(kubectl get analysisrun -n "$ns" "$run" -o jsonpath='{.status.phase}')
  case "$phase" in
    Successful) echo "verdict: fleet on $version ($run)"; exit 0 ;;
    Failed|Error|Inconclusive)
      echo "verdict: $phase ($run): abort, revert to the previous version" >&2
      kubectl get analysisrun -n "$ns" "$run" -o jsonpath='{range .status.metricResults[*]}{.name}: {.phase} {.message}{"\n"}{end}' >&2
      exit 1 ;;
  esac
  sleep 10
done
echo "verdict: no verdict within 6 minutes ($run): abort" >&2
kubectl argo rollouts terminate analysisrun -n "$ns" "$run" >/dev/null 2>&1 || true
exit 1
