{{/*
argomlops.name: the chart name, or nameOverride; cut to 63 characters, the limit of a label value.
*/}}
{{- define "argomlops.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
argomlops.fullname: the prefix of every object this release names for itself, "<release>-<chart>", or just
the release name when it already contains the chart name (so `helm install argomlops` gives "argomlops",
not "argomlops-argomlops"). Cut to 63 characters, the limit of a DNS label, without a trailing dash.
Objects other parts of argomlops refer to by a fixed name (argomlops-train, argomlops-trainer,
argomlops-gpu-queue) do not use it.
*/}}
{{- define "argomlops.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
argomlops.chart: "<chart>-<version>" for the helm.sh/chart label ("+" is not allowed in label values).
*/}}
{{- define "argomlops.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
argomlops.labels: the labels on every object of the release.
*/}}
{{- define "argomlops.labels" -}}
helm.sh/chart: {{ include "argomlops.chart" . }}
{{ include "argomlops.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: argomlops
{{- end }}

{{/*
argomlops.selectorLabels: the labels that pick the operator's pods; never change them in an upgrade
(a Deployment's selector is immutable).
*/}}
{{- define "argomlops.selectorLabels" -}}
app.kubernetes.io/name: {{ include "argomlops.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
argomlops.operatorName: "<fullname>-operator", the name of the operator's Deployment, ServiceAccount, Roles
and bindings; the prefix is cut so the whole name still fits in 63 characters.
*/}}
{{- define "argomlops.operatorName" -}}
{{- printf "%s-operator" (include "argomlops.fullname" . | trunc 54 | trimSuffix "-") }}
{{- end }}

{{/*
argomlops.namespaces: the namespaces where MLOps objects run, as a JSON list (templates read it back with
fromJsonArray): `namespaces`, or the release namespace when it is empty.
*/}}
{{- define "argomlops.namespaces" -}}
{{- if .Values.namespaces }}
{{- .Values.namespaces | uniq | toJson }}
{{- else }}
{{- list .Release.Namespace | toJson }}
{{- end }}
{{- end }}

{{/*
argomlops.imageRef: an image reference from a dict (repository, tag) and the chart: "<repository>:<tag>", the
tag defaulting to the chart's appVersion, or "<repository>@sha256:..." when the tag is a digest.
Called as (include "argomlops.imageRef" (list .Values.operator.image .)).
*/}}
{{- define "argomlops.imageRef" -}}
{{- $image := index . 0 }}
{{- $tag := default (index . 1).Chart.AppVersion $image.tag }}
{{- if hasPrefix "@" $tag }}
{{- printf "%s%s" $image.repository $tag }}
{{- else }}
{{- printf "%s:%s" $image.repository $tag }}
{{- end }}
{{- end }}

{{/*
argomlops.operatorImage: the operator's image reference (argomlops.imageRef of operator.image).
*/}}
{{- define "argomlops.operatorImage" -}}
{{- include "argomlops.imageRef" (list .Values.operator.image .) }}
{{- end }}

{{/*
argomlops.trainerImage: the image of MLOps objects without spec.image (argomlops.imageRef of trainer.image).
*/}}
{{- define "argomlops.trainerImage" -}}
{{- include "argomlops.imageRef" (list .Values.trainer.image .) }}
{{- end }}

{{/*
argomlops.operatorRules: what the operator may do in a namespace it watches, as a Role's (or, with
rbac.clusterWide, a ClusterRole's) rules.
*/}}
{{- define "argomlops.operatorRules" -}}
# Framework: kopf posts what the handlers did as core v1 Events on the MLOps object.
- apiGroups: [""]
  resources: [events]
  verbs: [create]
# Application: watch MLOps objects and read them fresh; kopf keeps its progress annotations on them.
- apiGroups: [argomlops.dev]
  resources: [mlops]
  verbs: [get, list, watch, patch]
# Application: phase, run id, stage, epoch, cost and history of the runs.
- apiGroups: [argomlops.dev]
  resources: [mlops/status]
  verbs: [patch]
# Application: children carry ownerReferences with blockOwnerDeletion (kopf.adopt); clusters running the
# OwnerReferencesPermissionEnforcement admission plugin only allow that to who may update the owner's finalizers.
- apiGroups: [argomlops.dev]
  resources: [mlops/finalizers]
  verbs: [update]
# Application: the immutable per-run ConfigMap holding run.yaml (never updated, never deleted: owner
# references let the garbage collector remove it with its MLOps object).
- apiGroups: [""]
  resources: [configmaps]
  verbs: [create]
# Application: start a run (and resume it after a budget stop), follow the runs' Workflows to mirror
# and charge them, and stop one at its budget the way `argo stop` does (a patch of spec.shutdown).
- apiGroups: [argoproj.io]
  resources: [workflows]
  verbs: [create, get, list, watch, patch]
# Application: the namespace's spend per month, one ConfigMap of a fixed name (created with the create
# rule above, the first time a run is charged; read and patched only by name).
- apiGroups: [""]
  resources: [configmaps]
  resourceNames: [argomlops-spend]
  verbs: [get, patch]
# Application: watch MLOpsSweep objects and read them fresh; kopf keeps its progress annotations on them.
- apiGroups: [argomlops.dev]
  resources: [mlopssweeps]
  verbs: [get, list, watch, patch]
# Application: a sweep's phase, trials, best trial and cost.
- apiGroups: [argomlops.dev]
  resources: [mlopssweeps/status]
  verbs: [patch]
# Application: trials carry an ownerReference to their sweep with blockOwnerDeletion (kopf.adopt).
- apiGroups: [argomlops.dev]
  resources: [mlopssweeps/finalizers]
  verbs: [update]
# Application: a sweep's trials are MLOps objects it creates (listed, annotated and budget-capped with
# the mlops rule above).
- apiGroups: [argomlops.dev]
  resources: [mlops]
  verbs: [create]
{{- end }}

{{/*
argomlops.frameworkName: "<operatorName>-framework", the ClusterRole for what kopf itself needs, cut to 63
characters like every other name of the release.
*/}}
{{- define "argomlops.frameworkName" -}}
{{- printf "%s-framework" (include "argomlops.operatorName" . | trunc 53 | trimSuffix "-") }}
{{- end }}

{{/*
argomlops.tensorboardName: "<fullname>-tensorboard", the name of TensorBoard's Deployment and Service, cut
so the whole name still fits in 63 characters.
*/}}
{{- define "argomlops.tensorboardName" -}}
{{- printf "%s-tensorboard" (include "argomlops.fullname" . | trunc 51 | trimSuffix "-") }}
{{- end }}

{{/*
argomlops.tensorboardNamespace: where TensorBoard runs: tensorboard.namespace, or the first namespace of
runs. It must be one of them: the argomlops-trainer ServiceAccount, whose Google identity reads the
bucket, exists only there.
*/}}
{{- define "argomlops.tensorboardNamespace" -}}
{{- $namespaces := include "argomlops.namespaces" . | fromJsonArray }}
{{- $namespace := default (first $namespaces) .Values.tensorboard.namespace }}
{{- if not (has $namespace $namespaces) }}
{{- fail (printf "tensorboard.namespace: %s is not one of the namespaces of runs %v (the argomlops-trainer ServiceAccount lives there)" $namespace $namespaces) }}
{{- end }}
{{- $namespace }}
{{- end }}

{{/*
argomlops.tensorboardLabels: the selector labels of TensorBoard's pods.
*/}}
{{- define "argomlops.tensorboardLabels" -}}
{{ include "argomlops.selectorLabels" . }}
app.kubernetes.io/component: tensorboard
{{- end }}

{{/*
argomlops.monthlyCaps: budget.namespaceMonthlyCaps as the operator's ARGOMLOPS_MONTHLY_CAPS, "ns=usd,ns=usd"
(sorted by namespace, so the pod template only changes when a cap does).
*/}}
{{- define "argomlops.monthlyCaps" -}}
{{- $caps := list }}
{{- range $namespace, $cap := .Values.budget.namespaceMonthlyCaps }}
{{- $caps = append $caps (printf "%s=%v" $namespace $cap) }}
{{- end }}
{{- join "," $caps }}
{{- end }}

{{/*
argomlops.checkovSkips: the checkov findings the chart's Deployments are exempt from, each with its
reason (scripts/scan runs checkov over the rendered chart; a skip needs its reason beside it):
- CKV_K8S_43 (image by digest): the chart cannot know the digest of an image built after it; a
  "@sha256:..." tag of operator.image, trainer.image or tensorboard.image pins one.
- CKV_K8S_15 (pullPolicy Always): images are versioned, never-moving tags or digests; pullPolicy is a value.
- CKV_K8S_40 (uid above 10000): 1000 is the images' own user (Dockerfile); pods run it non-root, without
  capabilities or privilege escalation, and share no user namespace with the node.
*/}}
{{- define "argomlops.checkovSkips" -}}
checkov.io/skip1: CKV_K8S_43=a digest is the installer's to pin, as a "@sha256:..." tag
checkov.io/skip2: CKV_K8S_15=versioned tags or digests do not move; pullPolicy is a value
checkov.io/skip3: CKV_K8S_40=uid 1000 is the image's own non-root user; no capabilities, no escalation
{{- end }}
