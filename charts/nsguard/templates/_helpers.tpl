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

{{/* The ServiceAccount nsguard runs as. */}}
{{- define "nsguard.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "nsguard.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The image, tag defaulting to the chart's appVersion. */}}
{{- define "nsguard.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* Scheduling of every pod of the release: the webhook's and helm test's. */}}
{{- define "nsguard.scheduling" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- end -}}
