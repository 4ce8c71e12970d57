package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/svidbroker/svidbroker/broker/approval"
	"github.com/svidbroker/svidbroker/broker/audit"

	"github.com/svidbroker/svidbroker/broker/approval/notify"
	"github.com/svidbroker/svidbroker/broker/config"
	"github.com/svidbroker/svidbroker/broker/metrics"
)

// startNotifier tells the notify block's destinations of the approval requests q files and ends.
// Without a notify block it does nothing. stop, once the sessions have ended, delivers what is still
// queued for at most the notifier's drain timeout.
func startNotifier(ctx context.Context, cfg *config.Config, a approvers, sink audit.Sink, mtr *metrics.Metrics, log *slog.Logger) (stop func(), err error) {
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
	if sink != nil {
		ncfg.Delivered = func(ev approval.Event, dest string, err error) { sink.Write(notifiedRecord(ev, dest, err), false) }
	}
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

// notifiedRecord is the audit record of one notification's end: the event told of, to which
// destination, and whether it arrived. The delivery error says what failed (a status, a timeout),
// never the destination's URL or secret.
func notifiedRecord(ev approval.Event, dest string, err error) audit.Record {
	detail := map[string]string{"request": ev.Request.ID, "state": "notified", "event": ev.Kind, "destination": dest, "outcome": "sent"}
	if err != nil {
		detail["outcome"], detail["error"] = "failed", err.Error()
	}
	return audit.Record{Time: time.Now().UTC(), Kind: audit.KindApproval, Session: ev.Request.Session,
		SPIFFEID: ev.Request.SPIFFEID, Target: ev.Request.Target, Detail: detail}
}
