"""What the test tiers share; no test module imports another, they all import from here.

- `paths`, `samples` (relays, a spec with every field, the examples), `kube_schemas` (the upstream
  schemas of every supported Kubernetes version), `invalid_specs` (the one table of refused specs)
- `fake_api` (the one in-memory API), `wait` (the one poller), `operator` (the one operator process)
- `kube_emulator` and `emulator` (the emulated API server, for faults a real one does not produce),
  `real_api` and `shipped_operator` (the real control plane and what manifests/ ships), `ha` (the HA
  replicas and their backends), `tcp_proxy`, `crd_schema` (the CRD checked offline), `kstatus`
- `postfix_harness`, `mail`, `smtp_sink`, `netns` (the host Postfix, clients, the smarthost sink),
  `podrunner` and `relay_pod` (the images under runc)
- `nodekit` and `journey` (the real node's tests: kubectl waits, exec, the sink; the journey's relay)
- `tools` (helm, kubectl), `dashboard` (the chart's monitoring and PromQL)
"""
