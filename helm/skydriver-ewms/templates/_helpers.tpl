{{/* Names and labels ------------------------------------------------------------------------------------ */}}

{{- define "skydriver-ewms.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "skydriver-ewms.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* "<fullname>-<component>", the name of each component's objects. Args: (list $ "wms") */}}
{{- define "skydriver-ewms.componentName" -}}
{{- $ctx := index . 0 -}}
{{- printf "%s-%s" (include "skydriver-ewms.fullname" $ctx | trunc 52 | trimSuffix "-") (index . 1) }}
{{- end }}

{{/* Args: (list $ "wms") */}}
{{- define "skydriver-ewms.selectorLabels" -}}
{{- $ctx := index . 0 -}}
app.kubernetes.io/name: {{ include "skydriver-ewms.name" $ctx }}
app.kubernetes.io/instance: {{ $ctx.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{/* Args: (list $ "wms") */}}
{{- define "skydriver-ewms.labels" -}}
{{- $ctx := index . 0 -}}
helm.sh/chart: {{ printf "%s-%s" $ctx.Chart.Name $ctx.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "skydriver-ewms.selectorLabels" . }}
app.kubernetes.io/version: {{ $ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ $ctx.Release.Service }}
app.kubernetes.io/part-of: skydriver-ewms
{{- end }}

{{- define "skydriver-ewms.secretName" -}}
{{- .Values.existingSecret | default (include "skydriver-ewms.fullname" .) }}
{{- end }}

{{- define "skydriver-ewms.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "skydriver-ewms.componentName" (list . "skydriver")) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name: name the existing ServiceAccount skydriver runs as (serviceAccount.create is false)" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Images --------------------------------------------------------------------------------------------- */}}

{{/* "<repository>:<tag>". Args: (list $ .Values.wms.image "wms"); repository defaults to <image.registry>/<name> */}}
{{- define "skydriver-ewms.image" -}}
{{- $ctx := index . 0 -}}
{{- $image := index . 1 }}
{{- include "skydriver-ewms.imageRepository" . }}:{{ $image.tag | default $ctx.Values.image.tag | default $ctx.Chart.AppVersion }}
{{- end }}

{{- define "skydriver-ewms.imageRepository" -}}
{{- $ctx := index . 0 -}}
{{- (index . 1).repository | default (printf "%s/%s" (trimSuffix "/" $ctx.Values.image.registry) (index . 2)) }}
{{- end }}

{{- define "skydriver-ewms.pullPolicy" -}}
{{- $ctx := index . 0 -}}
{{- (index . 1).pullPolicy | default $ctx.Values.image.pullPolicy }}
{{- end }}

{{/* URLs ----------------------------------------------------------------------------------------------- */}}

{{- define "skydriver-ewms.wmsUrl" -}}
{{- printf "http://%s.%s.svc:%d" (include "skydriver-ewms.componentName" (list . "wms")) .Release.Namespace (int .Values.wms.service.port) }}
{{- end }}

{{- define "skydriver-ewms.skydriverUrl" -}}
{{- printf "http://%s.%s.svc:%d" (include "skydriver-ewms.componentName" (list . "skydriver")) .Release.Namespace (int .Values.skydriver.service.port) }}
{{- end }}

{{/* A subchart's service name, as Bitnami's common.names.fullname makes it. Args: (list $ "rabbitmq") */}}
{{- define "skydriver-ewms.subchartFullname" -}}
{{- $ctx := index . 0 -}}
{{- $chart := index . 1 }}
{{- $values := index $ctx.Values $chart }}
{{- if $values.fullnameOverride }}
{{- $values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := $values.nameOverride | default $chart }}
{{- if contains $name $ctx.Release.Name }}
{{- $ctx.Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" $ctx.Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* The database URL (secret): the external one, or the mongodb subchart's; empty when neither is set */}}
{{- define "skydriver-ewms.mongodbUrl" -}}
{{- if .Values.mongodb.enabled }}
{{- $password := required "mongodb.auth.rootPassword: set it when mongodb.enabled (the chart builds the database URL from it)" .Values.mongodb.auth.rootPassword }}
{{- printf "mongodb://%s:%s@%s:27017/?authSource=admin" (urlquery .Values.mongodb.auth.rootUser) (urlquery $password) (include "skydriver-ewms.subchartFullname" (list . "mongodb")) }}
{{- else }}
{{- .Values.externalMongodb.url }}
{{- end }}
{{- end }}

{{/* The broker URL the WMS administers (secret): the external one, or the rabbitmq subchart's */}}
{{- define "skydriver-ewms.brokerUrl" -}}
{{- if .Values.rabbitmq.enabled }}
{{- $password := required "rabbitmq.auth.password: set it when rabbitmq.enabled (the chart builds the broker URL from it)" .Values.rabbitmq.auth.password }}
{{- printf "amqp://%s:%s@%s:5672/" (urlquery .Values.rabbitmq.auth.username) (urlquery $password) (include "skydriver-ewms.subchartFullname" (list . "rabbitmq")) }}
{{- else }}
{{- .Values.externalRabbitmq.url }}
{{- end }}
{{- end }}

{{/* Environment ---------------------------------------------------------------------------------------- */}}

{{/* A value as an environment variable's text: numbers without exponents, maps and lists as JSON */}}
{{- define "skydriver-ewms.envValue" -}}
{{- $v := . }}
{{- if kindIs "bool" $v }}{{ ternary "true" "false" $v }}
{{- else if or (kindIs "float64" $v) (kindIs "int64" $v) (kindIs "int" $v) }}
{{- if eq (float64 $v) (float64 (int64 $v)) }}{{ int64 $v }}{{ else }}{{ $v }}{{ end }}
{{- else if or (kindIs "map" $v) (kindIs "slice" $v) }}{{ toJson $v }}
{{- else }}{{ $v }}
{{- end }}
{{- end }}

{{/* ConfigMap data from a dict NAME -> value, then the operator's extra NAME -> value (which win) */}}
{{- define "skydriver-ewms.envData" -}}
{{- $env := mergeOverwrite (deepCopy (index . 0)) (index . 1) }}
{{- range $name := keys $env | sortAlpha }}
{{ $name }}: {{ include "skydriver-ewms.envValue" (get $env $name) | quote }}
{{- end }}
{{- end }}

{{/* One env entry from a key of the release's Secret. Args: (list $ "WMS_MONGODB_URL" "mongodb-url" optional) */}}
{{- define "skydriver-ewms.secretEnv" -}}
- name: {{ index . 1 }}
  valueFrom:
    secretKeyRef:
      name: {{ include "skydriver-ewms.secretName" (index . 0) }}
      key: {{ index . 2 }}
      {{- if index . 3 }}
      optional: true
      {{- end }}
{{- end }}

{{/* Tokens --------------------------------------------------------------------------------------------- */}}

{{/*
An init container that mints a WMS token into the tokens volume (readable by the pod's user only) with `ewms-token`
and the WMS's ConfigMap and secret, so the token is valid at the WMS by construction: only when the WMS runs
without an OpenID provider.
Args: (list $ image-values image-name subject role)
*/}}
{{- define "skydriver-ewms.mintWmsTokenInitContainer" -}}
{{- $ctx := index . 0 -}}
- name: mint-wms-token
  image: {{ include "skydriver-ewms.image" (list $ctx (index . 1) (index . 2)) }}
  imagePullPolicy: {{ include "skydriver-ewms.pullPolicy" (list $ctx (index . 1)) }}
  command:
    - sh
    - -c
    - umask 077 && ewms-token --service WMS "$0" "$1" > {{ include "skydriver-ewms.tokenDir" $ctx }}/wms-token
    - {{ index . 3 | quote }}
    - {{ index . 4 | quote }}
  envFrom:
    - configMapRef:
        name: {{ include "skydriver-ewms.componentName" (list $ctx "wms") }}
  env:
    {{- include "skydriver-ewms.secretEnv" (list $ctx "WMS_AUTH_SECRET" "wms-auth-secret" false) | nindent 4 }}
  securityContext:
    {{- toYaml $ctx.Values.securityContext | nindent 4 }}
  resources:
    requests:
      cpu: 10m
      memory: 64Mi
    limits:
      memory: 256Mi
  volumeMounts:
    - name: tokens
      mountPath: {{ include "skydriver-ewms.tokenDir" $ctx }}
{{- end }}

{{/* The TMS's cluster location, which every TMS object needs */}}
{{- define "skydriver-ewms.tmsLocation" -}}
{{- required "tms.clusterLocation: name this access point (its name in workflows' cluster_locations)" .Values.tms.clusterLocation }}
{{- end }}

{{- define "skydriver-ewms.tokenDir" -}}
/run/ewms-tokens
{{- end }}

{{/* Pods ----------------------------------------------------------------------------------------------- */}}

{{/* What every pod of the chart shares. Args: (list $ component-values) */}}
{{- define "skydriver-ewms.podCommon" -}}
{{- $ctx := index . 0 -}}
{{- $component := index . 1 -}}
{{- with $ctx.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml $ctx.Values.podSecurityContext | nindent 2 }}
{{- with $component.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $component.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $component.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* Checksums that roll a component's pods when its configuration or the chart's Secret changes. Args: (list $ "wms") */}}
{{- define "skydriver-ewms.checksums" -}}
{{- $ctx := index . 0 -}}
checksum/config: {{ include (print $ctx.Template.BasePath "/" (index . 1) "-configmap.yaml") $ctx | sha256sum }}
{{- if not $ctx.Values.existingSecret }}
checksum/secret: {{ include (print $ctx.Template.BasePath "/secret.yaml") $ctx | sha256sum }}
{{- end }}
{{- end }}
