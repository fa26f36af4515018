"""OAuth2 access tokens for XOAUTH2 smarthosts: the HTTP token client and the keeper's decisions.

Shared by the operator (controller.oauth, which reads and writes the Secrets) and local mode (which
keeps the token in a file); nothing here talks to Kubernetes.
"""
