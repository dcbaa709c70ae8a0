{{/*
Shared definitions. Every workload runs the same image and the same
`tidemark` binary with a different subcommand; what they share (Kafka
connection, security contexts, the catalog and registry volumes) is defined
once here.
*/}}

{{- define "tidemark.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "tidemark.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Labels of every object. */}}
{{- define "tidemark.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "tidemark.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels of one component: call with (dict "root" $ "component" "ingest"). */}}
{{- define "tidemark.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tidemark.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "tidemark.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "tidemark.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "tidemark.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "tidemark.catalogConfigMap" -}}
{{- default (printf "%s-catalog" (include "tidemark.fullname" .)) .Values.catalog.existingConfigMap -}}
{{- end -}}

{{- define "tidemark.registryConfigMap" -}}
{{- default (printf "%s-keys" (include "tidemark.fullname" .)) .Values.keyRegistry.existingConfigMap -}}
{{- end -}}

{{- define "tidemark.hasCatalog" -}}
{{- if or .Values.catalog.toml .Values.catalog.existingConfigMap -}}true{{- end -}}
{{- end -}}

{{/*
The security protocol librdkafka gets from kafka.tls and kafka.sasl. An
explicit `security.protocol` in kafka.options wins (it is passed after).
*/}}
{{- define "tidemark.securityProtocol" -}}
{{- if and .Values.kafka.tls.enabled .Values.kafka.sasl.enabled -}}SASL_SSL
{{- else if .Values.kafka.tls.enabled -}}SSL
{{- else if .Values.kafka.sasl.enabled -}}SASL_PLAINTEXT
{{- else -}}PLAINTEXT
{{- end -}}
{{- end -}}

{{/*
`--kafka-option` arguments. SASL credentials are not among them: the
services read them from TIDEMARK_KAFKA_SASL_USERNAME and
TIDEMARK_KAFKA_SASL_PASSWORD (set from the Secret below), so they appear
neither in the pod spec nor in the process's command line.
*/}}
{{- define "tidemark.kafkaArgs" -}}
- --kafka-option
- security.protocol={{ include "tidemark.securityProtocol" . }}
{{- if .Values.kafka.tls.enabled }}
{{- if .Values.kafka.tls.secretName }}
- --kafka-option
- ssl.ca.location=/etc/tidemark/kafka-tls/ca.crt
{{- if .Values.kafka.tls.clientCert }}
- --kafka-option
- ssl.certificate.location=/etc/tidemark/kafka-tls/tls.crt
- --kafka-option
- ssl.key.location=/etc/tidemark/kafka-tls/tls.key
{{- end }}
{{- end }}
{{- end }}
{{- if .Values.kafka.sasl.enabled }}
- --kafka-option
- sasl.mechanism={{ .Values.kafka.sasl.mechanism }}
{{- end }}
{{- range $key, $value := .Values.kafka.options }}
- --kafka-option
- {{ printf "%s=%v" $key $value | quote }}
{{- end }}
{{- end -}}

{{/* Environment shared by every service container. */}}
{{- define "tidemark.commonEnv" -}}
- name: TIDEMARK_BROKERS
  value: {{ required "kafka.brokers is required: the chart bundles no broker" .Values.kafka.brokers | quote }}
- name: TIDEMARK_TOPIC_PREFIX
  value: {{ .Values.kafka.topicPrefix | quote }}
- name: TIDEMARK_LOG_FORMAT
  value: {{ .Values.logFormat | quote }}
- name: RUST_LOG
  value: {{ .Values.logLevel | quote }}
{{- if include "tidemark.hasCatalog" . }}
- name: TIDEMARK_CATALOG
  value: /etc/tidemark/catalog/catalog.toml
{{- end }}
{{- if .Values.kafka.sasl.enabled }}
- name: TIDEMARK_KAFKA_SASL_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ required "kafka.sasl.existingSecret is required with kafka.sasl.enabled" .Values.kafka.sasl.existingSecret }}
      key: {{ .Values.kafka.sasl.usernameKey }}
- name: TIDEMARK_KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.kafka.sasl.existingSecret }}
      key: {{ .Values.kafka.sasl.passwordKey }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Mounts shared by every service container: /tmp (the root filesystem is read-only), catalog, Kafka TLS. */}}
{{- define "tidemark.commonMounts" -}}
- name: tmp
  mountPath: /tmp
{{- if include "tidemark.hasCatalog" . }}
- name: catalog
  mountPath: /etc/tidemark/catalog
  readOnly: true
{{- end }}
{{- if and .Values.kafka.tls.enabled .Values.kafka.tls.secretName }}
- name: kafka-tls
  mountPath: /etc/tidemark/kafka-tls
  readOnly: true
{{- end }}
{{- end -}}

{{/* Volumes behind tidemark.commonMounts. */}}
{{- define "tidemark.commonVolumes" -}}
- name: tmp
  emptyDir: {}
{{- if include "tidemark.hasCatalog" . }}
- name: catalog
  configMap:
    name: {{ include "tidemark.catalogConfigMap" . }}
{{- end }}
{{- if and .Values.kafka.tls.enabled .Values.kafka.tls.secretName }}
- name: kafka-tls
  secret:
    secretName: {{ .Values.kafka.tls.secretName }}
{{- end }}
{{- end -}}

{{/*
The key registry, mounted as a whole directory (not subPath) so that
ConfigMap updates reach the file and ingest's reload sees them.
*/}}
{{- define "tidemark.registryMount" -}}
- name: key-registry
  mountPath: /etc/tidemark/keys
  readOnly: true
{{- end -}}

{{- define "tidemark.registryVolume" -}}
- name: key-registry
  configMap:
    name: {{ include "tidemark.registryConfigMap" . }}
{{- end -}}

{{/*
The state key: a Secret with `state.key` (and `state-previous.key` while
rotating), copied by an init container into an in-memory emptyDir with mode
0400 (the binary refuses a secret key file others may read, and a Secret
volume's files are group-readable under fsGroup).
*/}}
{{- define "tidemark.stateKeySecret" -}}
{{- default (printf "%s-state-key" (include "tidemark.fullname" .)) .Values.stateKey.existingSecret -}}
{{- end -}}

{{- define "tidemark.stateKeyPaths" -}}
{{- if or .Values.stateKey.previousKey (and .Values.stateKey.existingSecret .Values.stateKey.previousInSecret) -}}
/run/tidemark-state/state.key,/run/tidemark-state/state-previous.key
{{- else -}}
/run/tidemark-state/state.key
{{- end -}}
{{- end -}}

{{- define "tidemark.stateKeyInit" -}}
- name: state-key
  image: {{ include "tidemark.image" . }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  securityContext:
    {{- toYaml .Values.securityContext | nindent 4 }}
  command: ["/bin/sh", "-c", "for f in /etc/tidemark/state-secret/*.key; do install -m 0400 \"$f\" /run/tidemark-state/; done"]
  resources:
    limits:
      cpu: 100m
      memory: 32Mi
    requests:
      cpu: 10m
      memory: 16Mi
  volumeMounts:
    - name: state-key-secret
      mountPath: /etc/tidemark/state-secret
      readOnly: true
    - name: state-key
      mountPath: /run/tidemark-state
{{- end -}}

{{- define "tidemark.stateKeyMount" -}}
- name: state-key
  mountPath: /run/tidemark-state
  readOnly: true
{{- end -}}

{{- define "tidemark.stateKeyVolumes" -}}
- name: state-key-secret
  secret:
    secretName: {{ include "tidemark.stateKeySecret" . }}
    defaultMode: 0440
- name: state-key
  emptyDir:
    medium: Memory
    sizeLimit: 1Mi
{{- end -}}

{{/*
Egress every service needs under the NetworkPolicies: DNS, and Kafka on
networkPolicy.kafkaPorts (to networkPolicy.kafkaTo when given).
*/}}
{{- define "tidemark.egressDnsKafka" -}}
- ports:
    - port: 53
      protocol: UDP
    - port: 53
      protocol: TCP
- ports:
    {{- $ports := list }}
    {{- range splitList "," .Values.kafka.brokers }}
    {{- $port := last (splitList ":" (trim .)) }}
    {{- if regexMatch "^[0-9]+$" $port }}
    {{- $ports = append $ports ($port | int) }}
    {{- end }}
    {{- end }}
    {{- range .Values.networkPolicy.kafkaPorts }}
    {{- $ports = append $ports (. | int) }}
    {{- end }}
    {{- range uniq $ports }}
    - port: {{ . }}
      protocol: TCP
    {{- end }}
  {{- with .Values.networkPolicy.kafkaTo }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- with .Values.networkPolicy.extraEgress }}
{{ toYaml . }}
{{- end }}
{{- end }}
