"""What the test tiers share; no test module imports another, they all import from here.

`paths` and `samples` (relays, specs, the supported Kubernetes versions), `invalid_specs` (the one
table of refused specs), `fake_api` (the one in-memory API), `kube_emulator` and `emulator` (the
emulated API server, for faults a real one cannot produce), `operator` (the one operator process),
`real_api` and `shipped_operator` (the real control plane and what manifests/ ships), `ha` (the HA
replicas' backends), `crd_schema`, `kstatus`, `netpol`, `netns`, `smtp_sink`, `tcp_proxy`,
`postfix_harness` and `mail` (the host Postfix), `podrunner` and `relay_pod` (runc), `tools` (helm and
kubectl).
"""
