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

{{/*
The effective provider values, as YAML for fromYaml; templates read these
rather than .Values.providers, .Values.inventory or .Values.digitalocean:
  providers:  each provider's values (providers.*)
  inventory:  what every provider's sync shares (inventory.*)
  enabled:    the names of the enabled providers
  deprecated: [{old, new}], each deprecated value set (NOTES.txt lists them)
The top-level digitalocean.* of earlier releases still works for this
release: each value set there moves to its new key. A value set both ways
fails, since taking either would silently drop one the user wrote.
A template cannot tell a value the user set from the chart's default, so a
new key counts as set when it differs from its default, repeated in the
table below (tests/chart.rs fails when one differs from values.yaml's). A
key missing altogether (`helm upgrade --reuse-values` from a release before
providers.*) gets its default.
*/}}
{{- define "arcadia-drift.providers" -}}
{{- /* [old key under digitalocean., new key, the new key's default] */ -}}
{{- $moved := `
- [enabled, providers.digitalocean.enabled, false]
- [tokenSecret.name, providers.digitalocean.tokenSecret.name, digitalocean-token]
- [tokenSecret.key, providers.digitalocean.tokenSecret.key, token]
- [apiUrl, providers.digitalocean.apiUrl, "https://api.digitalocean.com"]
- [syncInterval, inventory.syncInterval, 5m]
- [actionsInterval, providers.digitalocean.actionsInterval, 10s]
- [source, providers.digitalocean.source, digitalocean]
- [types, providers.digitalocean.types, [droplet, volume, load_balancer, database, kubernetes_cluster, firewall]]
- [requestsPerHour, providers.digitalocean.requestsPerHour, 2500]
- [missingRetention, inventory.missingRetention, 24h]
` | fromYamlArray -}}
{{- /* Copies: set below must not change .Values, which every template shares. */ -}}
{{- $effective := deepCopy (dict "providers" (get .Values "providers" | default dict) "inventory" (get .Values "inventory" | default dict)) -}}
{{- $old := get .Values "digitalocean" | default dict -}}
{{- $deprecated := list -}}
{{- range $moved -}}
  {{- $oldKey := splitList "." (index . 0) -}}
  {{- $newKey := splitList "." (index . 1) -}}
  {{- $default := index . 2 -}}
  {{- $from := $old -}}
  {{- range initial $oldKey }}{{ $from = index $from . | default dict }}{{ end -}}
  {{- $to := $effective -}}
  {{- range initial $newKey -}}
    {{- if not (kindIs "map" (index $to .)) }}{{ $_ := set $to . dict }}{{ end -}}
    {{- $to = index $to . -}}
  {{- end -}}
  {{- $leaf := last $newKey -}}
  {{- if not (hasKey $to $leaf) }}{{ $_ := set $to $leaf $default }}{{ end -}}
  {{- if hasKey $from (last $oldKey) -}}
    {{- $oldName := printf "digitalocean.%s" (index . 0) -}}
    {{- $newName := index . 1 -}}
    {{- if ne (toJson (index $to $leaf)) (toJson $default) -}}
      {{- fail (printf "both %s and %s are set: keep %s and remove %s (the top-level digitalocean values are deprecated)" $oldName $newName $newName $oldName) -}}
    {{- end -}}
    {{- $_ := set $to $leaf (index $from (last $oldKey)) -}}
    {{- $deprecated = append $deprecated (dict "old" $oldName "new" $newName) -}}
  {{- end -}}
{{- end -}}
{{- /* AWS came after providers.*: a release upgraded with --reuse-values
has none of its values, so each gets its default here (values.yaml's,
repeated; tests/chart.rs checks they agree). */ -}}
{{- $awsDefaults := dict "enabled" false "regions" (list "us-east-1") "roleArn" "" "credentialsSecret" (dict "name" "" "key" "credentials") "endpointUrl" "" "source" "aws" "types" (list "instance" "volume" "security_group") "requestsPerHour" 36000 "requestTimeout" "" -}}
{{- $_ := set $effective.providers "aws" (merge (get $effective.providers "aws" | default dict) $awsDefaults) -}}
{{- $enabled := list -}}
{{- range $name, $provider := $effective.providers -}}
  {{- if $provider.enabled }}{{ $enabled = append $enabled $name }}{{ end -}}
{{- end -}}
{{- toYaml (merge $effective (dict "enabled" $enabled "deprecated" $deprecated)) -}}
{{- end -}}
