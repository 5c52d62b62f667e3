{{/*
One component: Deployment + Service + PodDisruptionBudget (+ ServiceMonitor).
Called from templates/<component>/workload.yaml with:
  root   the chart context ($)
  name   the component's key under .Values.components (e.g. sinkClickhouse)
  stage  the `tributary run` stage (e.g. sink-clickhouse)
  args   extra arguments after `run <stage>`
  port   the HTTP port serving /healthz, /readyz (or /healthz) and /metrics
  ready  the readiness path
  env    (optional) more environment entries for this component
  stateful  (optional) a StatefulSet: stable pod names, so a replacement pod takes its
            predecessor's Kafka transactional id (the pod name) and fences its open transaction
*/}}
{{- define "tributary.workload" -}}
{{- $root := .root -}}
{{- $c := index $root.Values.components .name -}}
{{- $full := printf "%s-%s" (include "tributary.fullname" $root) .stage -}}
{{- $selector := dict "app.kubernetes.io/instance" $root.Release.Name "app.kubernetes.io/component" .stage -}}
apiVersion: apps/v1
kind: {{ ternary "StatefulSet" "Deployment" (default false .stateful) }}
metadata:
  name: {{ $full }}
  labels:
    {{- include "tributary.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .stage }}
spec:
  replicas: {{ $c.replicas }}
  {{- if .stateful }}
  serviceName: {{ $full }}
  podManagementPolicy: Parallel
  {{- end }}
  {{- if .recreate }}
  strategy:
    type: Recreate
  {{- end }}
  selector:
    matchLabels:
      {{- toYaml $selector | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "tributary.labels" $root | nindent 8 }}
        app.kubernetes.io/component: {{ .stage }}
      annotations:
        checksum/config: {{ include (print $root.Template.BasePath "/configmap.yaml") $root | sha256sum }}
        {{- if $root.Values.metrics.podAnnotations }}
        prometheus.io/scrape: "true"
        prometheus.io/port: {{ .port | quote }}
        prometheus.io/path: /metrics
        {{- end }}
    spec:
      {{- with $root.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      terminationGracePeriodSeconds: {{ $root.Values.terminationGracePeriodSeconds }}
      containers:
        - name: {{ .stage }}
          image: {{ include "tributary.image" $root | quote }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          args: {{ concat (list "run" .stage) .args | toJson }}
          env:
            {{- include "tributary.env" $root | nindent 12 }}
            {{- with .env }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          envFrom:
            - configMapRef:
                name: {{ include "tributary.fullname" $root }}-pipeline
          ports:
            - name: http
              containerPort: {{ .port }}
          livenessProbe:
            httpGet: {path: /healthz, port: http}
            initialDelaySeconds: 30
            periodSeconds: 15
            failureThreshold: 4
          readinessProbe:
            httpGet: {path: {{ .ready }}, port: http}
            periodSeconds: 10
          startupProbe:
            httpGet: {path: /healthz, port: http}
            periodSeconds: 10
            failureThreshold: 30
          resources:
            {{- $resources := deepCopy $c.resources }}
            {{- if and (hasKey $c "gpu") (gt (int $c.gpu) 0) }}
            {{- $limits := merge (dict "nvidia.com/gpu" (int $c.gpu)) ($resources.limits | default dict) }}
            {{- $_ := set $resources "limits" $limits }}
            {{- end }}
            {{- toYaml $resources | nindent 12 }}
          volumeMounts:
            - name: data
              mountPath: /var/lib/tributary
      volumes:
        - name: data
          {{- if .volume }}
          persistentVolumeClaim:
            claimName: {{ .volume }}
          {{- else }}
          # scratch space: the attribution worker's embedded Qdrant shard, rebuilt at start
          emptyDir: {}
          {{- end }}
      {{- with $c.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $c.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ $full }}
  labels:
    {{- include "tributary.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .stage }}
spec:
  selector:
    {{- toYaml $selector | nindent 4 }}
  ports:
    - name: http
      port: {{ .port }}
      targetPort: http
{{- if $c.podDisruptionBudget.enabled }}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ $full }}
  labels:
    {{- include "tributary.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .stage }}
spec:
  maxUnavailable: {{ $c.podDisruptionBudget.maxUnavailable }}
  selector:
    matchLabels:
      {{- toYaml $selector | nindent 6 }}
{{- end }}
{{- if $root.Values.metrics.serviceMonitor.enabled }}
---
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata:
  name: {{ $full }}
  labels:
    {{- include "tributary.labels" $root | nindent 4 }}
spec:
  selector:
    matchLabels:
      {{- toYaml $selector | nindent 6 }}
  endpoints:
    - port: http
      path: /metrics
      interval: {{ $root.Values.metrics.serviceMonitor.interval }}
{{- end }}
{{- end -}}
