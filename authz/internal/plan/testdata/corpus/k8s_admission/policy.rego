# A Kubernetes validating admission policy for Pods and the workloads that
# template them: images come from allowed registries (pinned by digest in
# production namespaces), no privileged or root containers, no host
# namespaces or hostPath volumes, resource limits set, required labels.
package corpus

request := input.request

kind := request.kind.kind

# The pod spec, wherever the object keeps it.
pod_spec := request.object.spec if kind == "Pod"

pod_spec := request.object.spec.template.spec if kind in {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"}

pod_spec := request.object.spec.jobTemplate.spec.template.spec if kind == "CronJob"

containers contains c if some c in pod_spec.containers

containers contains c if some c in pod_spec.initContainers

namespace := data.namespaces[request.namespace]

production if namespace.environment == "production"

violation contains sprintf("container %s: image %s is not from an allowed registry", [c.name, c.image]) if {
	some c in containers
	not allowed_registry(c.image)
}

allowed_registry(image) if {
	some registry in data.allowed_registries
	startswith(image, sprintf("%s/", [registry]))
}

violation contains sprintf("container %s: image %s must be pinned by digest in production", [c.name, c.image]) if {
	production
	some c in containers
	not regex.match(`@sha256:[a-f0-9]{64}$`, c.image)
}

violation contains sprintf("container %s: image %s uses the latest tag", [c.name, c.image]) if {
	some c in containers
	latest(c.image)
}

latest(image) if endswith(image, ":latest")

latest(image) if {
	not contains(image, "@")
	last := regex.split(`/`, image)[count(regex.split(`/`, image)) - 1]
	not contains(last, ":")
}

violation contains sprintf("container %s is privileged", [c.name]) if {
	some c in containers
	c.securityContext.privileged
}

violation contains sprintf("container %s may escalate privileges", [c.name]) if {
	some c in containers
	object.get(c, ["securityContext", "allowPrivilegeEscalation"], true)
}

violation contains sprintf("container %s must run as non-root", [c.name]) if {
	some c in containers
	not runs_as_non_root(c)
}

runs_as_non_root(c) if c.securityContext.runAsNonRoot

runs_as_non_root(c) if {
	not c.securityContext.runAsNonRoot == false
	pod_spec.securityContext.runAsNonRoot
}

violation contains sprintf("container %s adds capability %s", [c.name, cap]) if {
	some c in containers
	some cap in c.securityContext.capabilities.add
	not cap in data.allowed_capabilities
}

violation contains sprintf("container %s has no %s limit", [c.name, resource]) if {
	some c in containers
	some resource in ["cpu", "memory"]
	not c.resources.limits[resource]
}

violation contains sprintf("pod uses the host %s namespace", [ns]) if {
	some ns in ["Network", "PID", "IPC"]
	pod_spec[sprintf("host%s", [ns])]
}

violation contains sprintf("volume %s mounts a host path", [v.name]) if {
	some v in pod_spec.volumes
	v.hostPath
}

violation contains sprintf("missing label %s", [label]) if {
	pod_spec
	some label in data.required_labels
	not request.object.metadata.labels[label]
}

violation contains sprintf("namespace %s is not managed", [request.namespace]) if {
	pod_spec
	not namespace
}

default allow := false

allow if {
	request.operation in {"CREATE", "UPDATE"}
	pod_spec
	count(violation) == 0
}

# Anything that is not a workload is not this policy's business.
allow if not pod_spec

decision := {"allow": allow, "uid": request.uid, "violations": violation}
