{{/* Names and labels shared by every component. */}}
{{- define "tributary.fullname" -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}

{{- define "tributary.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "tributary.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* Environment common to every component (the ConfigMap holds the pipeline settings). */}}
{{- define "tributary.env" -}}
- name: TRIBUTARY_KAFKA_BOOTSTRAP
  value: {{ required "kafka.bootstrapServers is required" .Values.kafka.bootstrapServers | quote }}
- name: TRIBUTARY_HTTP_HOST
  value: "0.0.0.0"
- name: TRIBUTARY_DATA_DIR
  value: /var/lib/tributary
# child mode: the stage runs as the container's process, without the local supervisor, so
# a crash or a stall exit restarts the container and Kubernetes sees (and backs off) it
- name: TRIBUTARY_STAGE_CHILD
  value: "1"
- name: TRIBUTARY_QUERY_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "tributary.queryTokenSecret" . }}
      key: {{ .Values.clickhouse.queryTokenSecret.key }}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: STRIPE_API_KEY
  valueFrom:
    secretKeyRef:
      name: {{ required "stripe.apiKeySecret.name is required" .Values.stripe.apiKeySecret.name }}
      key: {{ .Values.stripe.apiKeySecret.key }}
{{- with .Values.stripe.apiBase }}
- name: TRIBUTARY_STRIPE_API_BASE
  value: {{ . | quote }}
{{- end }}
{{- if not .Values.clickhouse.url }}
# the embedded chdb belongs to the ClickHouse sink's pod: other pods (the portal, the
# reconcile job, `tributary sql` in any pod) read through its query Service
- name: TRIBUTARY_QUERY_URL
  value: {{ printf "http://%s-sink-clickhouse:8080" (include "tributary.fullname" .) | quote }}
{{- end }}
{{- if .Values.clickhouse.url }}
- name: CLICKHOUSE_URL
  value: {{ .Values.clickhouse.url | quote }}
{{- end }}
{{- if .Values.clickhouse.passwordSecret.name }}
- name: CLICKHOUSE_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.clickhouse.passwordSecret.name }}
      key: {{ .Values.clickhouse.passwordSecret.key }}
{{- end }}
{{- with .Values.qdrant.url }}
- name: QDRANT_URL
  value: {{ . | quote }}
{{- end }}
{{- if .Values.qdrant.apiKeySecret.name }}
- name: QDRANT_API_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .Values.qdrant.apiKeySecret.name }}
      key: {{ .Values.qdrant.apiKeySecret.key }}
{{- end }}
{{- end -}}

{{/* The Secret holding the query endpoint's bearer token (given, or made by the chart). */}}
{{- define "tributary.queryTokenSecret" -}}
{{- .Values.clickhouse.queryTokenSecret.name | default (printf "%s-query-token" (include "tributary.fullname" .)) -}}
{{- end -}}

{{/* The Secret holding the portal's signing key (given, or made by the chart). */}}
{{- define "tributary.portalSecret" -}}
{{- .Values.portal.signingSecret.name | default (printf "%s-portal-signing" (include "tributary.fullname" .)) -}}
{{- end -}}
