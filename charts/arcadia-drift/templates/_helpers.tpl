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
