package stack

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// RestartBroker stops broker b (SIGTERM, waiting for it) and runs binary's `serve` again with b's
// configuration as it is on disk now, unlike StartBroker, which writes a new one: what an operator
// does after `svidbroker mcp pin --accept`, whose pins the broker reads when it starts. Its output
// goes on in the same log. It returns once /readyz answers again.
func (s *Stack) RestartBroker(ctx context.Context, b *Broker, binary string) error {
	if err := b.Stop(); err != nil {
		return err
	}
	name := strings.TrimSuffix(filepath.Base(b.LogPath()), ".log")
	cmd, err := s.Command(context.WithoutCancel(ctx), PersonaBroker, binary, "serve", "--config", b.ConfigPath)
	if err != nil {
		return err
	}
	if b.proc, err = s.launch(name, cmd, syscall.SIGTERM); err != nil {
		return err
	}
	client := &http.Client{Timeout: 2 * time.Second}
	return waitFor(ctx, b.proc, "/readyz on "+b.AdminAddr, func(ctx context.Context) error {
		resp, err := client.Get("http://" + b.AdminAddr + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("readyz: %s", resp.Status)
		}
		c, err := net.DialTimeout("tcp", b.Addr, time.Second)
		if err != nil {
			return err
		}
		return c.Close()
	})
}
