"""A small Kubernetes API client, an informer and leader election; nothing about mail relays."""
