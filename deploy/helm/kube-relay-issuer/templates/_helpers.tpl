{{- /* Named templates are shared by every chart of a release: these carry the chart's own prefix. */}}
{{- define "kube-relay-issuer.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "kube-relay-issuer.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "kube-relay-issuer.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "kube-relay-issuer.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "kube-relay-issuer.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- /* "true" when the store is PostgreSQL (a URL in values or in an existing Secret), "" for SQLite. */}}
{{- define "kube-relay-issuer.postgres" -}}
{{- if or .Values.store.url .Values.store.existingSecret }}true{{ end -}}
{{- end -}}

{{- define "kube-relay-issuer.storeSecretName" -}}
{{- default (printf "%s-store" (include "kube-relay-issuer.fullname" .)) .Values.store.existingSecret -}}
{{- end -}}

{{- define "kube-relay-issuer.pepperSecretName" -}}
{{- default (printf "%s-pepper" (include "kube-relay-issuer.fullname" .)) .Values.pepper.existingSecret -}}
{{- end -}}

{{- /* The data directory is a PersistentVolumeClaim only for SQLite with persistence.enabled. */}}
{{- define "kube-relay-issuer.persistent" -}}
{{- if and (not (include "kube-relay-issuer.postgres" .)) .Values.persistence.enabled }}true{{ end -}}
{{- end -}}

{{- /* Combinations of values the schema cannot express, each refused with a sentence naming what to set. */}}
{{- define "kube-relay-issuer.validate" -}}
{{- $_ := required "publicUrl is required: the https URL agents and relays reach the issuer at (every token's iss)" .Values.publicUrl -}}
{{- $_ := required "tls.existingSecret is required: a kubernetes.io/tls Secret (tls.crt, tls.key) for publicUrl's host name, e.g. from cert-manager (a certificate from each pod's own local CA would differ per pod and no client would trust it)" .Values.tls.existingSecret -}}
{{- if and .Values.store.url .Values.store.existingSecret -}}
{{- fail "store.url and store.existingSecret are both set: give the PostgreSQL URL one way" -}}
{{- end -}}
{{- if and .Values.pepper.value .Values.pepper.existingSecret -}}
{{- fail "pepper.value and pepper.existingSecret are both set: give the pepper one way" -}}
{{- end -}}
{{- if and (gt (int .Values.replicaCount) 1) (not (include "kube-relay-issuer.postgres" .)) -}}
{{- fail (printf "replicaCount is %d but no store URL is set: several replicas need one PostgreSQL store, so set store.url (postgres://…) or store.existingSecret; without one each pod would keep a SQLite store of its own in its data directory, with agents and clusters the others do not know" (int .Values.replicaCount)) -}}
{{- end -}}
{{- if and (include "kube-relay-issuer.postgres" .) (not (or .Values.pepper.value .Values.pepper.existingSecret)) -}}
{{- fail "pepper.value or pepper.existingSecret is required with a PostgreSQL store: every replica, and every kube-relay agent create or cluster create against that store, must hash keys with the same pepper (openssl rand -base64 32 makes one)" -}}
{{- end -}}
{{- with .Values.pepper.value -}}
{{- if lt (len .) 16 -}}
{{- fail "pepper.value is shorter than 16 bytes: use 32 random bytes (openssl rand -base64 32)" -}}
{{- end -}}
{{- if ne . (trim .) -}}
{{- fail "pepper.value begins or ends with whitespace (a newline from --set-file, say): remove it, since the pepper is every byte of the value and would differ from the same text given elsewhere without it; for a pepper file (binary, as kube-relay store migrate leaves it) create a Secret from the file and set pepper.existingSecret" -}}
{{- end -}}
{{- end -}}
{{- if and (not .Values.audit.stdout) (not .Values.audit.webhook.url) -}}
{{- fail "audit.stdout is false and audit.webhook.url is empty: the hub's audit records would have nowhere to go" -}}
{{- end -}}
{{- if and .Values.podDisruptionBudget.enabled (gt (int .Values.replicaCount) 1) (not (kindIs "string" .Values.podDisruptionBudget.minAvailable)) -}}
{{- if ge (int .Values.podDisruptionBudget.minAvailable) (int .Values.replicaCount) -}}
{{- fail (printf "podDisruptionBudget.minAvailable is %d with replicaCount %d: no pod could ever be evicted (node drains would hang); give less than replicaCount" (int .Values.podDisruptionBudget.minAvailable) (int .Values.replicaCount)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
