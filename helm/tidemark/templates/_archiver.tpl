{{/*
The archiver's pod spec, shared by the Deployment (interval mode) and the
CronJob (`--once`).

Secret key files: the archiver refuses a secret key that group or others may
read (mode & 077), and Kubernetes makes Secret volume files group-readable
when fsGroup is set (and root-owned when it is not). So an init container, as
the same non-root user, copies the keys into an in-memory emptyDir with mode
0400, owned by that user.
*/}}
{{- define "tidemark.archiver.keysSecret" -}}
{{- default (printf "%s-archiver-keys" (include "tidemark.fullname" .)) .Values.archiver.keys.existingSecret -}}
{{- end -}}

{{- define "tidemark.archiver.recipientsConfigMap" -}}
{{- default (printf "%s-recipients" (include "tidemark.fullname" .)) .Values.archiver.recipientsExistingConfigMap.name -}}
{{- end -}}

{{- define "tidemark.archiver.podSpec" -}}
{{- $recipients := .Values.archiver.recipientsExistingConfigMap.files -}}
{{- if not .Values.archiver.recipientsExistingConfigMap.name -}}
{{- $recipients = keys .Values.archiver.recipients | sortAlpha -}}
{{- end -}}
{{- if not $recipients -}}
{{- fail "archiver: no recipient; set archiver.recipients or archiver.recipientsExistingConfigMap.{name,files}" -}}
{{- end -}}
{{- if not (has .Values.archiver.profile (list "identified" "deidentified")) -}}
{{- fail (printf "archiver.profile must be identified or deidentified, not %q" .Values.archiver.profile) -}}
{{- end -}}
serviceAccountName: {{ include "tidemark.serviceAccountName" . }}
automountServiceAccountToken: false
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
# SIGTERM abandons a snapshot in progress (no manifest: it does not exist).
terminationGracePeriodSeconds: {{ .Values.archiver.terminationGracePeriodSeconds }}
initContainers:
  {{- include "tidemark.stateKeyInit" . | nindent 2 }}
  - name: private-keys
    image: {{ include "tidemark.image" . }}
    imagePullPolicy: {{ .Values.image.pullPolicy }}
    securityContext:
      {{- toYaml .Values.securityContext | nindent 6 }}
    command: ["/bin/sh", "-c", "for f in /etc/tidemark/archiver-secret/*.key; do install -m 0400 \"$f\" /run/tidemark-keys/; done"]
    resources:
      {{- toYaml .Values.archiver.resources | nindent 6 }}
    volumeMounts:
      - name: keys-secret
        mountPath: /etc/tidemark/archiver-secret
        readOnly: true
      - name: keys
        mountPath: /run/tidemark-keys
containers:
  - name: archiver
    image: {{ include "tidemark.image" . }}
    imagePullPolicy: {{ .Values.image.pullPolicy }}
    securityContext:
      {{- toYaml .Values.securityContext | nindent 6 }}
    args:
      - archiver
      {{- if eq .Values.archiver.mode "cronjob" }}
      - --once
      {{- end }}
      {{- range $recipients }}
      - --recipient
      - /etc/tidemark/recipients/{{ . }}
      {{- end }}
      {{- include "tidemark.kafkaArgs" . | nindent 6 }}
    env:
      {{- include "tidemark.commonEnv" . | nindent 6 }}
      - name: TIDEMARK_OUT
        value: {{ .Values.archiver.out | quote }}
      - name: TIDEMARK_PROFILE
        value: {{ .Values.archiver.profile | quote }}
      - name: TIDEMARK_ARCHIVER_KEY
        value: /run/tidemark-keys/archiver.key
      {{- if eq .Values.archiver.profile "deidentified" }}
      - name: TIDEMARK_DATASET_KEY
        value: /run/tidemark-keys/dataset.key
      {{- end }}
      - name: TIDEMARK_STATE_KEY
        value: {{ include "tidemark.stateKeyPaths" . | quote }}
      - name: TIDEMARK_INTERVAL_S
        value: {{ .Values.archiver.intervalSeconds | quote }}
      - name: TIDEMARK_RETAIN
        value: {{ .Values.archiver.retain | quote }}
      - name: TIDEMARK_ROWS_PER_PART
        value: {{ .Values.archiver.rowsPerPart | int64 | quote }}
      - name: TIDEMARK_METRICS_LISTEN
        value: "0.0.0.0:{{ .Values.archiver.metricsPort }}"
    {{- with .Values.archiver.envFrom }}
    envFrom:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    ports:
      - name: metrics
        containerPort: {{ .Values.archiver.metricsPort }}
        protocol: TCP
    {{- if ne .Values.archiver.mode "cronjob" }}
    # /healthz reflects the worker: 503 once a snapshot has run for twice
    # the interval (at least an hour), a hang a restart cures. Failing
    # snapshots are watched by the alerts (TidemarkSnapshotStale,
    # TidemarkSnapshotFailing), not by the probe.
    livenessProbe:
      httpGet:
        path: /healthz
        port: metrics
      initialDelaySeconds: 5
      periodSeconds: 15
      timeoutSeconds: 5
      failureThreshold: 4
    {{- end }}
    resources:
      {{- toYaml .Values.archiver.resources | nindent 6 }}
    volumeMounts:
      {{- include "tidemark.commonMounts" . | nindent 6 }}
      - name: keys
        mountPath: /run/tidemark-keys
        readOnly: true
      {{- include "tidemark.stateKeyMount" . | nindent 6 }}
      - name: recipients
        mountPath: /etc/tidemark/recipients
        readOnly: true
      - name: archive
        mountPath: {{ .Values.archiver.persistence.mountPath }}
volumes:
  {{- include "tidemark.commonVolumes" . | nindent 2 }}
  {{- include "tidemark.stateKeyVolumes" . | nindent 2 }}
  - name: keys-secret
    secret:
      secretName: {{ include "tidemark.archiver.keysSecret" . }}
      defaultMode: 0440
  - name: keys
    emptyDir:
      medium: Memory
      sizeLimit: 1Mi
  - name: recipients
    configMap:
      name: {{ include "tidemark.archiver.recipientsConfigMap" . }}
  - name: archive
    {{- if .Values.archiver.persistence.existingClaim }}
    persistentVolumeClaim:
      claimName: {{ .Values.archiver.persistence.existingClaim }}
    {{- else }}
    emptyDir: {}
    {{- end }}
{{- with .Values.archiver.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.archiver.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.archiver.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
