{{- define "mailrelay.name" -}}mailrelay-operator{{- end -}}

{{- define "mailrelay.labels" -}}
app.kubernetes.io/name: mailrelay-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "mailrelay.selector" -}}
app.kubernetes.io/name: mailrelay-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "mailrelay.fullname" -}}
{{- if eq .Release.Name "mailrelay-operator" -}}mailrelay-operator{{- else -}}{{ printf "%s-mailrelay-operator" .Release.Name | trunc 63 | trimSuffix "-" }}{{- end -}}
{{- end -}}

{{/* Permissions on the objects the operator serves; a ClusterRole or one Role per namespace. */}}
{{- define "mailrelay.rules" -}}
- apiGroups: [mailrelay.dev]
  resources: [mailrelays]
  verbs: [get, list, watch, patch]
- apiGroups: [mailrelay.dev]
  resources: [mailrelays/status]
  verbs: [get, patch]
- apiGroups: [mailrelay.dev]
  resources: [mailrelays/finalizers]
  verbs: [update]
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, list, watch, create, patch]
- apiGroups: [""]
  resources: [services]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [apps]
  resources: [deployments, statefulsets]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [policy]
  resources: [poddisruptionbudgets]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch]
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
- apiGroups: [""]
  resources: [events]
  verbs: [create, patch]
{{- if gt (int .Values.replicas) 1 }}
- apiGroups: [kopf.dev]
  resources: [kopfpeerings]
  verbs: [get, list, watch, patch]
{{- end }}
{{- end -}}
