"""The cluster: putting a released sidecar into Kubernetes manifests."""
