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
