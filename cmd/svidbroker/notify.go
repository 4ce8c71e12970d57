package main

import (
	"context"
	"log/slog"

	"github.com/svidbroker/svidbroker/broker/approval/notify"
	"github.com/svidbroker/svidbroker/broker/config"
	"github.com/svidbroker/svidbroker/broker/metrics"
)

// startNotifier tells the notify block's destinations of the approval requests q files and ends.
// Without a notify block it does nothing. stop, once the sessions have ended, delivers what is still
// queued for at most the notifier's drain timeout.
func startNotifier(ctx context.Context, cfg *config.Config, a approvers, mtr *metrics.Metrics, log *slog.Logger) (stop func(), err error) {
	if cfg.Notify == nil {
		return func() {}, nil
	}
	if a.queue == nil && a.desk == nil {
		log.WarnContext(ctx, "the notify block has nothing to notify: no approver is configured (policy.approver), so operations that need an approval are refused, not held")
		return func() {}, nil
	}
	ncfg := cfg.Notify.NotifyConfig()
	var sinks []string
	if ncfg.Webhook != nil {
		sinks = append(sinks, notify.SinkWebhook)
	}
	if ncfg.Slack != nil {
		sinks = append(sinks, notify.SinkSlack)
	}
	counters, err := mtr.Notifications(sinks...)
	if err != nil {
		return nil, err
	}
	ncfg.Metrics, ncfg.Log = counters, log
	n, err := notify.New(ncfg)
	if err != nil {
		return nil, err
	}
	a.setNotifier(n)
	// The notifier outlives ctx: requests withdrawn as the sessions drain are told too.
	nctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = n.Run(nctx)
	}()
	log.InfoContext(ctx, "approval notifications on", "destinations", sinks, "console_url", ncfg.ConsoleURL)
	return func() { cancel(); <-done }, nil
}
