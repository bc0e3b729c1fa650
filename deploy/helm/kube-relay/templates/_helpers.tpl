{{- define "kube-relay.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "kube-relay.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "kube-relay.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "kube-relay.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "kube-relay.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "kube-relay.connectorSecretName" -}}
{{- default (printf "%s-connector" (include "kube-relay.fullname" .)) .Values.existingSecret -}}
{{- end -}}

{{/* The relay holds the cluster's connector key in tunnel mode, and in direct mode for central grants. */}}
{{- define "kube-relay.needsConnectorKey" -}}
{{- if or (eq .Values.mode "tunnel") .Values.centralGrants.enabled }}true{{ end -}}
{{- end -}}
