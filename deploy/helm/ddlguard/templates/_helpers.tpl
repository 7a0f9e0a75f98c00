{{/* Chart name, truncated to 63 characters (DNS label). */}}
{{- define "ddlguard.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: release-chart, or the release name when it already contains the chart name. */}}
{{- define "ddlguard.fullname" -}}
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

{{- define "ddlguard.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ddlguard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "ddlguard.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "ddlguard.selectorLabels" . }}
app.kubernetes.io/component: proxy
app.kubernetes.io/version: {{ default .Chart.AppVersion .Values.image.tag | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "ddlguard.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "ddlguard.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "ddlguard.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if or (eq $tag "latest") (eq $tag "") }}
{{- fail "image.tag (or the chart's appVersion) must name a version, not latest" }}
{{- end }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}

{{/* Where the projected config volume is mounted; the image's CMD reads ddlguard.yaml there. */}}
{{- define "ddlguard.configDir" -}}/etc/ddlguard{{- end }}

{{/*
ddlguard.yaml: the chart's settings, with .Values.config merged over the free
ones. Keys the chart derives from other values may not be set in config.
*/}}
{{- define "ddlguard.configYaml" -}}
{{- $v := .Values }}
{{- $user := deepCopy (default (dict) $v.config) }}
{{- range $key := list "listen" "upstream" "shutdown" }}
{{- if hasKey $user $key }}
{{- fail (printf "config.%s is set by the chart (see the values upstream, containerPort and shutdown.*); remove it from config" $key) }}
{{- end }}
{{- end }}
{{- $admin := default (dict) (get $user "admin") }}
{{- if hasKey $admin "listen" }}{{ fail "config.admin.listen is set by the chart (admin.port); remove it from config" }}{{ end }}
{{- if hasKey $admin "token" }}{{ fail "config.admin.token would put the token in a ConfigMap: use admin.existingSecret" }}{{ end }}
{{- if hasKey (default (dict) (get $user "monitor")) "dsn" }}{{ fail "config.monitor.dsn would put a password in a ConfigMap: use monitor.existingSecret" }}{{ end }}
{{- if hasKey $user "client_tls" }}{{ fail "config.client_tls is set by the chart: use tls.enabled, tls.existingSecret and tls.require" }}{{ end }}
{{- $utls := default (dict) (get $user "upstream_tls") }}
{{- if or (hasKey $utls "mode") (hasKey $utls "ca_file") }}{{ fail "config.upstream_tls.mode and ca_file are set by the chart: use upstreamTLS.mode and upstreamTLS.caSecret" }}{{ end }}
{{- $dir := include "ddlguard.configDir" . }}
{{- $cfg := dict
  "log" (dict "format" "json" "level" "info") }}
{{- $cfg = mergeOverwrite $cfg $user }}
{{- $_ := set $cfg "listen" (printf "0.0.0.0:%d" (int $v.containerPort)) }}
{{- $_ := set $cfg "upstream" (required "upstream is required: the PostgreSQL server as host:port (--set upstream=db.example.internal:5432)" $v.upstream) }}
{{- $_ := set $cfg "admin" (mergeOverwrite $admin (dict "listen" (printf "0.0.0.0:%d" (int $v.admin.port)))) }}
{{- $utls = mergeOverwrite $utls (dict "mode" $v.upstreamTLS.mode) }}
{{- if $v.upstreamTLS.caSecret }}
{{- $_ := set $utls "ca_file" (printf "%s/upstream-ca/ca.crt" $dir) }}
{{- end }}
{{- $_ := set $cfg "upstream_tls" $utls }}
{{- if $v.tls.enabled }}
{{- if not $v.tls.existingSecret }}{{ fail "tls.enabled needs tls.existingSecret: a kubernetes.io/tls Secret with tls.crt and tls.key" }}{{ end }}
{{- $_ := set $cfg "client_tls" (dict "cert_file" (printf "%s/tls/tls.crt" $dir) "key_file" (printf "%s/tls/tls.key" $dir) "require" $v.tls.require) }}
{{- else if $v.tls.require }}
{{- fail "tls.require needs tls.enabled" }}
{{- end }}
{{- $_ := set $cfg "shutdown" (dict "delay" (printf "%ds" (int $v.shutdown.delaySeconds)) "drain_timeout" (printf "%ds" (int $v.shutdown.drainTimeoutSeconds))) }}
{{- toYaml $cfg }}
{{- end }}

{{/* preStop sleep + shutdown delay + drain timeout + margin. */}}
{{- define "ddlguard.terminationGracePeriodSeconds" -}}
{{- $s := .Values.shutdown }}
{{- add (int $s.preStopSleepSeconds) (int $s.delaySeconds) (int $s.drainTimeoutSeconds) (int $s.graceMarginSeconds) }}
{{- end }}
