{{/* The chart name, or nameOverride: the app.kubernetes.io/name label. */}}
{{- define "mailrelay.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Prefix of every object name: fullnameOverride, else <release>-<name> (just the release name when it
     already contains the name). */}}
{{- define "mailrelay.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "mailrelay.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Name of cluster-scoped objects and of Roles in watched namespaces: the release namespace is part
     of it, so two releases of the same name in different namespaces do not collide. */}}
{{- define "mailrelay.rbacName" -}}
{{- printf "%s-%s" (include "mailrelay.fullname" .) .Release.Namespace | trunc 253 | trimSuffix "-" -}}
{{- end -}}

{{- define "mailrelay.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "mailrelay.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "mailrelay.selector" -}}
app.kubernetes.io/name: {{ include "mailrelay.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "mailrelay.labels" -}}
{{ include "mailrelay.selector" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: mailrelay
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end -}}

{{/* The operator's health endpoint (kopf's liveness endpoint). */}}
{{- define "mailrelay.healthPort" -}}8080{{- end -}}
