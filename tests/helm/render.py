"""Renders the Helm chart with Helm's own engine and validates every
manifest against Kubernetes' schemas, for the default values and for each
documented option (tests/helm_render.rs runs it).

Helm's engine comes from helm-python-sdk (Helm's Go SDK as a library: no
helm binary is needed); the schemas from kubernetes-validate, strict, so an
unknown field is an error, as `kubectl apply --validate=strict` would say.
Prints one JSON object: the scenarios rendered, the manifests checked, and
every failure with its scenario, template and message.
"""

import copy
import json
import sys

import helm_python
import kubernetes_validate
import yaml

KUBERNETES = "1.31.0"

# What every install must give: a broker, the key registry, the archiver's
# key and one recipient, and ingest's and the query service's certificates
# (TLS is on by default).
REQUIRED = {
    "kafka": {"brokers": "kafka-0.kafka:9093"},
    "keyRegistry": {"toml": '[[key]]\nid = "site-a"\nsource = "site-a-ehr"\nalgorithm = "ed25519"\npublic_key = "A1FV40GHuF4bEp2EiG1n8LeFpfkAgBrclhjgFPqJ5TA="\n'},
    "archiver": {
        "keys": {"existingSecret": "tidemark-archiver-keys"},
        "recipients": {"analytics.pub": "tidemark-recipient-v1 dummy"},
    },
    "ingest": {"tls": {"secretName": "tidemark-ingest-tls"}},
    "query": {"tls": {"secretName": "tidemark-query-tls"}},
    "stateKey": {"existingSecret": "tidemark-state-key"},
}

PEER = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]

# One scenario per documented option or group of options (values.yaml).
SCENARIOS = {
    "defaults": {},
    "ingest plaintext behind a mesh": {"ingest": {"tls": {"enabled": False, "secretName": ""}}},
    "ingest mutual TLS": {"ingest": {"tls": {"clientCaSecretName": "tidemark-sites-ca"}}},
    "query plaintext behind a mesh": {"query": {"tls": {"enabled": False, "secretName": ""}}},
    "query mutual TLS, no disruption budget": {"query": {"tls": {"clientCaSecretName": "tidemark-sites-ca"}, "pdb": {"enabled": False}}},
    "query off": {"query": {"enabled": False}},
    "kafka mutual TLS and SASL": {
        "kafka": {
            "tls": {"enabled": True, "secretName": "kafka-ca", "clientCert": True},
            "sasl": {"enabled": True, "mechanism": "SCRAM-SHA-512", "existingSecret": "kafka-user"},
            "options": {"compression.type": "zstd", "message.max.bytes": "2097152"},
        }
    },
    "kafka plaintext": {"kafka": {"tls": {"enabled": False}}},
    "ingress with TLS": {
        "ingest": {
            "ingress": {
                "enabled": True,
                "className": "nginx",
                "tlsSecretName": "tidemark-public-tls",
                "annotations": {"cert-manager.io/cluster-issuer": "letsencrypt"},
            }
        }
    },
    "network policies with peers": {
        "kafka": {"brokers": "b-1.msk.example:9094, b-2.msk.example:9096"},
        "networkPolicy": {
            "enabled": True,
            "ingressFrom": PEER,
            "metricsFrom": PEER,
            "kafkaTo": PEER,
            "objectStoreTo": PEER,
            "objectStorePorts": [443, 9000],
            "extraEgress": [{"to": [{"ipBlock": {"cidr": "169.254.169.254/32"}}], "ports": [{"port": 80, "protocol": "TCP"}]}],
        },
        "archiver": {"out": "s3://tidemark-snapshots/prod"},
    },
    "ingress without TLS behind a load balancer": {"ingest": {"ingress": {"enabled": True, "insecure": True}}},
    "ingress with the default certificate name": {"ingest": {"ingress": {"enabled": True}}},
    "network policies off": {"networkPolicy": {"enabled": False}},
    "no autoscaling, no disruption budgets": {
        "ingest": {"autoscaling": {"enabled": False}, "pdb": {"enabled": False}},
        "merger": {"pdb": {"enabled": False}},
    },
    "monitoring objects": {
        "serviceMonitor": {"enabled": True, "labels": {"release": "prom"}},
        "prometheusRule": {"enabled": True, "labels": {"release": "prom"}},
        "dashboard": {"enabled": True},
    },
    "archiver cronjob to object storage, deidentified": {
        "archiver": {
            "mode": "cronjob",
            "profile": "deidentified",
            "out": "s3://tidemark-snapshots/prod",
            "envFrom": [{"secretRef": {"name": "tidemark-s3"}}],
        }
    },
    "archiver on a volume": {"archiver": {"persistence": {"existingClaim": "tidemark-archive"}}},
    "existing config maps and inline keys": {
        "catalog": {"existingConfigMap": "tidemark-catalog"},
        "keyRegistry": {"existingConfigMap": "tidemark-registry"},
        "archiver": {
            "keys": {"existingSecret": "", "archiverKey": "archiver key file"},
            "recipients": {},
            "recipientsExistingConfigMap": {"name": "tidemark-recipients", "files": ["analytics.pub"]},
        },
    },
    "only the archiver": {"ingest": {"enabled": False}, "merger": {"enabled": False}, "query": {"enabled": False}},
    "state key inline, rotating, first start after the upgrade": {
        "stateKey": {
            "existingSecret": "",
            "key": "state key file",
            "previousKey": "previous state key file",
            "trustUnsealedChangelog": True,
        }
    },
    "state key rotating in an existing Secret": {"stateKey": {"previousInSecret": True}},
    "two regions: an edit topic mirrored in": {
        "kafka": {"topicPrefix": "prod."},
        "merger": {"extraEditTopics": ["west.prod.tidemark.edits.v1"]},
    },
}


def edits_topics(rendered):
    """The values of the merger's `--edits-topic` arguments, in order."""
    out = []
    for template, text in rendered.items():
        if not template.endswith("merger-deployment.yaml"):
            continue
        for doc in yaml.safe_load_all(text):
            if not doc or doc.get("kind") != "Deployment":
                continue
            for container in doc["spec"]["template"]["spec"]["containers"]:
                args = container.get("args", [])
                out += [args[i + 1] for i, a in enumerate(args[:-1]) if a == "--edits-topic"]
    return out


def merge(base, over):
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


def main(chart_dir):
    chart = helm_python.Chart.load(chart_dir)
    report = {"scenarios": 0, "manifests": 0, "kinds": {}, "failures": [], "defaults": {}}
    for name, values in SCENARIOS.items():
        report["scenarios"] += 1
        try:
            rendered = chart.render(merge(REQUIRED, values), name="tm", namespace="tidemark")
        except helm_python.HelmError as e:
            report["failures"].append({"scenario": name, "template": None, "error": f"render: {e}"})
            continue
        if name == "defaults":
            # What a plain install gets: secure by default.
            text = "".join(rendered.values())
            report["defaults"] = {
                "kafka_tls": "security.protocol=SSL" in text,
                "ingest_tls": "TIDEMARK_TLS_CERT" in text and "TIDEMARK_INSECURE_PLAINTEXT" not in text,
                "query_tls": "secretName: tidemark-query-tls" in text,
                "network_policies": text.count("kind: NetworkPolicy"),
                "merger_edits_topics": edits_topics(rendered),
            }
        if name == "network policies with peers":
            text = "".join(rendered.values())
            report["egress"] = {
                "broker_ports": all(f"port: {p}" in text for p in (9094, 9096)),
                "extra": "169.254.169.254/32" in text,
                "object_store": "-archiver-egress" in text and "port: 9000" in text,
            }
        if name == "state key inline, rotating, first start after the upgrade":
            text = "".join(rendered.values())
            both = "/run/tidemark-state/state.key,/run/tidemark-state/state-previous.key"
            report["state_key"] = {
                "secret_with_previous": "state-previous.key:" in text,
                "both_keys_to_merger_and_archiver": text.count(both) >= 2,
                "trust_unsealed": "TIDEMARK_TRUST_UNSEALED_CHANGELOG" in text,
                "copied_private": text.count("install -m 0400") >= 3,
            }
        if name == "two regions: an edit topic mirrored in":
            report["regions"] = {"merger_edits_topics": edits_topics(rendered)}
        for template, text in sorted(rendered.items()):
            if not template.endswith((".yaml", ".yml")):
                continue
            for doc in yaml.safe_load_all(text):
                if not doc:
                    continue
                report["manifests"] += 1
                kind = doc.get("kind", "?")
                report["kinds"][kind] = report["kinds"].get(kind, 0) + 1
                if doc.get("apiVersion", "").startswith("monitoring.coreos.com/"):
                    continue  # CRDs of the Prometheus operator: no upstream schema
                try:
                    kubernetes_validate.validate(doc, KUBERNETES, strict=True)
                except (kubernetes_validate.ValidationError, kubernetes_validate.SchemaNotFoundError) as e:
                    message = getattr(e, "message", str(e))
                    report["failures"].append({"scenario": name, "template": template, "error": message})
    print(json.dumps(report, sort_keys=True))


if __name__ == "__main__":
    main(sys.argv[1])
