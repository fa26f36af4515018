//go:build tools

// Package tools names the command built from this module, so `go mod tidy` keeps its dependencies.
package tools

import _ "github.com/sigstore/cosign/v3/cmd/cosign"
