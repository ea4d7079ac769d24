{{- define "arcadia-drift.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "arcadia-drift.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "arcadia-drift.labels" -}}
{{ include "arcadia-drift.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "arcadia-drift.serviceAccountName" -}}
{{- default (include "arcadia-drift.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "arcadia-drift.controllerUser" -}}
{{- printf "system:serviceaccount:%s:%s" .Release.Namespace (include "arcadia-drift.serviceAccountName" .) -}}
{{- end -}}

{{/*
Whether the MutatingAdmissionPolicy that stamps accepted-by is rendered: asked
for, on Kubernetes 1.36 or later (admissionregistration.k8s.io/v1 MAP is GA
there), and served by the cluster. Against a cluster, Helm's API list names
kinds and says whether it is served; `helm template` without a cluster lists
no kinds at all (not even ValidatingAdmissionPolicy), and then the version
decides alone.
*/}}
{{- define "arcadia-drift.stampsAcceptedBy" -}}
{{- $apis := .Capabilities.APIVersions -}}
{{- $listsKinds := $apis.Has "admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy" -}}
{{- $served := or (not $listsKinds) ($apis.Has "admissionregistration.k8s.io/v1/MutatingAdmissionPolicy") -}}
{{- if and .Values.acceptPolicy.stampAcceptedBy (semverCompare ">=1.36.0-0" .Capabilities.KubeVersion.Version) $served -}}
true
{{- end -}}
{{- end }}

{{/*
One NetworkPolicy egress rule from {cidrs, ports}: each CIDR is a string or an
ipBlock ({cidr, except}); every port is TCP.
*/}}
{{- define "arcadia-drift.egressRule" -}}
- to:
    {{- range .cidrs }}
    {{- if kindIs "string" . }}
    - ipBlock: {cidr: {{ . | quote }}}
    {{- else }}
    - ipBlock: {{- toYaml . | nindent 8 }}
    {{- end }}
    {{- end }}
  ports:
    {{- range .ports }}
    - {port: {{ . }}, protocol: TCP}
    {{- end }}
{{- end -}}

{{/*
--metrics-addr: the pod's own address (from the downward API's status.podIP,
expanded by the kubelet), so nothing else in the pod's network namespace is
served; or every interface.
*/}}
{{- define "arcadia-drift.metricsAddr" -}}
{{- $port := .Values.metrics.port -}}
{{- if eq .Values.metrics.bind "podIP" -}}
$(POD_IP):{{ $port }}
{{- else if eq .Values.metrics.bind "podIPv6" -}}
[$(POD_IP)]:{{ $port }}
{{- else -}}
0.0.0.0:{{ $port }}
{{- end -}}
{{- end -}}
