// Command coredns is CoreDNS (github.com/coredns/coredns, pinned in ../../go.mod) with only the plugins that
// the node's Corefile names, linked the way CoreDNS documents for a custom build: its own coremain and plugin
// packages, with the directive list in CoreDNS's standard order (plugin.cfg). Cloud DNS back ends, etcd,
// dnstap and the rest stay out, which keeps the cold build short; nothing here changes CoreDNS's behaviour.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"
)

// The same relative order as CoreDNS's plugin.cfg, which decides the order plugins see a query in.
var directives = []string{"reload", "ready", "health", "errors", "log", "loadbalance", "cache", "kubernetes"}

func init() {
	dnsserver.Directives = directives
}

func main() {
	coremain.Run()
}
