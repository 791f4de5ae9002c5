{{/* The name of every object; the release name unless overridden. */}}
{{- define "nsguard.fullname" -}}
{{- default .Release.Name .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "nsguard.labels" -}}
app.kubernetes.io/name: nsguard
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "nsguard.selectorLabels" -}}
app.kubernetes.io/name: nsguard
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The Secret the pods mount: tls.crt and tls.key. */}}
{{- define "nsguard.tlsSecret" -}}
{{- if eq .Values.certificates.source "existingSecret" -}}
{{- required "certificates.existingSecret.name is required with source existingSecret" .Values.certificates.existingSecret.name -}}
{{- else -}}
{{- include "nsguard.fullname" . }}-tls
{{- end -}}
{{- end -}}
