// Package services lists marketpipe's pipeline services: each one's name, summary, own settings
// (pkg/config tags) and wiring. Their mains, -h, `marketpipe dev`, README's configuration table
// and the deployment checks are derived from this list.
package services

import (
	"fmt"
	"os"

	"github.com/marketpipe/marketpipe/pkg/config"
	"github.com/marketpipe/marketpipe/pkg/service"
	"github.com/marketpipe/marketpipe/services/collector"
	"github.com/marketpipe/marketpipe/services/loader"
	"github.com/marketpipe/marketpipe/services/poller"
	"github.com/marketpipe/marketpipe/services/requester"
	"github.com/marketpipe/marketpipe/services/transformer"
)

// Service is one pipeline service.
type Service struct {
	Name, Summary string
	// Settings is the service's own settings struct (nil: none); Build reads it from env.Lookup.
	Settings any
	Build    service.Build
}

// All are the pipeline's services, in the order of the pipeline.
var All = []Service{
	{Name: requester.Name, Summary: requester.Summary, Build: requester.Build},
	{Name: poller.Name, Summary: poller.Summary, Settings: poller.Settings{}, Build: poller.Build},
	{Name: collector.Name, Summary: collector.Summary, Settings: collector.Settings{}, Build: collector.Build},
	{Name: transformer.Name, Summary: transformer.Summary, Settings: transformer.Settings{}, Build: transformer.Build},
	{Name: loader.Name, Summary: loader.Summary, Settings: loader.Settings{}, Build: loader.Build},
}

// Own returns the service's own settings for service.Main, Run, Vars and CheckSettings.
func (s Service) Own() []any {
	if s.Settings == nil {
		return nil
	}
	return []any{s.Settings}
}

// Vars lists every variable the service reads.
func (s Service) Vars() []config.Var { return service.Vars(s.Own()...) }

// Main is the main of the service called name.
func Main(name string) {
	for _, s := range All {
		if s.Name == name {
			service.Main(s.Name, s.Summary, s.Build, s.Own()...)
			return
		}
	}
	fmt.Fprintf(os.Stderr, "no service %q\n", name)
	os.Exit(2)
}

// Table is README's configuration table: the variables every service reads, then each
// service's own, each once.
func Table() string {
	vars := service.Vars()
	for _, s := range All {
		if s.Settings != nil {
			vars = append(vars, config.Prefixed(s.Name, config.Vars(s.Settings))...)
		}
	}
	return config.Table(vars)
}
